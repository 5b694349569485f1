// Browser tests of the playground in real headless Chromium: both backends (WebGPU on SwiftShader,
// and the CPU fallback), native<->wasm parity, and a broken weights file.
//
// Needs: the built page in $CM_DIST (default ../../dist), the `cm` binary in $CM_BIN, /usr/bin/chromium.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import { execFileSync } from 'node:child_process';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const dist = path.resolve(process.env.CM_DIST ?? path.join(root, 'dist'));
const cmBin = process.env.CM_BIN;
const artifacts = path.join(here, 'artifacts');
fs.mkdirSync(artifacts, { recursive: true });

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm', '.css': 'text/css', '.json': 'application/json' };
let server;
let base;

before(async () => {
  assert.ok(fs.existsSync(path.join(dist, 'index.html')), `no built page in ${dist}: run trunk build first`);
  server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    let file = path.join(dist, decodeURIComponent(url.pathname));
    if (!file.startsWith(dist)) { res.writeHead(403).end(); return; }
    if (fs.existsSync(file) && fs.statSync(file).isDirectory()) file = path.join(file, 'index.html');
    if (!fs.existsSync(file)) { res.writeHead(404).end('not found'); return; }
    // As a static host does: the page reuses a cached model file only where a validator says it is unchanged.
    const stat = fs.statSync(file);
    res.writeHead(200, {
      'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream',
      'content-length': stat.size,
      'last-modified': stat.mtime.toUTCString(),
    });
    fs.createReadStream(file).pipe(res);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${server.address().port}/`;
});

after(() => server?.close());

async function launch(webgpu) {
  const args = ['--no-sandbox', '--no-first-run', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--disable-quic'];
  if (webgpu) args.push('--enable-unsafe-webgpu');
  return chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', headless: true, args });
}

async function openPage(browser, query) {
  const page = await browser.newPage();
  const errors = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push(String(e)));
  // The weight files the page fetched, as `<model>/model.safetensors`, in request order.
  const weights = [];
  page.on('request', (r) => { if (r.url().endsWith('model.safetensors') && r.method() === 'GET') weights.push(r.url().split('/models/')[1]); });
  await page.goto(base + query);
  await page.waitForFunction(() => ['ready', 'error'].includes(document.body.dataset.status), null, { timeout: 240_000 });
  return { page, errors, weights };
}

// Opens the page at `query` in a fresh headless Chromium (with WebGPU where `webgpu`), asserts that it
// became ready (its message in the failure), runs `body` with what `openPage` returns, and closes the
// browser however `body` ends.
async function withReadyPage(query, body, { webgpu = false } = {}) {
  const browser = await launch(webgpu);
  try {
    const opened = await openPage(browser, query);
    const status = await opened.page.evaluate(() => document.body.dataset.status);
    assert.equal(status, 'ready', `page status ${status}: ${await opened.page.locator('#message').textContent()}`);
    return await body(opened);
  } finally {
    await browser.close();
  }
}

// Uploads the image file `png` as the editor's reference and waits until the page names it.
async function uploadReference(page, png) {
  await page.setInputFiles('#upload', png);
  await page.waitForFunction((name) => document.querySelector('#edit-ref').textContent === name, path.basename(png));
}

// Runs the editor's current tool once and returns what the page did (`window.cmLastEdit`); an edit that
// reports an error fails the test, named by `what`.
async function runEdit(page, what = 'edit') {
  await page.evaluate(() => { window.cmLastEdit = null; });
  await page.click('#run-edit');
  await page.waitForFunction(() => window.cmLastEdit !== null, null, { timeout: 120_000 });
  const last = await page.evaluate(() => window.cmLastEdit);
  assert.equal(last.error, undefined, `${what}: ${last.error}`);
  return last;
}

function readNpy(file) {
  const buf = fs.readFileSync(file);
  const hlen = buf.readUInt16LE(8);
  const body = buf.subarray(10 + hlen);
  return Array.from(new Float32Array(body.buffer.slice(body.byteOffset, body.byteOffset + body.length)));
}

function nativeSamples(taus, n, seed, model = 'moons-ict', extra = []) {
  assert.ok(cmBin, 'set CM_BIN to the cm binary for the parity test');
  const out = path.join(os.tmpdir(), `cm-native-${process.pid}-${seed}.npy`);
  const schedule = taus.length ? ['--taus', taus.join(',')] : ['--steps', '1'];
  execFileSync(cmBin, ['sample', '--model', path.join(root, 'www/models', model), ...schedule,
    '--n', String(n), '--seed', String(seed), '--out', out, ...extra]);
  return readNpy(out);
}

// SwiftShader's WebGPU runs these models ~50x slower than the wasm CPU path: fewer points there.
for (const [backend, webgpu, query] of [['webgpu', true, '?backend=webgpu&n=256&nfe=9'], ['cpu', false, '?backend=auto']]) {
  test(`playground draws samples on the ${backend} path`, async () => {
    await withReadyPage(query, async ({ page, errors }) => {
      assert.equal(await page.evaluate(() => document.body.dataset.backend), backend);
      const counts = await page.$$eval('canvas[data-points]', (cs) => cs.map((c) => Number(c.dataset.points)));
      const paths = await page.$$eval('canvas[data-paths]', (cs) => cs.map((c) => Number(c.dataset.paths)));
      assert.deepEqual(paths, [48], 'one panel of teacher paths against consistency jumps');
      assert.ok(counts.length >= 4, `only ${counts.length} panels`);
      const expected = backend === 'webgpu' ? 256 : 2048;
      assert.ok(counts.every((c) => c === expected), `finite points drawn per panel: ${counts}, expected ${expected}`);
      const stats = await page.$$eval('figcaption', (fs) => fs.map((f) => f.textContent));
      console.log(`[${backend}] ${stats.join(' | ')}`);
      await page.screenshot({ path: path.join(artifacts, `playground-${backend}.png`), fullPage: true });
      assert.deepEqual(errors, []);

      // Parity: the same weights and seed give the same samples natively and in the browser.
      for (const taus of [[], [0.821]]) {
        const web = await page.evaluate(([t]) => window.cmParity('moons-ict', t, 256, 7), [taus]);
        const native = nativeSamples(taus, 256, 7);
        assert.equal(web.length, native.length);
        const maxDiff = Math.max(...web.map((v, i) => Math.abs(v - native[i])));
        console.log(`[${backend}] parity ${taus.length + 1} step(s): max |web - native| = ${maxDiff.toExponential(2)}`);
        assert.ok(maxDiff < 2e-3, `web and native samples differ by ${maxDiff}`);
      }

      // Timing for the closing note: one step after warm-up (a report, not an assertion).
      const n = backend === 'webgpu' ? 1024 : 4096;
      await page.evaluate((n) => window.cmParity('moons-ict', [], n, 1), n);
      const ms = await page.evaluate(async (n) => { const t = performance.now(); await window.cmParity('moons-ict', [], n, 2); return performance.now() - t; }, n);
      console.log(`[${backend}] one-step, ${n} samples: ${ms.toFixed(1)} ms (${(ms * 1000 / n).toFixed(2)} us/sample)`);
    }, { webgpu });
  });
}

test('image models draw sample grids, and match native sampling', async () => {
  await withReadyPage('?backend=cpu&dataset=mnist&nfe=9&compare=1', async ({ page, errors }) => {
    const counts = await page.$$eval('#panels canvas[data-images], #compare-panels canvas[data-images]', (cs) => cs.map((c) => Number(c.dataset.images)));
    // 1, 2 and 4 steps of every bundled MNIST consistency model (64 images each), one teacher panel (16 images).
    const cards = JSON.parse(fs.readFileSync(path.join(dist, 'models/index.json'), 'utf8')).models
      .map((name) => JSON.parse(fs.readFileSync(path.join(dist, 'models', name, 'config.json'), 'utf8')))
      // 28 px: the mnist-28 view; class-conditional models: the mnist-classes view.
      .filter((c) => c.dataset === 'mnist' && c.model.architecture.resolution === 16 && !c.model.architecture.classes);
    const teachers = cards.filter((c) => c.method === 'edm' || c.method === 'trigflow').length;
    const students = cards.length - teachers;
    assert.ok(students >= 1 && teachers >= 1, `bundled MNIST models: ${cards.map((c) => c.name)}`);
    const expected = [...Array(teachers).fill(16), ...Array(3 * students).fill(64)];
    assert.deepEqual(counts.slice().sort((a, b) => a - b), expected, `images per panel: ${counts}`);
    assert.equal(await page.$$eval('canvas[data-points]', (cs) => cs.length), 0, 'no scatter panels for images');
    const stats = await page.$$eval('figcaption', (fs) => fs.map((f) => f.textContent));
    console.log(`[images] ${stats.join(' | ')}`);
    await page.screenshot({ path: path.join(artifacts, 'playground-mnist.png'), fullPage: true });
    assert.deepEqual(errors, []);
    // The EDM-form U-Net (iCT) and, when bundled, the TrigFlow one with double normalisation (sCT;
    // two steps at sCM's t_mid = 1.1, sigma = 0.5 tan 1.1).
    const parity = [['mnist-ict', [0.821]], ['mnist-sct', [0.5 * Math.tan(1.1)]]]
      .filter(([name]) => cards.some((c) => c.name === name));
    for (const [name, two] of parity) {
      for (const taus of [[], two]) {
        const web = await page.evaluate(([m, t]) => window.cmParity(m, t, 4, 7), [name, taus]);
        const native = nativeSamples(taus, 4, 7, name);
        assert.equal(web.length, native.length);
        const maxDiff = Math.max(...web.map((v, i) => Math.abs(v - native[i])));
        console.log(`[images] ${name} parity ${taus.length + 1} step(s): max |web - native| = ${maxDiff.toExponential(2)}`);
        assert.ok(maxDiff < 2e-3, `${name}: web and native image samples differ by ${maxDiff}`);
      }
    }
  });
});

// The educators' strip on image models: the teacher's ODE states, its denoised estimates and the lead
// model's jumps, with each level's RMS distance to the trajectories' origin — the same numbers as
// `cm trajectory` for the same pair, seed and NFE (both through core's Model::ode_jumps).
test('image views show the teacher\'s ODE against the model\'s jumps, as `cm trajectory` measures them', async () => {
  assert.ok(cmBin, 'set CM_BIN to the cm binary');
  await withReadyPage('?backend=cpu&dataset=mnist&nfe=9&seed=4', async ({ page, errors }) => {
    const strip = await page.$eval('#how canvas[data-jump-rms]', (c) => ({ ...c.dataset }));
    const levels = Number(strip.levels);
    // 9 Heun NFE: 5 steps, so 5 states above sigma = 0 to jump from; 4 trajectories of 3 rows, the origin last.
    assert.equal(levels, 5);
    assert.equal(Number(strip.images), 4 * 3 * (levels + 1));
    // The page's RMS distances against `cm trajectory`'s for the strip's pair, seed and NFE.
    const againstNative = (s) => {
      const web = { jump: s.jumpRms.split(',').map(Number), denoised: s.denoisedRms.split(',').map(Number) };
      const native = JSON.parse(execFileSync(cmBin, ['trajectory', '--model', path.join(root, 'www/models', s.model),
        '--teacher', path.join(root, 'www/models', s.teacher), '--nfe', '9', '--levels', '8', '--n', '4', '--seed', '4'], { encoding: 'utf8' }));
      assert.equal(native.levels.length, web.jump.length);
      const diff = Math.max(...native.levels.flatMap((l, i) => [Math.abs(l.jump_rms - web.jump[i]), Math.abs(l.denoised_rms - web.denoised[i])]));
      return { web, native, diff };
    };
    const { web, native, diff } = againstNative(strip);
    console.log(`[strip] ${strip.model} from ${strip.teacher}'s ODE: jump RMS ${web.jump.map((v) => v.toFixed(3))}, teacher ${web.denoised.map((v) => v.toFixed(3))}; max |web - native| ${diff.toExponential(2)}`);
    assert.equal(native.levels.length, levels);
    assert.ok(diff < 1e-3, `the page's RMS distances differ from cm trajectory's by ${diff}`);
    assert.ok(web.jump[0] < 0.7 * web.denoised[0], `from sigma_max the jump lands nearer the origin: ${web.jump[0]} vs ${web.denoised[0]}`);
    // Another model of the view from the same trajectories: the original CM recipe's collapsed CT model
    // (a known failure, one-step samples near the mean image) lands far from the origin.
    const options = await page.$$eval('#strip-model option', (os) => os.map((o) => o.value));
    assert.equal(options[0], strip.model, 'the lead model first');
    if (options.includes('mnist-ct')) {
      await page.selectOption('#strip-model', 'mnist-ct');
      await page.waitForFunction(() => document.querySelector('#how canvas[data-jump-rms]').dataset.model === 'mnist-ct', null, { timeout: 120_000 });
      const ct = await page.$eval('#how canvas[data-jump-rms]', (c) => c.dataset.jumpRms.split(',').map(Number));
      console.log(`[strip] mnist-ct from the same trajectories: jump RMS ${ct.map((v) => v.toFixed(3))}`);
      assert.ok(ct[0] > 2 * web.jump[0], `mnist-ct's jump from sigma_max (${ct[0]}) against ${strip.model}'s (${web.jump[0]})`);
    }
    // A model distilled from another teacher of the view is measured against its own teacher's ODE:
    // mnist-cd's recipe distils mnist-edm, whose weights load with it.
    assert.ok(options.includes('mnist-cd'), `strip menu: ${options}`);
    assert.notEqual(strip.teacher, 'mnist-edm', 'the lead model follows another teacher');
    await page.selectOption('#strip-model', 'mnist-cd');
    await page.waitForFunction(() => document.querySelector('#how canvas[data-jump-rms]').dataset.model === 'mnist-cd', null, { timeout: 120_000 });
    const cd = await page.$eval('#how canvas[data-jump-rms]', (c) => ({ ...c.dataset }));
    assert.equal(cd.teacher, 'mnist-edm');
    assert.match(await page.locator('#how figcaption .title').first().textContent(), /the teacher's ODE \(mnist-edm\) vs the jumps of/);
    const own = againstNative(cd);
    console.log(`[strip] mnist-cd from mnist-edm's ODE: jump RMS ${own.web.jump.map((v) => v.toFixed(3))}; max |web - native| ${own.diff.toExponential(2)}`);
    assert.ok(own.diff < 1e-3, `mnist-cd: the page's RMS distances differ from cm trajectory's by ${own.diff}`);
    assert.deepEqual(errors, []);
  });
});

