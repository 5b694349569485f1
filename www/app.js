// The playground page: fetches model folders, asks the wasm app for samples, draws them.
// All model math runs in Rust (web/, core/); this file only wires the page.

const $ = (id) => document.getElementById(id);
const EXTENT = 2.0; // canvases show [-2, 2]^2

let bindings = null; // wasm-bindgen exports (set by trunk's loader)
let app = null; // wasm App
let catalogue = []; // wasm's facts of each known model (from its card): {name, dataset, method, consistency, shape, quality, classes, teacher (whose ODE its jumps follow), source, view}
let notes = {}; // index.json's one-line notes on bundled models: {name: {failure, text}}
let examples = {}; // index.json's editor examples: {view: {file, text}} (a view: a dataset, or `mnist-28`), a PNG row of real test images
const problems = new Set(); // load errors shown in the message line
const loading = new Map(); // name -> Promise of its weights
// Diffusion teachers (sampled with an ODE solver) as opposed to consistency models (one or a few jumps):
// wasm answers (`App.facts`, core's one rule `Model::is_consistency`) when a model is loaded.
const isDiffusion = (m) => !m.consistency;
let runId = 0;

function bindingsReady() {
  if (window.wasmBindings) return Promise.resolve(window.wasmBindings);
  return new Promise((resolve) =>
    addEventListener('TrunkApplicationStarted', () => resolve(window.wasmBindings), { once: true }));
}

// Model files go through the Cache Storage API, so a reload does not download them again. A cached
// copy is used only while it matches the server's (same ETag / Last-Modified, checked with a HEAD); a
// response with neither is not cached (nothing could tell a changed file from the cached one), and a
// failed cache write (quota, size) only costs the next load a download.
const CACHE = 'cm-models-v1';
async function cachedFetch(url) {
  if (!('caches' in window)) return fetch(url);
  const cache = await caches.open(CACHE);
  const hit = await cache.match(url);
  if (hit) {
    try {
      const head = await fetch(url, { method: 'HEAD' });
      const same = (h) => head.headers.get(h) && head.headers.get(h) === hit.headers.get(h);
      if (head.ok && (same('etag') || same('last-modified'))) {
        window.cmCacheHits = (window.cmCacheHits ?? 0) + 1;
        return hit;
      }
    } catch { return hit; } // offline: the cached copy is all there is
  }
  const res = await fetch(url);
  if (res.ok && (res.headers.get('etag') || res.headers.get('last-modified'))) {
    try { await cache.put(url, res.clone()); } catch { /* a speed-up only: the response is still used */ }
  }
  return res;
}

// Loads a user's model (card text + weights bytes): the card is validated and the weights checked
// against it; the error says exactly which file and field or tensor does not match.
function addModel(cardText, weights, source) {
  const loaded = app.load_model(cardText, weights);
  catalogue = catalogue.filter((m) => m.name !== loaded);
  catalogue.push({ ...app.facts(loaded), source });
  return loaded;
}

function problem(text) {
  problems.add(text);
  showMessage([...problems].join('\n'));
}

// The weights of a model whose card is known, fetched on first use (the page starts with the cards
// only, a few KB each, and loads the weights of what it shows). False (and a message) when they fail.
async function ensureLoaded(m) {
  if (app.is_loaded(m.name)) return true;
  if (!loading.has(m.name)) {
    loading.set(m.name, (async () => {
      const res = await cachedFetch(`${m.source}model.safetensors`);
      if (!res.ok) throw new Error(`${m.source}model.safetensors: HTTP ${res.status}`);
      app.load_weights(m.name, new Uint8Array(await res.arrayBuffer()));
    })());
  }
  try {
    await loading.get(m.name);
    return true;
  } catch (e) {
    loading.delete(m.name); // a later render tries again
    problem(`Model ${m.name} could not be loaded: ${e.message ?? e}`);
    return false;
  }
}

// A file of a model folder at `url` (its query string, e.g. a signed URL's, kept).
function fileUrl(url, name) {
  const u = new URL(url, location.href);
  if (!u.pathname.endsWith('/')) u.pathname += '/';
  u.pathname += name;
  return u.href;
}

// Fetches a model folder's file, with errors that name the URL and what to check.
async function fetchOwn(url) {
  let res;
  try {
    res = await cachedFetch(url);
  } catch (e) {
    throw new Error(`${url}: could not be fetched (${e.message ?? e}): check the address, and that its server allows this page to read it (CORS)`);
  }
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return res;
}

async function loadOwn() {
  const status = $('own-status');
  const button = $('own-load');
  button.disabled = true;
  status.textContent = 'loading…';
  delete status.dataset.ok;
  try {
    let cardText, weights, source;
    const files = Array.from($('own-files').files ?? []);
    const url = $('own-url').value.trim();
    if (files.length) {
      const card = files.find((f) => f.name === 'config.json') ?? files.find((f) => f.name.endsWith('.json') && f.name !== 'index.json');
      const w = files.find((f) => f.name.endsWith('.safetensors'));
      if (!card || !w) throw new Error(`pick both config.json and model.safetensors (got ${files.map((f) => f.name).join(', ')})`);
      [cardText, weights, source] = [await card.text(), new Uint8Array(await w.arrayBuffer()), `${card.name} + ${w.name}`];
    } else if (url) {
      const [cardUrl, weightsUrl] = [fileUrl(url, 'config.json'), fileUrl(url, 'model.safetensors')];
      const [c, w] = await Promise.all([fetchOwn(cardUrl), fetchOwn(weightsUrl)]);
      const type = c.headers.get('content-type') ?? '';
      if (type.includes('html')) throw new Error(`${cardUrl}: the server sent a web page (${type}), not a model card`);
      [cardText, weights, source] = [await c.text(), new Uint8Array(await w.arrayBuffer()), url];
    } else {
      throw new Error('choose the two files of a model folder, or give its URL');
    }
    const name = addModel(cardText, weights, source);
    fillViews();
    const dataset = catalogue.find((m) => m.name === name).view;
    $('dataset').value = dataset;
    status.textContent = `loaded ${name} (${dataset}) from ${source}`;
    status.dataset.ok = 'true';
    // Your model shows beside the others, wherever it ranks: opening the comparison renders (the
    // status says so at once, so nothing reads the page between now and that render).
    document.body.dataset.status = 'sampling';
    if ($('compare').open) await render();
    else $('compare').open = true;
  } catch (e) {
    status.textContent = `not loaded: ${e.message ?? e}`;
    status.dataset.ok = 'false';
  } finally {
    button.disabled = false;
  }
}