test('editing on the page: inpaint keeps unpainted pixels, super-resolution keeps patch means, every tool runs', async () => {
  await withReadyPage('?backend=cpu&dataset=mnist&nfe=9&k=2', async ({ page, errors }) => {
    assert.equal(await page.locator('#editor').isHidden(), false, 'the editor shows for image models');
    const canvas = page.locator('#edit-input');
    await canvas.scrollIntoViewIfNeeded();
    const box = await canvas.boundingBox();
    // Paint the left third of the reference with the mouse.
    await page.mouse.move(box.x + box.width * 0.15, box.y + box.height * 0.2);
    await page.mouse.down();
    for (let t = 0; t <= 10; t++) await page.mouse.move(box.x + box.width * 0.2, box.y + box.height * (0.2 + 0.06 * t));
    await page.mouse.up();
    const masked = Number(await canvas.getAttribute('data-masked'));
    assert.ok(masked > 10, `painted mask pixels: ${masked}`);
    const run = async (task) => {
      await page.selectOption('#task', task);
      const last = await runEdit(page, task);
      console.log(`[edit] ${task}: ${await page.locator('#edit-stat').textContent()}`);
      return last;
    };
    const d = 256;
    const inpaint = await run('inpaint');
    // The editor starts from a real test image: tile `seed` (0) of the bundled examples row that
    // `cm data --name mnist --resolution 16` wrote, pixel for pixel (in [-1, 1]).
    assert.match(await page.locator('#edit-ref').textContent(), /test image 1\/16: MNIST test split/);
    const ex = readPng(path.join(dist, 'models/examples/mnist-16.png'));
    let exErr = 0;
    for (let y = 0; y < 16; y++) for (let x = 0; x < 16; x++) {
      exErr = Math.max(exErr, Math.abs(ex.data[(1 + y) * ex.width + 1 + x] / 127.5 - 1 - inpaint.reference[y * 16 + x]));
    }
    assert.ok(exErr < 1e-4, `the reference differs from the example tile by ${exErr}`);
    let kept = 0, changed = 0;
    for (let r = 0; r < inpaint.points.length / d; r++) {
      for (let i = 0; i < d; i++) {
        const diff = Math.abs(inpaint.points[r * d + i] - inpaint.reference[i]);
        if (inpaint.mask[i] === 0) kept = Math.max(kept, diff); else changed = Math.max(changed, diff);
      }
    }
    assert.ok(kept < 1e-4, `unpainted pixels moved by ${kept}`);
    assert.ok(changed > 0.05, `nothing generated in the painted region (${changed})`);
    await page.screenshot({ path: path.join(artifacts, 'edit-inpaint.png'), fullPage: true });

    const sr = await run('super-resolution-4');
    const means = (v, off) => Array.from({ length: 16 }, (_, b) => {
      let s = 0;
      for (let y = 0; y < 4; y++) for (let x = 0; x < 4; x++) s += v[off + (Math.floor(b / 4) * 4 + y) * 16 + (b % 4) * 4 + x];
      return s / 16;
    });
    const want = means(sr.reference, 0);
    const got = means(sr.points, 0);
    const err = Math.max(...want.map((v, i) => Math.abs(v - got[i])));
    assert.ok(err < 1e-4, `4x4 patch means moved by ${err}`);
    const srChanged = Math.max(...sr.points.slice(0, d).map((v, i) => Math.abs(v - sr.reference[i])));
    assert.ok(srChanged > 0.05, 'super-resolution generated detail');

    // Denoising the page's noisy copy brings every result closer to the clean reference.
    const dn = await run('denoise');
    const mse = (a, off, b) => b.reduce((s, v, i) => s + (a[off + i] - v) ** 2, 0) / b.length;
    const noisy = mse(dn.input, 0, dn.reference);
    for (let k = 0; k < dn.points.length / d; k++) {
      const after = mse(dn.points, k * d, dn.reference);
      assert.ok(after < noisy, `denoised result ${k}: MSE ${after} vs noisy ${noisy}`);
    }
    const interp = await run('interpolate');
    assert.equal(interp.points.length, 9 * d);
    assert.ok(interp.points.every(Number.isFinite));
    // Dragging the slider shows one frame; the ends differ.
    await page.locator('#interp').fill('1');
    assert.match(await page.locator('#edit-stat').textContent(), /interpolation 9\/9/);
    const ends = Math.max(...interp.points.slice(0, d).map((v, i) => Math.abs(v - interp.points[8 * d + i])));
    assert.ok(ends > 0.1, 'the two ends of the interpolation differ');
    await page.selectOption('#task', 'stroke');
    await page.click('#clear-paint');
    await page.mouse.move(box.x + box.width * 0.5, box.y + box.height * 0.2);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * 0.5, box.y + box.height * 0.8, { steps: 12 });
    await page.mouse.up();
    const stroke = await run('stroke');
    assert.ok(stroke.reference.some((v) => v === 1), 'strokes painted white into the reference');
    assert.ok(stroke.points.every(Number.isFinite));
    await page.screenshot({ path: path.join(artifacts, 'edit-stroke.png'), fullPage: true });
    const colour = await run('colourise').catch((e) => ({ error: String(e) }));
    assert.match(String(colour.error ?? ''), /3-channel|colour/, 'colourising a grey model is explained');
    assert.deepEqual(errors.filter((e) => !/3-channel/.test(e)), []);
  });
});

// Milliseconds for one-step generation of 16 MNIST images in the browser, on each path (printed for the
// README; speed is measured here, not asserted). Native: `cm bench --model www/models/mnist-ict --n 16`.
for (const backend of ['cpu', 'webgpu']) {
  test(`one-step batch of 16 MNIST images on the ${backend} path`, async () => {
    const browser = await launch(backend === 'webgpu');
    try {
      const { page } = await openPage(browser, `?backend=${backend}&dataset=moons&n=256`);
      const label = await page.locator('#backend').textContent();
      if (backend === 'webgpu' && !/WebGPU/i.test(label)) {
        console.log(`[mnist-16] no WebGPU adapter here (${label}); skipped`);
        return;
      }
      const first = await page.evaluate(async () => { const t = performance.now(); await window.cmParity('mnist-ict', [], 16, 1); return performance.now() - t; });
      const times = [];
      for (let i = 0; i < 3; i++) {
        times.push(await page.evaluate(async (s) => { const t = performance.now(); await window.cmParity('mnist-ict', [], 16, s); return performance.now() - t; }, i + 2));
      }
      times.sort((a, b) => a - b);
      console.log(`[mnist-16] ${label.trim()}: first call ${first.toFixed(0)} ms, then median ${times[1].toFixed(1)} ms for 16 images, one step`);
      assert.ok(times.every(Number.isFinite));
    } finally {
      await browser.close();
    }
  });
}