// The τ list typed by the user for the third panel of each consistency model, whatever k (empty: the
// model's default list for k steps). At most 15 levels, as k is at most 16: each is a network evaluation
// of every sample, on this page's one thread.
const MAX_TAUS = 15;
function userTaus() {
  const text = $('taus').value.trim();
  const taus = text.split(/[\s,]+/).filter(Boolean).map(Number);
  if (!taus.length) return null;
  const shown = text.length > 40 ? `${text.slice(0, 40)}…` : text;
  // Only the syntax and the count here: wasm applies the rule (core's sample::check_taus) when sampling.
  if (taus.some((t) => !Number.isFinite(t))) throw new Error(`τ list "${shown}": need numbers`);
  if (taus.length > MAX_TAUS) throw new Error(`τ list "${shown}": ${taus.length} levels, at most ${MAX_TAUS} here (16 steps)`);
  return taus;
}

function showMessage(text) {
  const m = $('message');
  m.textContent = text;
  m.hidden = !text;
}

function intInput(id, lo, hi) {
  const el = $(id);
  const v = Math.round(Number(el.value));
  const clamped = Number.isFinite(v) ? Math.min(hi, Math.max(lo, v)) : lo;
  el.value = clamped;
  return clamped;
}

// In "auto" mode a software WebGPU adapter (SwiftShader and the like) is skipped: measured ~50x
// slower than the CPU path for these models (ARCHITECTURE.md, Decisions). An explicit "WebGPU" choice still uses it.
async function softwareAdapter() {
  try {
    const adapter = await navigator.gpu?.requestAdapter();
    if (!adapter) return null;
    return Boolean(adapter.info?.isFallbackAdapter ?? adapter.isFallbackAdapter);
  } catch {
    return null;
  }
}

async function startApp() {
  let prefer = $('prefer').value;
  let why = '';
  if (prefer === 'auto') {
    const software = await softwareAdapter();
    if (software) { prefer = 'cpu'; why = ' — the WebGPU adapter is a software fallback, slower than the CPU'; }
  }
  app = await bindings.create_app(prefer);
  $('backend').textContent = app.backend_note() + (app.backend() === 'cpu' ? why : '');
  $('backend').dataset.backend = app.backend();
  document.body.dataset.backend = app.backend();
}

// Reads index.json and every bundled card (no weights yet): what each model is, how the page lays out
// each dataset (wasm's lineup), and the notes on known failures.
async function loadCards() {
  catalogue = [];
  problems.clear();
  loading.clear();
  const index = await (await fetch('models/index.json')).json();
  notes = index.notes ?? {};
  examples = index.examples ?? {};
  const cards = await Promise.all(index.models.map(async (name) => {
    try {
      const res = await cachedFetch(`models/${name}/config.json`);
      if (!res.ok) throw new Error(`models/${name}/config.json: HTTP ${res.status}`);
      return [name, await res.text()];
    } catch (e) {
      problem(`Model ${name} could not be loaded: ${e.message ?? e}`);
      return null;
    }
  }));
  for (const [name, text] of cards.filter(Boolean)) {
    try {
      catalogue.push({ ...app.facts(app.add_card(text)), source: `models/${name}/` });
    } catch (e) {
      problem(`Model ${name} could not be loaded: ${e.message ?? e}`);
    }
  }
  showMessage([...problems].join('\n'));
  if (!fillViews() && app.datasets().includes('moons')) $('dataset').value = 'moons';
}

// The dataset menu: one entry per view. A card's view depends on the others (a dataset at a second
// resolution gets its own view, `mnist-28`, read as "mnist 28 px"), so views are read again whenever a
// card is added. Returns whether the chosen view is still there.
function fillViews() {
  for (const m of catalogue) m.view = app.view(m.name);
  const datasets = app.datasets();
  const select = $('dataset');
  const previous = select.value;
  // `mnist-28` reads "mnist 28 px", `mnist-classes` (class-conditional models) "mnist by class".
  const label = (d) => d.replace(/-classes$/, ' by class').replace(/-(\d+)( by class)?$/, ' $1 px$2');
  select.replaceChildren(...datasets.map((d) => new Option(label(d), d)));
  if (datasets.includes(previous)) select.value = previous;
  return datasets.includes(previous);
}

function panel(title, parent = $('panels')) {
  const fig = document.createElement('figure');
  const canvas = document.createElement('canvas');
  canvas.width = 360;
  canvas.height = 360;
  const cap = document.createElement('figcaption');
  cap.innerHTML = `<span class="title"></span><span class="stat">…</span>`;
  cap.querySelector('.title').textContent = title;
  fig.append(canvas, cap);
  parent.append(fig);
  return { fig, canvas, stat: cap.querySelector('.stat') };
}

function draw(canvas, points, colour) {
  const ctx = canvas.getContext('2d');
  const { width: w, height: h } = canvas;
  ctx.fillStyle = '#ffffff';
  ctx.fillRect(0, 0, w, h);
  ctx.strokeStyle = '#e3e7ee';
  ctx.beginPath();
  ctx.moveTo(w / 2, 0); ctx.lineTo(w / 2, h); ctx.moveTo(0, h / 2); ctx.lineTo(w, h / 2);
  ctx.stroke();
  ctx.fillStyle = colour;
  let drawn = 0;
  for (let i = 0; i + 1 < points.length; i += 2) {
    const x = ((points[i] + EXTENT) / (2 * EXTENT)) * w;
    const y = ((EXTENT - points[i + 1]) / (2 * EXTENT)) * h;
    if (Number.isFinite(x) && Number.isFinite(y)) {
      ctx.fillRect(x - 1, y - 1, 2, 2);
      drawn++;
    }
  }
  canvas.dataset.points = String(drawn);
}