// An 8-bit grey or RGB, non-interlaced PNG (what `cm` writes) as {width, height, channels, data}.
function readPng(file) {
  const buf = fs.readFileSync(file);
  let at = 8, width = 0, height = 0, channels = 0;
  const idat = [];
  while (at < buf.length) {
    const len = buf.readUInt32BE(at), type = buf.toString('latin1', at + 4, at + 8), body = buf.subarray(at + 8, at + 8 + len);
    if (type === 'IHDR') {
      [width, height] = [body.readUInt32BE(0), body.readUInt32BE(4)];
      assert.equal(body[8], 8, `${file}: bit depth`); assert.equal(body[12], 0, `${file}: interlaced`);
      channels = { 0: 1, 2: 3 }[body[9]];
      assert.ok(channels, `${file}: colour type ${body[9]}`);
    }
    if (type === 'IDAT') idat.push(body);
    at += 12 + len;
  }
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const stride = width * channels, data = Buffer.alloc(height * stride);
  for (let y = 0; y < height; y++) {
    const f = raw[y * (stride + 1)], line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? data[y * stride + x - channels] : 0, b = y > 0 ? data[(y - 1) * stride + x] : 0;
      const c = x >= channels && y > 0 ? data[(y - 1) * stride + x - channels] : 0;
      const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
      const pred = [0, a, b, (a + b) >> 1, pa <= pb && pa <= pc ? a : pb <= pc ? b : c][f];
      data[y * stride + x] = (line[x] + pred) & 0xff;
    }
  }
  return { width, height, channels, data };
}

// A grey `size` x `size` PNG (8-bit, no colour chunks, so the browser decodes it unchanged).
function greyPng(size, pixel) {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf) => { let c = 0xffffffff; for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8); return (c ^ 0xffffffff) >>> 0; };
  const chunk = (type, data) => {
    const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type), data]);
    const c = Buffer.alloc(4); c.writeUInt32BE(crc(td));
    return Buffer.concat([len, td, c]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0); ihdr.writeUInt32BE(size, 4); ihdr[8] = 8; ihdr[9] = 0;
  const rows = [];
  for (let y = 0; y < size; y++) rows.push(Buffer.from([0, ...Array.from({ length: size }, (_, x) => pixel(x, y))]));
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(Buffer.concat(rows))), chunk('IEND', Buffer.alloc(0))]);
}

test('denoising: the page and `cm edit denoise` start from the same noisy images for the same seed', async () => {
  assert.ok(cmBin, 'set CM_BIN to the cm binary');
  await withReadyPage('?backend=cpu&dataset=mnist&nfe=9&k=2&seed=5', async ({ page, errors }) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cm-denoise-'));
    const png = path.join(dir, 'ref.png');
    fs.writeFileSync(png, greyPng(16, (x, y) => (x > 4 && x < 11 && y > 2 && y < 13 ? 230 : 20)));
    await uploadReference(page, png);
    await page.selectOption('#task', 'denoise');
    const web = await runEdit(page, 'denoise');
    const sigma = await page.locator('#sigma').inputValue();
    execFileSync(cmBin, ['edit', 'denoise', '--model', path.join(root, 'www/models', web.model), '--input', png,
      '--sigma', sigma, '--seed', String(web.seed), '--n', '4', '--save-input', path.join(dir, 'in.npy'),
      '--out', path.join(dir, 'out.npy')]);
    const maxDiff = (a, b) => { assert.equal(a.length, b.length); return Math.max(...a.map((v, i) => Math.abs(v - b[i]))); };
    const inputs = maxDiff(web.input, readNpy(path.join(dir, 'in.npy')));
    const results = maxDiff(web.points, readNpy(path.join(dir, 'out.npy')));
    console.log(`[denoise] ${web.model}, seed ${web.seed}, sigma ${sigma}: inputs differ by ${inputs.toExponential(2)}, results by ${results.toExponential(2)}`);
    assert.ok(inputs < 1e-5, `the page's noisy inputs differ from cm edit's by ${inputs}`);
    assert.ok(results < 2e-3, `the page's denoised images differ from cm edit's by ${results}`);
    // Another seed, other noise: the inputs are the seed's, not fixed.
    const other = fs.readFileSync(path.join(dir, 'in.npy'));
    execFileSync(cmBin, ['edit', 'denoise', '--model', path.join(root, 'www/models', web.model), '--input', png,
      '--sigma', sigma, '--seed', String(web.seed + 1), '--n', '4', '--save-input', path.join(dir, 'in.npy'),
      '--out', path.join(dir, 'out.npy')]);
    assert.ok(!other.equals(fs.readFileSync(path.join(dir, 'in.npy'))), 'seed + 1 draws other noise');
    assert.deepEqual(errors, []);
  });
});

test('the bundled colour model: emoji panels, and colourisation of a real test emoji keeps its luminance', async () => {
  await withReadyPage('?backend=cpu&dataset=emoji&nfe=9&k=2', async ({ page, errors }) => {
    const lead = await page.$$eval('#panels figcaption', (fs) => fs.map((f) => f.textContent));
    console.log(`[emoji] ${lead.join(' | ')}`);
    assert.equal(lead.length, 3, 'one step, two steps and the teacher');
    assert.match(await page.locator('#best-title').textContent(), /emoji: emoji-cd and its teacher emoji-edm/);
    assert.doesNotMatch(await page.locator('#best-note').textContent(), /Known failure/);
    assert.match(await page.locator('#edit-ref').textContent(), /test image 1\/16: emoji test split/);
    await page.selectOption('#task', 'colourise');
    await runEdit(page, 'colourise'); // warm-up
    const r = await runEdit(page, 'colourise');
    console.log(`[emoji] colourise: ${await page.locator('#edit-stat').textContent()}`);
    const hw = 32 * 32, d = 3 * hw;
    const luma = (v, o, p) => 0.299 * v[o + p] + 0.587 * v[o + hw + p] + 0.114 * v[o + 2 * hw + p];
    // Colour: the spread between channels of a result pixel, largest over the image, averaged over results.
    let lumaErr = 0, chroma = 0;
    const results = r.points.length / d;
    for (let k = 0; k < results; k++) {
      let most = 0;
      for (let p = 0; p < hw; p++) {
        lumaErr = Math.max(lumaErr, Math.abs(luma(r.points, k * d, p) - luma(r.reference, 0, p)));
        const ch = [0, 1, 2].map((c) => r.points[k * d + c * hw + p]);
        most = Math.max(most, Math.max(...ch) - Math.min(...ch));
      }
      chroma += most / results;
    }
    console.log(`[emoji] colourise: luminance error ${lumaErr.toExponential(2)}, mean largest channel spread ${chroma.toFixed(3)}`);
    assert.ok(lumaErr < 1e-4, `luminance moved by ${lumaErr}`);
    assert.ok(chroma > 0.2, `no colour generated (largest channel spread ${chroma})`);
    await page.screenshot({ path: path.join(artifacts, 'emoji-colourise.png'), fullPage: true });

    // Strokes in a picked colour (red), then SDEdit-style mapping back to the data: painted pixels hold
    // red in the model's [-1, 1] channels.
    await page.selectOption('#task', 'stroke');
    await page.fill('#stroke-colour', '#ff0000');
    const canvas = page.locator('#edit-input');
    await canvas.scrollIntoViewIfNeeded();
    const box = await canvas.boundingBox();
    await page.mouse.move(box.x + box.width * 0.3, box.y + box.height * 0.5);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * 0.7, box.y + box.height * 0.5, { steps: 8 });
    await page.mouse.up();
    const s = await runEdit(page, 'stroke');
    const red = Array.from({ length: hw }, (_, p) => p).filter((p) => s.reference[p] === 1 && s.reference[hw + p] === -1 && s.reference[2 * hw + p] === -1);
    assert.ok(red.length >= 20, `red stroke pixels in the reference: ${red.length}`);
    console.log(`[emoji] stroke: ${await page.locator('#edit-stat').textContent()}`);
    await page.screenshot({ path: path.join(artifacts, 'emoji-stroke.png'), fullPage: true });
    assert.deepEqual(errors, []);
  });
});