// The image at offset `at` of `pixels` (values in [-1, 1], `shape` = [C, H, W]) into the ImageData `img`
// with its top left at (ox, oy), grey or RGB; whether every value was finite.
function putImage(img, ox, oy, pixels, at, shape) {
  const [c, h, w] = shape;
  let finite = true;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const o = ((oy + y) * img.width + ox + x) * 4;
      for (let k = 0; k < 3; k++) {
        const v = pixels[at + (c === 1 ? 0 : k) * h * w + y * w + x];
        if (!Number.isFinite(v)) finite = false;
        img.data[o + k] = Math.max(0, Math.min(255, Math.round((v + 1) * 127.5)));
      }
      img.data[o + 3] = 255;
    }
  }
  return finite;
}

// Images `[n, C·H·W]` in [-1, 1] as a grid filling the canvas (grey or RGB).
function drawImages(canvas, pixels, shape, columns) {
  const [c, h, w] = shape;
  const d = c * h * w;
  const n = Math.floor(pixels.length / d);
  const cols = columns ?? Math.ceil(Math.sqrt(n));
  const rows = Math.ceil(n / cols);
  const grid = document.createElement('canvas');
  grid.width = cols * (w + 1) + 1;
  grid.height = rows * (h + 1) + 1;
  const g = grid.getContext('2d');
  const img = g.createImageData(grid.width, grid.height);
  img.data.fill(255);
  let drawn = 0;
  for (let i = 0; i < n; i++) {
    const ox = (i % cols) * (w + 1) + 1;
    const oy = Math.floor(i / cols) * (h + 1) + 1;
    if (putImage(img, ox, oy, pixels, i * d, shape)) drawn++;
  }
  g.putImageData(img, 0, 0);
  const ctx = canvas.getContext('2d');
  ctx.imageSmoothingEnabled = false;
  ctx.fillStyle = '#ffffff';
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  const scale = Math.min(canvas.width / grid.width, canvas.height / grid.height);
  ctx.drawImage(grid, 0, 0, grid.width * scale, grid.height * scale);
  canvas.dataset.images = String(drawn);
}

// Image models draw fewer samples than point clouds: a grid of 64 (the teacher 16, it costs NFE passes).
const IMAGES = 64;
const TEACHER_IMAGES = 16;

// Class-conditional models: which class each of about `n` samples is drawn from, by the class menu —
// every class in turn (one column each: `n` rounded up to whole rows), one class, or none (the model's
// label-dropout branch). `classes` is what wasm takes (undefined: no class); `cols` lays out the grid.
function classPlan(m, n) {
  const k = m.classes?.length ?? 0;
  const total = $('class').value === 'each' && k ? Math.ceil(n / k) * k : n;
  const classes = rowClasses(m, total);
  return { n: total, classes, cols: classes && $('class').value === 'each' ? k : undefined };
}

// The class of each of `n` rows by the class menu (row `i` of class `i mod k` for "each class"), or
// undefined for no class (an unconditional model, or "no class").
function rowClasses(m, n) {
  const k = m.classes?.length ?? 0;
  const choice = $('class').value;
  if (!k || choice === 'none' || choice === '') return undefined;
  if (choice === 'each') return Uint32Array.from({ length: n }, (_, i) => i % k);
  return new Uint32Array(n).fill(Number(choice));
}

// The teacher guidance the input asks for, where rows have classes (1: none; wasm checks the range).
function guidanceFor(classes) {
  const typed = $('guidance').valueAsNumber;
  return classes && Number.isFinite(typed) ? typed : 1;
}

// The classes of rows in words, for a caption: "class 7", "classes 0, 1, 2, 3", or nothing.
function classWords(m, classes) {
  if (!classes) return '';
  const names = [...new Set(Array.from(classes))].map((c) => m.classes[c]);
  return names.length === 1 ? ` · class ${names[0]}` : ` · classes ${names.join(', ')}`;
}

// The class menu, for a view whose lead model is class-conditional: kept where the classes are the same.
function fillClasses(m) {
  const names = m?.classes ?? [];
  $('class-label').hidden = names.length === 0;
  $('guidance-label').hidden = names.length === 0;
  const select = $('class');
  const previous = select.value;
  const options = [['each', 'each class'], ...names.map((c, i) => [String(i), c]), ['none', 'no class']];
  const key = JSON.stringify(options);
  if (select.dataset.options !== key) {
    select.replaceChildren(...options.map(([v, t]) => new Option(t, v)));
    select.dataset.options = key;
  }
  // `?class=` may name the class (`Sneaker`) as well as number it.
  const named = names.findIndex((c) => c.toLowerCase() === previous.toLowerCase());
  select.value = options.some(([v]) => v === previous) ? previous : named >= 0 ? String(named) : 'each';
}