test('playground tools: your own model folder, a typed τ list, cached reloads, noise-level view', async () => {
  await withReadyPage('?backend=cpu&dataset=moons&n=256&k=4&taus=5,0.821,0.2&compare=1', async ({ page, errors }) => {
    const titles = async () => page.$$eval('figcaption .title', (ts) => ts.map((t) => t.textContent));
    assert.ok((await titles()).some((t) => t === 'moons-ict · τ = 5, 0.821, 0.2'), `typed taus: ${await titles()}`);

    // Your own model: the bundled moons-ict files under another name.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cm-own-'));
    const card = JSON.parse(fs.readFileSync(path.join(dist, 'models/moons-ict/config.json'), 'utf8'));
    card.name = 'my-moons';
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(card));
    fs.copyFileSync(path.join(dist, 'models/moons-ict/model.safetensors'), path.join(dir, 'model.safetensors'));
    await page.click('.own summary');
    await page.setInputFiles('#own-files', [path.join(dir, 'config.json'), path.join(dir, 'model.safetensors')]);
    await page.click('#own-load');
    await page.waitForFunction(() => document.querySelector('#own-status').dataset.ok !== undefined && document.body.dataset.status === 'ready');
    assert.match(await page.locator('#own-status').textContent(), /loaded my-moons/);
    assert.ok((await titles()).includes('my-moons · 1 step'), `own model panels: ${await titles()}`);

    // A card whose weights do not fit: the message names the file and what is wrong.
    fs.copyFileSync(path.join(dist, 'models/mnist-ict/model.safetensors'), path.join(dir, 'model.safetensors'));
    await page.setInputFiles('#own-files', [path.join(dir, 'config.json'), path.join(dir, 'model.safetensors')]);
    await page.click('#own-load');
    await page.waitForFunction(() => document.querySelector('#own-status').dataset.ok === 'false');
    const why = await page.locator('#own-status').textContent();
    assert.match(why, /not loaded: .*model\.safetensors for my-moons/, why);
    console.log(`[own] ${why}`);
    // A card's dataset names a view in the menu: markup there is refused when the card is read, never run.
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...card, dataset: '<img src=x onerror="window.pwned=1">' }));
    fs.copyFileSync(path.join(dist, 'models/moons-ict/model.safetensors'), path.join(dir, 'model.safetensors'));
    await page.setInputFiles('#own-files', [path.join(dir, 'config.json'), path.join(dir, 'model.safetensors')]);
    await page.click('#own-load');
    await page.waitForFunction(() => document.querySelector('#own-status').dataset.ok === 'false');
    assert.match(await page.locator('#own-status').textContent(), /config\.json: .*field `dataset`/);
    assert.equal(await page.evaluate(() => window.pwned), undefined);

    // Noise-level view of the data and the jump level of the paths panel.
    await page.evaluate(() => { document.querySelector('#data-sigma').value = '1'; document.querySelector('#data-sigma').dispatchEvent(new Event('change')); });
    await page.waitForFunction(() => document.body.dataset.status === 'ready');
    assert.ok((await titles()).some((t) => /σ z, σ = 1/.test(t)), `noised data panel: ${await titles()}`);

    // A reload takes the model files from the cache.
    await page.reload();
    await page.waitForFunction(() => ['ready', 'error'].includes(document.body.dataset.status), null, { timeout: 240_000 });
    const hits = await page.evaluate(() => window.cmCacheHits ?? 0);
    assert.ok(hits >= 2, `cache hits after reload: ${hits}`);
    console.log(`[cache] ${hits} model files from the cache on reload`);

    // A bad τ list is explained, not drawn.
    await page.fill('#taus', '0.2, 5');
    await page.dispatchEvent('#taus', 'change');
    await page.waitForFunction(() => document.body.dataset.status === 'error');
    assert.match(await page.locator('#message').textContent(), /strictly decreasing/);
    // The rule is core's (sample::check_taus), the CLI's too: sigma_max itself is refused, as by `cm sample`.
    await page.fill('#taus', '80, 0.5');
    await page.dispatchEvent('#taus', 'change');
    await page.waitForFunction(() => /strictly between sigma_min = [0-9.e-]+ and sigma_max = 80/.test(document.querySelector('#message').textContent));
    // A good list again: the failure's message goes with it (it once stayed over the good render).
    await page.fill('#taus', '');
    await page.dispatchEvent('#taus', 'change');
    await page.waitForFunction(() => document.body.dataset.status === 'ready');
    assert.ok(await page.locator('#message').isHidden(), await page.locator('#message').textContent());
    assert.deepEqual(errors, []);
  });
});