// For educators: from the same points on the teacher's PF-ODE trajectories (at the first grid level
// with sigma <= 1), the teacher's ODE path to its origin and the consistency model's one-step jump.
const PATHS = 48;
async function drawPaths(teacher, student, nfe, seed, id) {
  const sigmas = app.teacher_sigmas(teacher.name, nfe);
  const r = await app.teacher(teacher.name, nfe, PATHS, BigInt(seed), true);
  if (id !== runId) return;
  const limit = Number($('jump-sigma').value);
  // The first level at or below the slider, above 0 (a jump from sigma 0 is no jump); with none, the
  // last level above 0 (a teacher of 1 or 2 NFE has only sigma_max).
  const positive = sigmas.filter((s) => s > 0).length;
  const atOrBelow = sigmas.findIndex((s) => s > 0 && s <= limit);
  const start = atOrBelow >= 0 ? atOrBelow : positive - 1;
  const at = (state, i) => [r.path[(state * PATHS + i) * 2], r.path[(state * PATHS + i) * 2 + 1]];
  const from = r.path.slice(start * PATHS * 2, (start + 1) * PATHS * 2);
  const jump = await app.denoise(student.name, from, sigmas[start]);
  if (id !== runId) return;
  const p = panel(`ODE paths (${teacher.name}) vs jumps (${student.name})`, $('how'));
  const ctx = p.canvas.getContext('2d');
  const { width: w, height: h } = p.canvas;
  const px = ([x, y]) => [((x + EXTENT) / (2 * EXTENT)) * w, ((EXTENT - y) / (2 * EXTENT)) * h];
  ctx.fillStyle = '#ffffff';
  ctx.fillRect(0, 0, w, h);
  for (let i = 0; i < PATHS; i++) {
    ctx.strokeStyle = 'rgba(180, 71, 31, 0.8)';
    ctx.setLineDash([]);
    ctx.beginPath();
    for (let state = start; state < sigmas.length; state++) {
      const [x, y] = px(at(state, i));
      if (state === start) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    }
    ctx.stroke();
    const [sx, sy] = px(at(start, i));
    const [jx, jy] = px([jump.points[2 * i], jump.points[2 * i + 1]]);
    ctx.strokeStyle = 'rgba(31, 79, 191, 0.7)';
    ctx.setLineDash([4, 3]);
    ctx.beginPath(); ctx.moveTo(sx, sy); ctx.lineTo(jx, jy); ctx.stroke();
    ctx.fillStyle = '#6b7280'; ctx.fillRect(sx - 2, sy - 2, 4, 4);
    ctx.fillStyle = '#1f4fbf'; ctx.fillRect(jx - 2, jy - 2, 4, 4);
  }
  p.canvas.dataset.paths = String(PATHS);
  p.stat.textContent = `from σ = ${sigmas[start].toPrecision(2)}: ODE ${sigmas.length - 1 - start} steps, jump 1 NFE`;
  p.canvas.title = 'grey: start on the trajectory; orange: the teacher\'s PF-ODE path; blue dashed: the consistency model\'s one-step jump';
}

// For educators, on image models: a few of the teacher's PF-ODE trajectories and, at levels along
// each, three rows — the ODE's state x_σ (scaled to the data's spread), the teacher's denoised
// estimate D(x_σ, σ) (the mean of the data given x_σ: blurred where σ is large) and the consistency
// model's one-step jump f(x_σ, σ) — with the trajectory's origin (σ = 0) last. A consistent model's
// jumps all equal the origin; below the grid, each level's RMS distance to it.
const STRIP_ROWS = 4;
const STRIP_LEVELS = 8;
// The diffusion model whose ODE `student`'s jumps are measured against: its own (the model its recipe
// distilled from or started at, `facts.teacher`) where the page has it with the same image shape and
// classes, else the view's teacher.
function stripTeacher(student, fallback) {
  const own = catalogue.find((m) => m.name === student.teacher);
  const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
  return own && isDiffusion(own) && same(own.shape, student.shape) && same(own.classes, student.classes) ? own : fallback;
}

// The strip's panel, with a choice of whose jumps it shows: the lead model, or any other consistency
// model of the view (its weights, and its own teacher's, load when chosen), each from its own teacher's
// trajectories where the page has that teacher (stripTeacher).
async function showStrip(teacher, students, nfe, seed, id) {
  const p = panel('', $('how'));
  p.fig.classList.add('wide');
  const title = p.fig.querySelector('.title');
  const whose = document.createElement('span');
  const pick = document.createElement('select');
  pick.id = 'strip-model';
  pick.title = 'whose one-step jumps: the lead model, or another consistency model of this view';
  for (const m of students) pick.append(new Option(m.name, m.name));
  title.append(whose, pick);
  const say = (own) => { whose.textContent = `the teacher's ODE (${own.name}) vs the jumps of `; };
  say(stripTeacher(students[0], teacher));
  // Draws `m`'s strip while it is still the one asked for (`current`, and no newer render); a pick
  // renames the pair in the title only once its strip is drawn (the lead's pair is named from the start).
  const draw = async (m, id, current) => {
    const own = stripTeacher(m, teacher);
    const stale = () => id !== runId || !current();
    for (const needed of [own, m]) {
      if (!(await ensureLoaded(needed))) {
        if (!stale()) p.stat.textContent = `${needed.name} could not be loaded`;
        return;
      }
    }
    if (stale()) return;
    if (await drawStrip(p, own, m, nfe, seed, id, current)) say(own);
  };
  pick.onchange = async () => {
    const id = runId;
    const m = students.find((s) => s.name === pick.value);
    const current = () => pick.value === m.name;
    p.stat.textContent = `loading ${m.name}…`;
    try {
      await draw(m, id, current);
    } catch (e) {
      if (id === runId && current()) p.stat.textContent = `${m.name}: ${e.message ?? e}`;
    }
  };
  await draw(students[0], id, () => pick.value === students[0].name);
}

// `current()`: whether this draw is still the one asked for (a later menu choice supersedes it).
// Returns whether it drew.
async function drawStrip(p, teacher, student, nfe, seed, id, current = () => true) {
  // A class-conditional pair: each trajectory of its class by the menu (the teacher's ODE guided as its
  // panel is), and the student jumps with that class.
  const classes = student.classes?.length ? rowClasses(teacher, STRIP_ROWS) : undefined;
  const guidance = guidanceFor(classes);
  const r = await app.ode_jumps(teacher.name, student.name, nfe, STRIP_LEVELS, STRIP_ROWS, BigInt(seed), classes, guidance);
  if (id !== runId || !current()) return false;
  const shape = student.shape;
  const [c, h, w] = shape;
  const d = c * h * w;
  const levels = r.sigmas.length;
  const cell = 52, gap = 2, label = 124, head = 18, foot = 36, block = 8;
  const cols = levels + 1;
  p.canvas.width = label + cols * (cell + gap);
  p.canvas.height = head + STRIP_ROWS * (3 * (cell + gap) + block) + foot;
  const ctx = p.canvas.getContext('2d');
  ctx.fillStyle = '#ffffff';
  ctx.fillRect(0, 0, p.canvas.width, p.canvas.height);
  ctx.imageSmoothingEnabled = false;
  const tile = document.createElement('canvas');
  tile.width = w; tile.height = h;
  const t = tile.getContext('2d');
  let drawn = 0;
  const put = (pixels, at, x, y) => {
    const img = t.createImageData(w, h);
    if (putImage(img, 0, 0, pixels, at, shape)) drawn++;
    t.putImageData(img, 0, 0);
    ctx.drawImage(tile, x, y, cell, cell);
  };
  ctx.font = '11px system-ui, sans-serif';
  ctx.fillStyle = '#5a6478';
  ctx.textAlign = 'center';
  for (let l = 0; l < cols; l++) {
    const x = label + l * (cell + gap) + cell / 2;
    ctx.fillText(l < levels ? String(Number(r.sigmas[l].toPrecision(2))) : 'origin', x, head - 5);
  }
  ctx.textAlign = 'right';
  ctx.fillText('level σ', label - 6, head - 5);
  const names = ['ODE state x_σ', 'teacher D(x_σ, σ)', 'jump f(x_σ, σ)'];
  for (let i = 0; i < STRIP_ROWS; i++) {
    const rows = [r.states, r.denoised, r.jumps];
    for (let q = 0; q < 3; q++) {
      const y = head + i * (3 * (cell + gap) + block) + q * (cell + gap);
      ctx.textAlign = 'right';
      ctx.fillStyle = q === 2 ? '#1f4fbf' : '#5a6478';
      ctx.fillText(names[q], label - 6, y + cell / 2 + 4);
      for (let l = 0; l < levels; l++) put(rows[q], (l * STRIP_ROWS + i) * d, label + l * (cell + gap), y);
      put(r.origin, i * d, label + levels * (cell + gap), y);
    }
  }
  const y0 = p.canvas.height - foot + 13;
  ctx.textAlign = 'right';
  ctx.fillStyle = '#1f4fbf'; ctx.fillText('RMS to origin: jump', label - 6, y0);
  ctx.fillStyle = '#5a6478'; ctx.fillText('teacher', label - 6, y0 + 15);
  ctx.textAlign = 'center';
  for (let l = 0; l < levels; l++) {
    const x = label + l * (cell + gap) + cell / 2;
    ctx.fillStyle = '#1f4fbf'; ctx.fillText(r.jump_rms[l].toFixed(3), x, y0);
    ctx.fillStyle = '#5a6478'; ctx.fillText(r.denoised_rms[l].toFixed(3), x, y0 + 15);
  }
  p.canvas.dataset.images = String(drawn);
  Object.assign(p.canvas.dataset, { teacher: teacher.name, model: student.name, levels: String(levels) });
  p.canvas.dataset.jumpRms = Array.from(r.jump_rms).join(',');
  p.canvas.dataset.denoisedRms = Array.from(r.denoised_rms).join(',');
  const mean = (a) => Array.from(a).reduce((s, v) => s + v, 0) / a.length;
  p.stat.textContent = `${STRIP_ROWS} trajectories${classWords(teacher, classes)}${guidance !== 1 ? ` · guidance ${guidance}` : ''} · ${levels} levels · mean RMS to the origin: jump ${mean(r.jump_rms).toFixed(3)}, teacher ${mean(r.denoised_rms).toFixed(3)} · ${r.ms.toFixed(0)} ms`;
  p.canvas.title = 'rows per trajectory: the ODE state (scaled to the data\'s spread), the teacher\'s denoised estimate (the mean: blurred at large σ), the consistency model\'s one-step jump (ideally the origin, at every level)';
  return true;
}

// Zero-shot editing (CM Algorithm 4) on a reference image: a one-step sample, or an uploaded image.
// Painting marks the region to fill (inpaint) or draws white strokes (stroke-guided generation).
const editor = { model: null, shape: null, reference: null, mask: null, fresh: true, painting: false, stroke: null };
const EDIT_RESULTS = 4;
const INTERP_FRAMES = 9;

// Dragging the interpolation slider shows the frame at that position of the spherical path.
function showFrame() {
  const m = editor.model;
  if (!m || !editor.frames) return;
  const d = m.shape.reduce((a, b) => a * b, 1);
  const i = Math.round(Number($('interp').value) * (INTERP_FRAMES - 1));
  drawImages($('edit-output'), editor.frames.slice(i * d, (i + 1) * d), m.shape);
  $('edit-stat').textContent = `interpolation ${i + 1}/${INTERP_FRAMES} (α = ${(i / (INTERP_FRAMES - 1)).toFixed(2)})`;
}

function setReference(m, pixels, what) {
  editor.model = m;
  editor.shape = m.shape;
  editor.original = Float32Array.from(pixels);
  editor.reference = Float32Array.from(pixels);
  editor.mask = new Float32Array(pixels.length);
  editor.fresh = false;
  $('edit-ref').textContent = what;
  drawReference();
}

function drawReference() {
  if (!editor.reference) return;
  const canvas = $('edit-input');
  drawImages(canvas, editor.reference, editor.shape);
  // The mask as a translucent red overlay.
  const [c, h, w] = editor.shape;
  const ctx = canvas.getContext('2d');
  const scale = Math.min(canvas.width / (w + 2), canvas.height / (h + 2));
  ctx.fillStyle = 'rgba(220, 38, 38, 0.45)';
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    if (editor.mask[y * w + x] > 0) ctx.fillRect((x + 1) * scale, (y + 1) * scale, scale, scale);
  }
  canvas.dataset.masked = String(editor.mask.slice(0, h * w).reduce((a, b) => a + b, 0));
}