test('a visitor first sees the best model beside its teacher; other weights load when the comparison opens', async () => {
  await withReadyPage('?backend=cpu&dataset=mnist&nfe=9&k=2', async ({ page, errors, weights }) => {
    // The lead: the best recorded two-step model (mnist-sct, README) and its teacher, nothing else loaded.
    assert.match(await page.locator('#best-title').textContent(), /mnist-sct and its teacher mnist-trigflow/);
    const lead = await page.$$eval('#panels figcaption .title', (ts) => ts.map((t) => t.textContent));
    assert.deepEqual(lead, ['mnist-sct · 1 step', 'mnist-sct · 2 steps', 'mnist-trigflow teacher · Heun']);
    assert.deepEqual(weights.sort(), ['mnist-sct/model.safetensors', 'mnist-trigflow/model.safetensors'], `weights fetched at start: ${weights}`);
    assert.match(await page.locator('#panels').textContent(), /NFE 1 .* ms/);
    // The comparison: the other MNIST models, known failures marked with their note.
    await page.click('#compare summary');
    await page.waitForFunction(() => document.querySelectorAll('#compare-panels canvas[data-images]').length > 0 && document.body.dataset.status === 'ready', null, { timeout: 240_000 });
    const rows = await page.$$eval('.model-row', (rs) => rs.map((r) => ({ head: r.querySelector('h3').textContent, note: r.querySelector('.note')?.textContent ?? '' })));
    console.log(`[lineup] ${rows.map((r) => r.head).join(' | ')}`);
    const failures = rows.filter((r) => /known failure/.test(r.head)).map((r) => r.head.split(' ')[0]).sort();
    assert.deepEqual(failures, ['mnist-ct', 'mnist-scd-scratch', 'mnist-sct-scratch']);
    assert.ok(rows.find((r) => r.head.startsWith('mnist-ct')).note.includes('grey mean image'));
    assert.ok(weights.includes('mnist-cd/model.safetensors'), 'opening the comparison loaded the others');
    assert.deepEqual(errors, []);
  });
});

test('MNIST at 28 px is its own view: its best model beside its teacher, and a 28 px test digit in the editor', async () => {
  await withReadyPage('?backend=cpu&dataset=mnist-28&nfe=9&k=2', async ({ page, errors, weights }) => {
    const views = await page.$$eval('#dataset option', (os) => os.map((o) => o.value));
    assert.ok(views.includes('mnist') && views.includes('mnist-28'), `views: ${views}`);
    assert.match(await page.locator('#best-title').textContent(), /mnist-cd-28 and its teacher mnist-edm-28/);
    const lead = await page.$$eval('#panels figcaption .title', (ts) => ts.map((t) => t.textContent));
    assert.deepEqual(lead, ['mnist-cd-28 · 1 step', 'mnist-cd-28 · 2 steps', 'mnist-edm-28 teacher · Heun']);
    assert.deepEqual(weights.sort(), ['mnist-cd-28/model.safetensors', 'mnist-edm-28/model.safetensors'], `weights fetched: ${weights}`);
    console.log(`[mnist-28] ${(await page.$$eval('#panels figcaption', (cs) => cs.map((c) => c.textContent))).join(' | ')}`);
    // The editor starts from a real 28 px test digit (index.json's mnist-28 example), not an upscaled 16 px one.
    assert.match(await page.locator('#edit-ref').textContent(), /MNIST test split at 28 px/);
    await page.screenshot({ path: path.join(artifacts, 'playground-mnist-28.png'), fullPage: true });
    assert.deepEqual(errors, []);
  });
});