// The stroke colour as one pixel of the model's row, per channel: a plain image of that colour turned
// into the row by wasm (core's edit::image_row, as uploads: BT.601 for grey models).
function strokeValues(m) {
  const [c, h, w] = m.shape;
  const hex = $('stroke-colour').value;
  const rgb = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  const rgba = new Uint8Array(4 * h * w);
  for (let p = 0; p < h * w; p++) rgba.set([...rgb, 255], 4 * p);
  const row = app.image(m.name, rgba);
  return Array.from({ length: c }, (_, k) => row[k * h * w]);
}

// Canvas position -> image pixel; paints a 3x3 brush.
function paintAt(ev) {
  if (!editor.reference) return;
  const canvas = $('edit-input');
  const [c, h, w] = editor.shape;
  const rect = canvas.getBoundingClientRect();
  const scale = Math.min(canvas.width / (w + 2), canvas.height / (h + 2));
  const x = Math.floor(((ev.clientX - rect.left) * canvas.width / rect.width) / scale) - 1;
  const y = Math.floor(((ev.clientY - rect.top) * canvas.height / rect.height) / scale) - 1;
  const stroke = editor.stroke;
  for (let dy = -1; dy <= 1; dy++) for (let dx = -1; dx <= 1; dx++) {
    const px = x + dx, py = y + dy;
    if (px < 0 || py < 0 || px >= w || py >= h) continue;
    for (let k = 0; k < c; k++) {
      const i = k * h * w + py * w + px;
      if (stroke) editor.reference[i] = stroke[k]; else editor.mask[i] = 1;
    }
  }
  drawReference();
}

// A square region of a bitmap as the model's row: drawn on white at the model's size, then turned into
// the row in wasm (core's edit::image_row: [-1, 1], BT.601 for grey models), for uploads and examples.
function bitmapRow(m, bitmap, sx, sy, side) {
  const [c, h, w] = m.shape;
  const off = document.createElement('canvas');
  off.width = w; off.height = h;
  const g = off.getContext('2d');
  g.fillStyle = '#ffffff';
  g.fillRect(0, 0, w, h);
  g.drawImage(bitmap, sx, sy, side, side, 0, 0, w, h);
  return app.image(m.name, new Uint8Array(g.getImageData(0, 0, w, h).data.buffer));
}

async function uploadReference(file) {
  const m = editor.model;
  if (!m) return;
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch (e) {
    $('edit-stat').textContent = `${file.name} could not be decoded as an image (${e.message ?? e}); the reference is unchanged`;
    return;
  }
  const s = Math.min(bitmap.width, bitmap.height);
  setReference(m, bitmapRow(m, bitmap, (bitmap.width - s) / 2, (bitmap.height - s) / 2, s), file.name);
}

// The editor's starting image: a real test image of the dataset where index.json lists examples (tile
// `seed` of the row, as `cm data --name <set> --resolution <r> --out <file>.png` writes it: tiles of side
// t with a 1-pixel gutter), else the model's own one-step sample.
const exampleBitmaps = new Map();
async function exampleReference(m, seed, fallback) {
  const ex = examples[m.view] ?? examples[m.dataset];
  try {
    if (!ex) throw new Error('no examples');
    if (!exampleBitmaps.has(ex.file)) {
      const res = await cachedFetch(`models/${ex.file}`);
      if (!res.ok) throw new Error(`models/${ex.file}: HTTP ${res.status}`);
      exampleBitmaps.set(ex.file, await createImageBitmap(await res.blob()));
    }
    const bitmap = exampleBitmaps.get(ex.file);
    const t = bitmap.height - 2;
    const count = Math.max(1, Math.floor((bitmap.width - 1) / (t + 1)));
    const k = seed % count;
    setReference(m, bitmapRow(m, bitmap, 1 + k * (t + 1), 1, t), `test image ${k + 1}/${count}: ${ex.text}`);
  } catch (e) {
    if (ex) problem(`Editor examples for ${m.view}: ${e.message ?? e}`);
    setReference(m, fallback, `one-step sample of ${m.name}`);
  }
}

async function runEdit() {
  const m = editor.model;
  if (!m || !editor.reference) return;
  const task = $('task').value;
  const sigma = Number($('sigma').value);
  const seed = intInput('seed', 0, 2 ** 31);
  const stat = $('edit-stat');
  // A class-conditional model fills in what the class menu asks: one class, or with "each class" one
  // result per class (interpolation: a path within one class; none with "each class").
  const each = $('class').value === 'each' && m.classes?.length;
  let classes;
  try {
    let r;
    if (task === 'interpolate') {
      classes = each ? undefined : rowClasses(m, INTERP_FRAMES);
      r = await app.interpolate(m.name, BigInt(seed), BigInt(seed + 1), INTERP_FRAMES, null, classes);
      editor.frames = r.points;
    } else {
      const [name, factor] = task.startsWith('super-resolution') ? ['super-resolution', Number(task.split('-').pop())] : [task, 2];
      const n = each ? m.classes.length : EDIT_RESULTS;
      classes = rowClasses(m, n);
      // null: the edit's default τ list (core's Edit::default_taus, as `cm edit`). Denoising adds the
      // seed's noise in wasm (core's Edit::inputs, as `cm edit denoise`) and returns the noisy copies.
      r = await app.edit(m.name, name, Array.from(editor.reference), Array.from(editor.mask), null, sigma, factor, n, BigInt(seed), classes);
      if (name === 'denoise') drawImages($('edit-input'), r.input.slice(0, r.points.length / n), editor.shape);
    }
    drawImages($('edit-output'), r.points, m.shape);
    stat.textContent = `${task}${classWords(m, classes)} · NFE ${r.nfe} · ${r.ms.toFixed(1)} ms`;
    $('interp').disabled = task !== 'interpolate';
    window.cmLastEdit = { task, seed, classes: classes && Array.from(classes), model: m.name, reference: Array.from(editor.reference), input: Array.from(r.input ?? editor.reference), mask: Array.from(editor.mask), points: Array.from(r.points) };
  } catch (e) {
    stat.textContent = `failed: ${e.message ?? e}`;
    window.cmLastEdit = { task, error: String(e.message ?? e) };
  }
}