test('class-conditional models have a "by class" view: a class menu, one column per class, and native parity by class', async () => {
  await withReadyPage('?backend=cpu&dataset=mnist-classes&nfe=9&k=2&class=7', async ({ page, errors }) => {
    const views = await page.$$eval('#dataset option', (os) => os.map((o) => [o.value, o.textContent]));
    assert.ok(views.some(([v, t]) => v === 'mnist-classes' && t === 'mnist by class'), `views: ${views}`);
    assert.equal(await page.locator('#class-label').isVisible(), true);
    const options = await page.$$eval('#class option', (os) => os.map((o) => o.textContent));
    assert.deepEqual(options, ['each class', ...'0123456789'.split(''), 'no class']);
    assert.equal(await page.locator('#class').inputValue(), '7', 'the ?class= URL parameter picks the class');
    assert.match(await page.locator('#best-title').textContent(), /mnist-sct-cond and its teacher mnist-trigflow-cond/);
    const lead = await page.$$eval('#panels figcaption .title', (ts) => ts.map((t) => t.textContent));
    assert.deepEqual(lead, ['mnist-sct-cond · 1 step', 'mnist-sct-cond · 2 steps', 'mnist-trigflow-cond teacher · Heun']);
    // One class: the page's samples are `cm sample --class 7`'s, row for row.
    const web = await page.evaluate(() => window.cmParity('mnist-sct-cond', [], 4, 3, new Uint32Array(4).fill(7)));
    const native = nativeSamples([], 4, 3, 'mnist-sct-cond', ['--class', '7']);
    const maxDiff = Math.max(...web.map((v, i) => Math.abs(v - native[i])));
    console.log(`[classes] mnist-sct-cond class 7 parity: max |web - native| = ${maxDiff.toExponential(2)}`);
    assert.ok(maxDiff < 2e-3, `web and native class-7 samples differ by ${maxDiff}`);
    // Every class in turn: 64 samples round up to 7 rows of 10 columns, one per digit.
    await page.selectOption('#class', 'each');
    await page.waitForFunction(() => document.body.dataset.status === 'ready' && document.querySelectorAll('#panels canvas[data-images]').length === 3);
    const counts = await page.$$eval('#panels canvas[data-images]', (cs) => cs.map((c) => Number(c.dataset.images)));
    assert.deepEqual(counts, [70, 70, 20], `images per panel: ${counts}`);
    await page.screenshot({ path: path.join(artifacts, 'playground-mnist-classes.png'), fullPage: true });
    // The strip follows each class's ODE, and the student jumps with that class.
    const strip = await page.locator('#how figcaption .stat').first().textContent();
    assert.match(strip, /^4 trajectories · classes 0, 1, 2, 3 · 5 levels/);
    const stripModels = await page.$$eval('#strip-model option', (os) => os.map((o) => o.value));
    assert.deepEqual(stripModels, ['mnist-sct-cond', 'mnist-scd-cond'], 'the guided student is in the strip menu');
    // Teacher guidance: the teacher's panel and the strip's ODE follow it.
    await page.fill('#guidance', '1.5');
    await page.dispatchEvent('#guidance', 'change');
    await page.waitForFunction(() => document.body.dataset.status === 'ready' && /guidance 1.5/.test(document.querySelector('#how figcaption .stat')?.textContent ?? ''));
    assert.ok(await page.$$eval('#panels figcaption .title', (ts) => ts.some((t) => t.textContent === 'mnist-trigflow-cond teacher · Heun · guidance 1.5')));
    await page.fill('#guidance', '1');
    await page.dispatchEvent('#guidance', 'change');
    await page.waitForFunction(() => document.body.dataset.status === 'ready' && !/guidance/.test(document.querySelector('#how figcaption .stat')?.textContent ?? 'guidance'));
    // The editor fills in as the menu asks: "each class" gives one result per digit...
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cm-class-edit-'));
    const png = path.join(dir, 'ref.png');
    fs.writeFileSync(png, greyPng(16, (x, y) => (x > 4 && x < 11 && y > 2 && y < 13 ? 230 : 20)));
    await uploadReference(page, png);
    await page.selectOption('#task', 'denoise');
    const each = await runEdit(page, 'denoise, each class');
    assert.deepEqual(each.classes, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.equal(each.points.length, 10 * 256);
    assert.match(await page.locator('#edit-stat').textContent(), /^denoise · classes 0, 1, 2/);
    // ...and one class gives `cm edit denoise --class 7`'s results for the same seed.
    await page.selectOption('#class', '7');
    await page.waitForFunction(() => document.body.dataset.status === 'ready');
    const seven = await runEdit(page, 'denoise as a 7');
    assert.deepEqual(seven.classes, [7, 7, 7, 7]);
    const sigma = await page.locator('#sigma').inputValue();
    execFileSync(cmBin, ['edit', 'denoise', '--model', path.join(root, 'www/models', seven.model), '--input', png,
      '--sigma', sigma, '--seed', String(seven.seed), '--n', '4', '--class', '7', '--out', path.join(dir, 'out.npy')]);
    const native7 = readNpy(path.join(dir, 'out.npy'));
    const editDiff = Math.max(...seven.points.map((v, i) => Math.abs(v - native7[i])));
    console.log(`[classes] ${seven.model} denoise as a 7: max |web - native| = ${editDiff.toExponential(2)}`);
    assert.ok(editDiff < 2e-3, `the page's class-7 edit differs from cm edit's by ${editDiff}`);
    // Back to an unconditional view: the menu hides.
    await page.selectOption('#dataset', 'mnist');
    await page.waitForFunction(() => document.body.dataset.status === 'ready');
    assert.equal(await page.locator('#class-label').isVisible(), false);
    assert.deepEqual(errors, []);
  });
});

test('named classes: `?class=sneaker` picks Fashion-MNIST\'s Sneaker in its by-class view', async () => {
  await withReadyPage('?backend=cpu&dataset=fashion-mnist-classes&nfe=9&k=2&class=sneaker', async ({ page, errors }) => {
    const options = await page.$$eval('#class option', (os) => os.map((o) => o.textContent));
    assert.ok(options.includes('Sneaker') && options.includes('Ankle boot'), `classes: ${options}`);
    assert.equal(await page.locator('#class').inputValue(), '7', 'Sneaker is Fashion-MNIST\'s class 7');
    // The title names the view as its menu does.
    assert.match(await page.locator('#best-title').textContent(), /^fashion-mnist by class: fashion-mnist-sct-cond and its teacher fashion-mnist-trigflow-cond/);
    assert.match(await page.locator('#how figcaption .stat').first().textContent(), /· class Sneaker ·/);
    const stripModels = await page.$$eval('#strip-model option', (os) => os.map((o) => o.value));
    assert.deepEqual(stripModels, ['fashion-mnist-sct-cond', 'fashion-mnist-scd-cond'], 'the guided student is in the strip menu');
    const web = await page.evaluate(() => window.cmParity('fashion-mnist-sct-cond', [], 4, 3, new Uint32Array(4).fill(7)));
    const native = nativeSamples([], 4, 3, 'fashion-mnist-sct-cond', ['--class', 'Sneaker']);
    const maxDiff = Math.max(...web.map((v, i) => Math.abs(v - native[i])));
    console.log(`[classes] fashion-mnist-sct-cond Sneaker parity: max |web - native| = ${maxDiff.toExponential(2)}`);
    assert.ok(maxDiff < 2e-3, `web and native Sneaker samples differ by ${maxDiff}`);
    await page.screenshot({ path: path.join(artifacts, 'playground-fashion-classes.png'), fullPage: true });
    assert.deepEqual(errors, []);
  });
});

test('a weights file that does not match shows a message, not a dead page', async () => {
  const browser = await launch(false);
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    const real = fs.readFileSync(path.join(dist, 'models/moons-ict/model.safetensors'));
    await page.route('**/models/moons-ict/model.safetensors', (route) => route.fulfill({ body: real.subarray(0, real.length >> 1) }));
    await page.goto(base + '?backend=cpu&compare=1');
    await page.waitForFunction(() => ['ready', 'error'].includes(document.body.dataset.status), null, { timeout: 240_000 });
    const message = await page.locator('#message').textContent();
    assert.match(message, /moons-ict/);
    assert.match(message, /safetensors/);
    assert.equal(await page.evaluate(() => document.body.dataset.status), 'ready', 'other models still render');
    await page.screenshot({ path: path.join(artifacts, 'bad-weights.png'), fullPage: true });
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});