function bindEditor() {
  const canvas = $('edit-input');
  canvas.addEventListener('pointerdown', (ev) => {
    if (!editor.model) return;
    // One stroke, one colour: asked of wasm once per stroke, not per pointer move.
    editor.stroke = $('task').value === 'stroke' ? strokeValues(editor.model) : null;
    editor.painting = true;
    canvas.setPointerCapture(ev.pointerId);
    paintAt(ev);
  });
  canvas.addEventListener('pointermove', (ev) => { if (editor.painting) paintAt(ev); });
  canvas.addEventListener('pointerup', () => { editor.painting = false; });
  $('clear-paint').addEventListener('click', () => {
    if (!editor.original) return;
    editor.reference = Float32Array.from(editor.original);
    editor.mask = new Float32Array(editor.original.length);
    drawReference();
  });
  $('run-edit').addEventListener('click', runEdit);
  $('interp').addEventListener('input', showFrame);
  $('upload').addEventListener('change', (ev) => { if (ev.target.files[0]) uploadReference(ev.target.files[0]); });
}

// One consistency model's panels (1 and 2 steps, and k steps when k > 2 or the typed τ list's steps) or a
// teacher's Heun panel.
async function modelPanels(m, parent, settings, id) {
  const { seed, n, k, nfe } = settings;
  const show = (canvas, pixels, colour, cols) =>
    (m.shape ? drawImages(canvas, pixels, m.shape, cols) : draw(canvas, pixels, colour));
  if (isDiffusion(m)) {
    const plan = classPlan(m, m.shape ? TEACHER_IMAGES : n);
    // Classifier-free guidance of the teacher's ODE, where samples have a class.
    const w = guidanceFor(plan.classes);
    const p = panel(`${m.name} teacher · Heun${w !== 1 ? ` · guidance ${w}` : ''}`, parent);
    const r = await app.teacher(m.name, nfe, plan.n, BigInt(seed), false, plan.classes, w);
    if (id !== runId) return false;
    show(p.canvas, r.points, '#b4471f', plan.cols);
    p.stat.textContent = `NFE ${r.nfe} · ${r.ms.toFixed(1)} ms`;
    return true;
  }
  const typed = userTaus();
  const third = typed ? typed.length + 1 : k;
  for (const [i, steps] of (typed || k > 2 ? [1, 2, third] : [1, 2]).entries()) {
    const own = i === 2 ? typed : null;
    // null: the model's default list for `steps` (core's); wasm checks an own list by core's one rule.
    const p = panel(`${m.name} · ${own ? `τ = ${own.join(', ')}` : `${steps} step${steps > 1 ? 's' : ''}`}`, parent);
    const plan = classPlan(m, m.shape ? IMAGES : n);
    const r = await app.sample(m.name, steps, own, plan.n, BigInt(seed), plan.classes);
    if (id !== runId) return false;
    const taus = Array.from(r.taus);
    show(p.canvas, r.points, '#1f4fbf', plan.cols);
    p.stat.textContent = `NFE ${r.nfe} · ${r.ms.toFixed(1)} ms`;
    p.canvas.title = taus.length ? `τ = ${taus.map((t) => t.toPrecision(3)).join(', ')}` : 'one step from σ_max';
    if (m.shape && steps === 1 && (!editor.model || editor.model.view !== m.view || editor.fresh)) {
      await exampleReference(m, seed, Array.from(r.points.slice(0, m.shape.reduce((a, b) => a * b, 1))));
    }
  }
  return true;
}

function settings() {
  return { seed: intInput('seed', 0, 2 ** 31), n: intInput('n', 16, 16384), k: intInput('k', 1, 16), nfe: intInput('nfe', 1, 199) };
}

// What the visitor sees first: the dataset's best consistency model (by the two-step quality its card
// records) beside its teacher, with NFE and milliseconds; for 2D data, the data and the teacher's ODE
// paths against the model's jumps.
async function render() {
  const id = ++runId;
  document.body.dataset.status = 'sampling';
  for (const el of ['panels', 'how', 'compare-panels']) $(el).innerHTML = '';
  showMessage([...problems].join('\n')); // a previous render's failure is not this one's
  const dataset = $('dataset').value;
  const set = settings();
  const byName = (name) => catalogue.find((m) => m.name === name);
  const lineup = app.lineup(dataset);
  const [featured, teacher] = [byName(lineup.featured), byName(lineup.teacher)];
  const others = lineup.others.map(byName);
  const images = [featured, teacher, ...others].some((m) => m?.shape);
  fillClasses(featured ?? teacher);
  try {
    const lead = [featured, teacher].filter(Boolean);
    const ready = await Promise.all(lead.map(ensureLoaded));
    if (id !== runId) return; // a newer render owns the page
    const quality = featured?.quality != null ? ` (two-step ${featured.shape ? 'FID-LeNet' : 'sliced W2'} ${featured.quality.toPrecision(3)} recorded in its card)` : '';
    // The view as its menu names it (`mnist by class`, not the id `mnist-classes`).
    const viewName = $('dataset').selectedOptions[0]?.textContent || dataset;
    $('best-title').textContent = featured
      ? `${viewName}: ${featured.name}${teacher ? ` and its teacher ${teacher.name}` : ''}`
      : `${viewName}: ${lead.map((m) => m.name).join(', ')}`;
    // A featured model that is still a known failure says so here too (index.json's note).
    const caveat = featured && notes[featured.name]?.failure ? ` Known failure: ${notes[featured.name].text}` : '';
    const count = 1 + others.filter((m) => !isDiffusion(m)).length;
    $('best-note').textContent = featured
      ? `${count > 1 ? `The best of ${count} consistency models here` : 'The one consistency model here'}${quality}: one step, two steps${set.k > 2 ? `, ${set.k} steps` : ''}, against the teacher's ODE at ${set.nfe} NFE.${caveat}`
      : '';
    for (const [i, m] of lead.entries()) {
      if (ready[i] && !(await modelPanels(m, $('panels'), set, id))) return;
    }
    $('how').hidden = false;
    if (images) {
      if (featured && teacher && ready.every(Boolean)) {
        await showStrip(teacher, [featured, ...others.filter((m) => !isDiffusion(m))], set.nfe, set.seed, id);
        if (id !== runId) return;
      }
    } else {
      const sigma = Number($('data-sigma').value);
      const data = panel(sigma > 0 ? `data: ${dataset} + σ z, σ = ${sigma}` : `data: ${dataset}`, $('how'));
      // With σ > 0, the forward process x + σ z (the noise a consistency model learns to remove), in wasm.
      draw(data.canvas, app.data(dataset, set.n, BigInt(set.seed), sigma), '#6b7280');
      data.stat.textContent = sigma > 0 ? 'noised with the slider' : 'fresh draw';
      if (featured && teacher && ready.every(Boolean)) {
        await drawPaths(teacher, featured, set.nfe, set.seed, id);
        if (id !== runId) return;
      }
    }
    $('editor').hidden = !images;
    $('compare').hidden = others.length === 0;
    $('compare-count').textContent = `(${others.length} more model${others.length === 1 ? '' : 's'} of ${viewName})`;
    if ($('compare').open && !(await renderCompare(others, set, id))) return;
    document.body.dataset.status = 'ready';
  } catch (e) {
    if (id !== runId) return;
    showMessage(`Sampling failed: ${e.message ?? e}`);
    document.body.dataset.status = 'error';
  }
}

// The method comparison: every other model of the dataset, best recorded quality first, each with the
// note index.json keeps on it (known failures marked, with why).
async function renderCompare(others, set, id) {
  for (const m of others) {
    const row = document.createElement('div');
    row.className = 'model-row';
    const note = notes[m.name];
    const head = document.createElement('h3');
    head.textContent = `${m.name} `;
    const method = document.createElement('small');
    method.textContent = `${m.method}${m.quality != null ? ` · recorded ${isDiffusion(m) ? 'teacher' : 'two-step'} quality ${m.quality.toPrecision(3)}` : ''}`;
    head.append(method);
    if (note?.failure) {
      const badge = document.createElement('span');
      badge.className = 'badge';
      badge.textContent = 'known failure';
      head.append(' ', badge);
    }
    row.append(head);
    if (note) {
      const p = document.createElement('p');
      p.className = 'note';
      p.textContent = note.text;
      row.append(p);
    }
    const panels = document.createElement('div');
    panels.className = 'panels';
    row.append(panels);
    $('compare-panels').append(row);
    const loaded = await ensureLoaded(m);
    if (id !== runId) return false;
    if (loaded && !(await modelPanels(m, panels, set, id))) return false;
  }
  return true;
}

// Used by the browser test to compare with native `cm sample` (same weights, same noise).
window.cmParity = async (name, taus, n, seed, classes) => {
  const m = catalogue.find((c) => c.name === name);
  if (m && !(await ensureLoaded(m))) throw new Error(`${name} could not be loaded`);
  return Array.from((await app.sample(name, taus.length + 1, taus, n, BigInt(seed), classes)).points);
};
window.cmLoad = (cardText, bytes) => app.load_model(cardText, new Uint8Array(bytes));

async function main() {
  bindings = await bindingsReady();
  // Shareable settings: ?backend=cpu&dataset=moons&seed=3&n=512&k=4&nfe=35&compare=1
  const params = new URLSearchParams(location.search);
  if (params.get('backend')) $('prefer').value = params.get('backend');
  for (const id of ['seed', 'n', 'k', 'nfe', 'taus', 'guidance']) if (params.get(id)) $(id).value = params.get(id);
  const askedClass = params.get('class');
  $('compare').open = params.get('compare') === '1';
  await startApp();
  await loadCards();
  if (params.get('dataset')) $('dataset').value = params.get('dataset');
  if (askedClass) $('class').replaceChildren(new Option('', askedClass));
  for (const id of ['dataset', 'seed', 'n', 'k', 'nfe']) $(id).addEventListener('change', () => { editor.fresh = true; render(); });
  for (const id of ['taus', 'jump-sigma', 'data-sigma', 'class', 'guidance']) $(id).addEventListener('change', render);
  $('own-load').addEventListener('click', loadOwn);
  // Whichever of the two was used last is what Load loads.
  $('own-url').addEventListener('input', () => { $('own-files').value = ''; });
  $('own-files').addEventListener('change', () => { $('own-url').value = ''; });
  // Opening the comparison loads and draws the other models (their weights are fetched only then).
  $('compare').addEventListener('toggle', () => { if ($('compare').open) render(); });
  bindEditor();
  $('resample').addEventListener('click', () => {
    editor.fresh = true;
    $('seed').value = Number($('seed').value) + 1;
    render();
  });
  $('prefer').addEventListener('change', async () => {
    document.body.dataset.status = 'loading';
    try {
      await startApp();
      await loadCards();
      await render();
    } catch (e) {
      showMessage(`The playground could not restart: ${e.message ?? e}`);
      document.body.dataset.status = 'error';
    }
  });
  await render();
}

main().catch((e) => {
  showMessage(`The playground could not start: ${e.message ?? e}`);
  document.body.dataset.status = 'error';
});
