//! Hostile input and crashes (issue: hostile input, crashes and a fresh machine): each defect found by
//! trying `cm` as an attacker would, reproduced here. Every one is a clear one-line error (no panic, no
//! runaway memory) or a recovery, and nothing already saved is lost.

use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
use common::{cm, fails_with, fresh_dir, moons_recipe};

fn tmp(name: &str) -> PathBuf {
    fresh_dir("hostile", name)
}

fn ok(out: &Output) {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A small moons iCT recipe, logging and checkpointing every few steps.
fn recipe(extra_top: &str, extra_sections: &str) -> String {
    let top = format!(
        "method = \"ict\"\nsteps = 12\nbatch = 32\nema_decay = 0.9\nlog_every = 1\ncheckpoint_every = 4\n{extra_top}"
    );
    moons_recipe(&top, r#"{ kind = "fourier", scale = 0.02, seed = 0 }"#, extra_sections)
}

fn train(dir: &Path, text: &str, args: &[&str]) -> Output {
    let cfg = dir.join("recipe.toml");
    std::fs::write(&cfg, text).unwrap();
    let run = dir.join("run");
    let mut all = vec!["train", "--config", cfg.to_str().unwrap(), "--out", run.to_str().unwrap()];
    all.extend_from_slice(args);
    cm(&all)
}

fn steps_logged(run: &Path) -> Vec<u64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["step"].as_u64().unwrap())
        .collect()
}

/// The float data of a safetensors file (all our tensors are F32).
fn data_range(bytes: &[u8]) -> std::ops::Range<usize> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    8 + n..bytes.len()
}

/// The weights of a safetensors file, not its header (burn writes its metadata map in no fixed order).
fn weights_data(path: PathBuf) -> Vec<u8> {
    let b = std::fs::read(path).unwrap();
    b[data_range(&b)].to_vec()
}

/// A run trained to the end, then set back to how a kill after step 8's checkpoint leaves it: no
/// final checkpoint and no model. Returns (the test folder, the run folder).
fn run_killed_after_checkpoint_8(name: &str) -> (PathBuf, PathBuf) {
    let d = tmp(name);
    ok(&train(&d, &recipe("", ""), &[]));
    let run = d.join("run");
    std::fs::remove_dir_all(run.join("model")).unwrap();
    std::fs::remove_dir_all(run.join("checkpoints/step-0000012")).unwrap();
    (d, run)
}

/// A trained moons model folder of its own.
fn trained_model(name: &str) -> PathBuf {
    let d = tmp(name);
    ok(&train(&d, &recipe("", ""), &[]));
    d.join("run/model")
}

/// Sets every weight of `model` to `value`, and drops its card's `weights_sha256` so that the card
/// still loads; returns the card.
fn fill_weights(model: &Path, value: f32) -> serde_json::Value {
    let mut card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("config.json")).unwrap()).unwrap();
    card.as_object_mut().unwrap().remove("weights_sha256");
    std::fs::write(model.join("config.json"), card.to_string()).unwrap();
    let path = model.join("model.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    let r = data_range(&bytes);
    for chunk in bytes[r].chunks_exact_mut(4) {
        chunk.copy_from_slice(&value.to_le_bytes());
    }
    std::fs::write(&path, &bytes).unwrap();
    card
}

// 1. Memory decided by a small file is checked before anything is allocated.

#[test]
fn a_card_that_implies_huge_weights_is_refused_before_allocating() {
    let model = trained_model("huge-card");
    let card = std::fs::read_to_string(model.join("config.json")).unwrap();
    let huge = card.replace("\"hidden\": 16", "\"hidden\": 65536").replace("\"blocks\": 1", "\"blocks\": 8");
    assert_ne!(huge, card);
    std::fs::write(model.join("config.json"), huge).unwrap();
    let out = tmp("huge-card-out").join("s.npy");
    fails_with(
        &cm(&["sample", "--model", model.to_str().unwrap(), "--n", "8", "--out", out.to_str().unwrap()]),
        &["parameters"],
    );
}

#[test]
fn an_oversized_card_file_is_not_read() {
    let model = trained_model("big-card");
    let mut card = std::fs::read_to_string(model.join("config.json")).unwrap();
    card.push_str(&" ".repeat(2 << 20));
    std::fs::write(model.join("config.json"), card).unwrap();
    let out = tmp("big-card-out").join("s.npy");
    fails_with(
        &cm(&["sample", "--model", model.to_str().unwrap(), "--n", "8", "--out", out.to_str().unwrap()]),
        &["config.json", "bytes"],
    );
}

#[test]
fn a_batch_beyond_the_memory_cap_is_refused_and_the_cap_can_be_raised() {
    let d = tmp("batch");
    let text = recipe("", "").replace("batch = 32", "batch = 1048576").replace("hidden = 16", "hidden = 256");
    fails_with(&train(&d, &text, &[]), &["batch", "--max-memory-gb"]);
    assert!(!d.join("run/checkpoints").exists());
    // The same recipe is taken when the user raises the cap (checked, then refused for steps here
    // only to keep the test fast: a recipe with 0 steps is invalid).
    let out = train(&d, &text.replace("steps = 12", "steps = 0"), &["--max-memory-gb", "1000"]);
    fails_with(&out, &["steps"]);
}

#[test]
fn an_image_claiming_a_huge_size_is_refused() {
    let d = tmp("bomb");
    // 5000 x 5000 grey pixels of zeros: a few kilobytes of PNG for 25 megapixels.
    let path = d.join("bomb.png");
    let mut enc = png::Encoder::new(std::fs::File::create(&path).unwrap(), 5000, 5000);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_compression(png::Compression::Best);
    let mut w = enc.write_header().unwrap();
    w.write_image_data(&vec![0u8; 5000 * 5000]).unwrap();
    drop(w);
    assert!(std::fs::metadata(&path).unwrap().len() < 200_000);
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../www/models/mnist-ict");
    let out = d.join("o.png");
    fails_with(
        &cm(&[
            "edit",
            "denoise",
            "--model",
            model.to_str().unwrap(),
            "--input",
            path.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]),
        &["bomb.png", "4096"],
    );
}

// 2. Inputs that used to panic.

#[test]
fn unet_widths_that_groups_do_not_divide_are_named() {
    let d = tmp("groups");
    let text = r#"
dataset = "mnist"
method = "edm"
steps = 2
batch = 4
ema_decay = 0.9
[optimizer]
lr = 0.001
[network]
kind = "unet"
channels = 1
resolution = 16
base = 4
mult = [2, 4, 4]
res_blocks = 1
groups = 8
emb_dim = 8
embedding = { kind = "fourier", scale = 1.0, seed = 0 }
"#;
    fails_with(&train(&d, text, &[]), &["groups"]);
    let huge = text.replace("mult = [2, 4, 4]", "mult = [4611686018427387904]");
    fails_with(&train(&d, &huge, &[]), &["mult"]);
    // Attention at a resolution the network never reaches (16, 8, 4 px) would be silently left out.
    let nowhere = text.replace("groups = 8", "groups = 4\nattention = [99]");
    fails_with(&train(&d, &nowhere, &[]), &["attention at 99 px", "[16, 8, 4]"]);
}

#[test]
fn a_curriculum_without_levels_is_refused() {
    let d = tmp("s0");
    let ct = "[ct]\ncurriculum = { kind = \"ict\", s0 = 0, s1 = 10 }\ndistance = \"l2\"\nweighting = \"ict\"\nindex_sampling = { kind = \"uniform\" }\n";
    fails_with(&train(&d, &recipe("", ct), &[]), &["ct.curriculum", "s0"]);
    let far = ct.replace("s0 = 0, s1 = 10", "s0 = 10, s1 = 4000000000");
    fails_with(&train(&d, &recipe("", &far), &[]), &["ct.curriculum", "s1"]);
}

#[test]
fn a_flipped_bit_in_the_optimiser_state_is_caught_and_an_older_checkpoint_used() {
    let (d, run) = run_killed_after_checkpoint_8("bitflip");
    let bpk = run.join("checkpoints/step-0000008/optimizer.bpk");
    let mut bytes = std::fs::read(&bpk).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&bpk, bytes).unwrap();
    let out = train(&d, &recipe("", ""), &["--resume"]);
    ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("step-0000008") && err.contains("SHA-256"),
        "the damaged checkpoint is named: {err}"
    );
    assert!(run.join("model/model.safetensors").is_file());
    // Resumed from step 4: metrics hold every step once.
    assert_eq!(steps_logged(&run), (1..=12).collect::<Vec<_>>());
}

// 3. A run killed after its last checkpoint but before writing model/.

#[test]
fn resuming_a_run_that_reached_its_last_step_writes_its_model() {
    let d = tmp("finished");
    ok(&train(&d, &recipe("", ""), &[]));
    let run = d.join("run");
    let before = weights_data(run.join("model/model.safetensors"));
    std::fs::remove_dir_all(run.join("model")).unwrap();
    ok(&train(&d, &recipe("", ""), &["--resume"]));
    assert!(weights_data(run.join("model/model.safetensors")) == before, "the same model is written");
    // With its model written, the run is finished.
    fails_with(&train(&d, &recipe("", ""), &["--resume"]), &["already reached step 12"]);
}

#[test]
fn a_run_stopped_early_resumes_to_the_uninterrupted_result() {
    let full = tmp("stop-full");
    ok(&train(&full, &recipe("", ""), &[]));
    let cut = tmp("stop-cut");
    ok(&train(&cut, &recipe("", ""), &["--stop-at", "6"]));
    assert!(!cut.join("run/model").exists(), "a stopped run exports nothing");
    assert!(cut.join("run/checkpoints/step-0000006").is_dir(), "it checkpoints where it stopped");
    ok(&train(&cut, &recipe("", ""), &["--resume"]));
    assert!(
        weights_data(full.join("run/model/model.safetensors"))
            == weights_data(cut.join("run/model/model.safetensors")),
        "stop + resume trains the same weights"
    );
    assert_eq!(steps_logged(&cut.join("run")), (1..=12).collect::<Vec<_>>());
}

// 4 and 7. A model folder's card and weights belong together; broken numbers are errors.

#[test]
fn weights_from_another_model_are_refused_by_the_checksum() {
    let a = trained_model("sha-a");
    let d = tmp("sha-b");
    ok(&train(&d, &recipe("", "").replace("lr = 0.001", "lr = 0.002"), &[]));
    let b = d.join("run/model");
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("config.json")).unwrap()).unwrap();
    assert_eq!(card["weights_sha256"].as_str().unwrap().len(), 64);
    std::fs::copy(b.join("model.safetensors"), a.join("model.safetensors")).unwrap();
    let out = tmp("sha-out").join("s.npy");
    fails_with(
        &cm(&["sample", "--model", a.to_str().unwrap(), "--n", "8", "--out", out.to_str().unwrap()]),
        &["SHA-256"],
    );
    assert!(!out.exists());
}

#[test]
fn nan_weights_and_nan_samples_are_errors() {
    let model = trained_model("nan");
    let path = model.join("model.safetensors");
    let good = std::fs::read(&path).unwrap();
    let mut card = fill_weights(&model, f32::NAN);
    let out = tmp("nan-out").join("s.npy");
    let sample =
        || cm(&["sample", "--model", model.to_str().unwrap(), "--n", "64", "--out", out.to_str().unwrap()]);
    fails_with(&sample(), &["NaN"]);
    // Finite weights that overflow f32 in the forward pass: the samples are not finite.
    fill_weights(&model, 3.0e38);
    fails_with(&sample(), &["NaN or infinite"]);
    // A card whose sigma_data would overflow the scalings is refused before sampling.
    std::fs::write(&path, &good).unwrap();
    card["model"]["sigma_data"] = serde_json::json!(1e200);
    std::fs::write(model.join("config.json"), card.to_string()).unwrap();
    fails_with(&sample(), &["sigma_data"]);
    assert!(!out.exists());
}

// 5. Weights turned NaN between log steps are never checkpointed.

#[test]
fn a_non_finite_checkpoint_is_never_written() {
    let d = tmp("nan-ckpt");
    let text = recipe("", "")
        .replace("log_every = 1", "log_every = 50")
        .replace("checkpoint_every = 4", "checkpoint_every = 1")
        .replace("lr = 0.001", "lr = 3e38");
    fails_with(&train(&d, &text, &[]), &["non-finite"]);
    for c in std::fs::read_dir(d.join("run/checkpoints")).into_iter().flatten() {
        let bytes = std::fs::read(c.unwrap().path().join("model.safetensors")).unwrap();
        let r = data_range(&bytes);
        assert!(
            bytes[r].chunks_exact(4).all(|c| f32::from_le_bytes(c.try_into().unwrap()).is_finite()),
            "a checkpoint holds non-finite weights"
        );
    }
}

// 6. Another run's checkpoints are not adopted.

#[test]
fn a_new_run_in_a_folder_with_checkpoints_is_refused_unless_forced() {
    let d = tmp("stale");
    ok(&train(&d, &recipe("", ""), &[]));
    let run = d.join("run");
    std::fs::remove_dir_all(run.join("model")).unwrap();
    let other = recipe("", "").replace("steps = 12", "steps = 8");
    fails_with(&train(&d, &other, &["--seed", "5"]), &["checkpoints", "--resume", "--force"]);
    assert!(run.join("checkpoints/step-0000012").is_dir(), "nothing is removed unasked");
    ok(&train(&d, &other, &["--seed", "5", "--force"]));
    assert!(!run.join("checkpoints/step-0000012").exists(), "--force clears the old run's checkpoints");
    assert!(run.join("checkpoints/step-0000008").is_dir());
}

// 8. Recipe fields are checked.

#[test]
fn out_of_range_recipe_fields_are_named() {
    let d = tmp("fields");
    let cases = [
        (recipe("", "").replace("lr = 0.001", "lr = 0.001\ngrad_clip = -1.0"), "optimizer.grad_clip"),
        (recipe("", "[edm]\np_std = 0.0\n").replace("method = \"ict\"", "method = \"edm\""), "edm"),
        (
            recipe(
                "",
                "[ct]\ncurriculum = { kind = \"cm\", s0 = 2, s1 = 10, mu0 = nan }\ndistance = \"l2\"\nweighting = \"uniform\"\nindex_sampling = { kind = \"uniform\" }\n",
            ),
            "mu0",
        ),
        (
            recipe(
                "",
                "[ct]\ncurriculum = { kind = \"ict\", s0 = 2, s1 = 10 }\ndistance = \"l2\"\nweighting = \"ict\"\nindex_sampling = { kind = \"lognormal\", p_mean = -1.1, p_std = -2.0 }\n",
            ),
            "p_std",
        ),
        (
            recipe(
                "",
                "[ct]\ncurriculum = { kind = \"ict\", s0 = 2, s1 = 10 }\ndistance = \"l2\"\nweighting = \"ict\"\nindex_sampling = { kind = \"uniform\" }\nrho = 0.0\n",
            ),
            "ct.rho",
        ),
    ];
    for (text, field) in cases {
        fails_with(&train(&d, &text, &[]), &[field]);
    }
}

// 9. Temporary files, metrics after a resume.

#[test]
fn a_resumed_run_logs_each_step_once_and_leaves_no_temporary_files() {
    // Killed after step 10: checkpoint 8 is the newest, the log ran on to step 10.
    let (d, run) = run_killed_after_checkpoint_8("metrics");
    let log: String = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .take(10)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(run.join("metrics.jsonl"), log).unwrap();
    ok(&train(&d, &recipe("", ""), &["--resume"]));
    assert_eq!(steps_logged(&run), (1..=12).collect::<Vec<_>>());
    let leftovers: Vec<_> = walk(&d).into_iter().filter(|p| p.to_string_lossy().contains(".tmp")).collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    let siblings: Vec<_> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') && n != ".cm-lock")
        .collect();
    assert!(siblings.is_empty(), "model-folder staging left: {siblings:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

// The loaders under random mutation (a bounded fuzz run inside the test suite; a longer one with
// `CM_FUZZ_CASES=N cargo test -p cm-trainer --test hostile survives`).

fn fuzz_cases(default: usize) -> usize {
    std::env::var("CM_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// xorshift64*: a fixed, dependency-free generator so every run mutates the same way.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One random change: a flipped bit, a truncation, a duplicated or deleted span, a byte set to a
/// boundary value, or (in text) a number replaced by an extreme one.
fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>, text: bool) {
    let n = bytes.len().max(1);
    match rng.below(if text { 6 } else { 5 }) {
        0 => {
            let i = rng.below(n);
            if let Some(b) = bytes.get_mut(i) {
                *b ^= 1 << rng.below(8);
            }
        }
        1 => bytes.truncate(rng.below(n)),
        2 => {
            let (i, len) = (rng.below(n), rng.below(64));
            let span: Vec<u8> = bytes.iter().skip(i).take(len).copied().collect();
            let at = rng.below(n);
            bytes.splice(at.min(bytes.len())..at.min(bytes.len()), span);
        }
        3 => {
            let i = rng.below(n);
            let end = (i + rng.below(32)).min(bytes.len());
            if i < end {
                bytes.drain(i..end);
            }
        }
        4 => {
            let i = rng.below(n);
            if let Some(b) = bytes.get_mut(i) {
                *b = [0x00, 0xff, 0x7f, 0x80][rng.below(4)];
            }
        }
        _ => {
            // Replace one run of digits with an extreme number.
            let s = String::from_utf8_lossy(bytes).into_owned();
            let digits: Vec<usize> =
                s.char_indices().filter(|(_, c)| c.is_ascii_digit()).map(|(i, _)| i).collect();
            if let Some(&i) = digits.get(rng.below(digits.len())) {
                let end = s[i..].find(|c: char| !c.is_ascii_digit()).map_or(s.len(), |e| i + e);
                let big = ["0", "4294967296", "18446744073709551615", "1e308", "65536", "-1"][rng.below(6)];
                *bytes = format!("{}{big}{}", &s[..i], &s[end..]).into_bytes();
            }
        }
    }
}

#[test]
fn the_model_folder_loader_survives_random_mutations() {
    let model = trained_model("fuzz");
    let card = std::fs::read(model.join("config.json")).unwrap();
    let weights = std::fs::read(model.join("model.safetensors")).unwrap();
    // Without the checksum the weights' own parser is exercised; with it, the checksum guards.
    let mut unsummed: serde_json::Value = serde_json::from_slice(&card).unwrap();
    unsummed.as_object_mut().unwrap().remove("weights_sha256");
    let unsummed = unsummed.to_string().into_bytes();
    let dir = tmp("fuzz-case");
    let device = burn::prelude::Device::flex();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut loaded, mut refused) = (0, 0);
    let runs = fuzz_cases(2000);
    for i in 0..runs {
        let (mut c, mut w) = (if i % 2 == 0 { unsummed.clone() } else { card.clone() }, weights.clone());
        for _ in 0..1 + rng.below(3) {
            if rng.below(2) == 0 { mutate(&mut rng, &mut c, true) } else { mutate(&mut rng, &mut w, false) }
        }
        std::fs::write(dir.join("config.json"), &c).unwrap();
        std::fs::write(dir.join("model.safetensors"), &w).unwrap();
        let result = std::panic::catch_unwind(|| cm_trainer::io::load_model_dir(&dir, &device).map(|_| ()));
        match result {
            Ok(Ok(())) => loaded += 1,
            Ok(Err(_)) => refused += 1,
            Err(_) => panic!("case {i} panicked; card {:?}", String::from_utf8_lossy(&c)),
        }
    }
    eprintln!("{runs} mutated model folders: {loaded} loaded, {refused} refused with an error, 0 panics");
    assert_eq!(loaded + refused, runs);
}

#[test]
fn the_checkpoint_loader_survives_random_mutations() {
    let d = tmp("fuzz-ckpt");
    ok(&train(&d, &recipe("", ""), &[]));
    let cfg = cm_trainer::config::TrainConfig::load(&d.join("recipe.toml")).unwrap();
    let src = d.join("run/checkpoints/step-0000008");
    let names: Vec<String> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let files: Vec<(String, Vec<u8>)> =
        names.iter().map(|n| (n.clone(), std::fs::read(src.join(n)).unwrap())).collect();
    // state.json without its checksums, so the damaged files reach their parsers.
    let mut state: serde_json::Value =
        serde_json::from_slice(&files.iter().find(|(n, _)| n == "state.json").unwrap().1).unwrap();
    state.as_object_mut().unwrap().remove("sha256");
    let unsummed = state.to_string().into_bytes();
    let case = tmp("fuzz-ckpt-case").join("step-0000008");
    std::fs::create_dir_all(&case).unwrap();
    // The plain device: the same parsing as training's autodiff device, which keeps every tracked
    // parameter it ever made (about 35 KB a load here) and would grow over a long fuzz run.
    let device = burn::prelude::Device::flex();
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let (mut loaded, mut refused) = (0, 0);
    let runs = fuzz_cases(600);
    for i in 0..runs {
        for (name, bytes) in &files {
            let b = if name == "state.json" && i % 2 == 0 { &unsummed } else { bytes };
            std::fs::write(case.join(name), b).unwrap();
        }
        let (name, _) = &files[rng.below(files.len())];
        let mut b = std::fs::read(case.join(name)).unwrap();
        mutate(&mut rng, &mut b, name.ends_with(".json"));
        std::fs::write(case.join(name), &b).unwrap();
        let optim = burn::optim::AdamConfig::new().init();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            cm_trainer::checkpoint::load_with_optimizer(&case, &cfg.model(), &device, optim).map(|_| ())
        }));
        match result {
            Ok(Ok(())) => loaded += 1,
            Ok(Err(_)) => refused += 1,
            Err(_) => panic!("case {i} ({name} mutated) panicked"),
        }
    }
    eprintln!("{runs} mutated checkpoints: {loaded} loaded, {refused} refused with an error, 0 panics");
}

// 11. Found by a second round of hostile input (2026-11-29).

/// A bundled model folder of the page.
fn bundled(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../www/models").join(name)
}

#[test]
fn export_replaces_only_a_model_folder() {
    let d = tmp("export-over");
    let (_, run) = run_killed_after_checkpoint_8("export-over-run");
    let notes = d.join("notes");
    std::fs::create_dir_all(&notes).unwrap();
    std::fs::write(notes.join("notes.txt"), "mine").unwrap();
    let file = d.join("file.png");
    std::fs::write(&file, "mine").unwrap();
    let from = bundled("moons-ict");
    for (out, needle) in [(&run, "config.toml"), (&notes, "notes.txt"), (&file, "is a file")] {
        fails_with(
            &cm(&["export", "--from", from.to_str().unwrap(), "--out", out.to_str().unwrap()]),
            &[needle, "refusing"],
        );
    }
    assert!(run.join("checkpoints/step-0000008/state.json").is_file() && run.join("metrics.jsonl").is_file());
    assert_eq!(std::fs::read_to_string(notes.join("notes.txt")).unwrap(), "mine");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "mine");
    // A model folder is still replaced.
    let model = d.join("model");
    for _ in 0..2 {
        ok(&cm(&["export", "--from", from.to_str().unwrap(), "--out", model.to_str().unwrap()]));
    }
}

#[test]
fn sampling_counts_beyond_their_caps_are_refused_before_allocating() {
    let out = tmp("sample-caps").join("s.npy");
    let out = out.to_str().unwrap();
    let ict = bundled("moons-ict");
    let edm = bundled("moons-edm");
    let mnist = bundled("mnist-ict");
    let huge = u64::MAX.to_string();
    let cases: [(Vec<&str>, &[&str]); 5] = [
        (
            vec!["sample", "--model", ict.to_str().unwrap(), "--steps", &huge, "--out", out],
            &["consistency steps"],
        ),
        (
            vec!["sample", "--model", edm.to_str().unwrap(), "--teacher-nfe", &huge, "--out", out],
            &["network evaluations"],
        ),
        (vec!["eval", "--model", edm.to_str().unwrap(), "--teacher-nfe", &huge], &["network evaluations"]),
        (
            vec!["sample", "--model", mnist.to_str().unwrap(), "--n", "10000000", "--out", out],
            &["--n", "GiB"],
        ),
        (vec!["bench", "--model", mnist.to_str().unwrap(), "--n", "10000000"], &["--n", "GiB"]),
    ];
    for (args, needles) in cases {
        fails_with(&cm(&args), needles);
    }
    assert!(!Path::new(out).exists());
}

#[test]
fn memory_caps_apply_to_bench_and_must_be_numbers() {
    let d = tmp("bench-cap");
    let text = recipe("", "").replace("batch = 32", "batch = 1048576").replace("hidden = 16", "hidden = 256");
    let cfg = d.join("recipe.toml");
    std::fs::write(&cfg, &text).unwrap();
    fails_with(
        &cm(&["bench", "--train", cfg.to_str().unwrap(), "--steps", "1", "--warmup", "1"]),
        &["batch", "--max-memory-gb"],
    );
    for cap in ["nan", "-1", "0", "inf"] {
        fails_with(
            &train(&d, &text, &["--max-memory-gb", cap]),
            &["--max-memory-gb", "positive number of GiB"],
        );
    }
}

#[test]
fn more_devices_than_rows_are_refused() {
    let d = tmp("devices");
    let text = recipe("", "").replace("batch = 32", "batch = 3");
    fails_with(&train(&d, &text, &["--devices", "4"]), &["--devices 4", "batch"]);
}

#[test]
fn recipe_numbers_that_overflow_the_model_are_named() {
    let d = tmp("overflow-fields");
    let sct = |scm: &str| {
        moons_recipe(
            "method = \"sct\"\nsteps = 3\nbatch = 8\nema_decay = 0.9",
            r#"{ kind = "positional", scale = 1.0 }"#,
            &format!("[scm]\n{scm}\ntangent_warmup = 10\njvp = {{ kind = \"exact\" }}\n"),
        )
    };
    let noise = |max: &str, data: &str| {
        recipe("", &format!("[noise]\nsigma_min = 0.002\nsigma_max = {max}\nsigma_data = {data}\n"))
    };
    let cases = [
        (recipe("", "").replace("scale = 0.02", "scale = nan"), "embedding.scale"),
        (recipe("", "").replace("scale = 0.02", "scale = inf"), "embedding.scale"),
        (noise("1e300", "0.5"), "sigma_max"),
        (noise("80.0", "1e300"), "sigma_data"),
        (sct("p_mean = -1.0\np_std = inf\ntangent_c = 0.1"), "p_std = inf"),
        (sct("p_mean = -1.0\np_std = 1.4\ntangent_c = inf"), "tangent_c = inf"),
        (sct("p_mean = 1e300\np_std = 1.4\ntangent_c = 0.1"), "p_mean = 1000000"),
    ];
    for (text, field) in cases {
        fails_with(&train(&d, &text, &[]), &[field]);
    }
}

#[test]
fn a_checkpoint_whose_step_is_not_its_folders_is_passed_over() {
    let (d, run) = run_killed_after_checkpoint_8("step-edit");
    let state = run.join("checkpoints/step-0000008/state.json");
    let text = std::fs::read_to_string(&state).unwrap();
    let forged = text.replacen("\"step\":8", "\"step\":1000000", 1);
    assert_ne!(forged, text, "state.json holds \"step\":8");
    std::fs::write(&state, forged).unwrap();
    let out = train(&d, &recipe("", ""), &["--resume"]);
    ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("step-0000008") && err.contains("gives step 1000000"), "{err}");
    assert!(run.join("model/model.safetensors").is_file());
    assert_eq!(steps_logged(&run), (1..=12).collect::<Vec<_>>());
}

/// A card whose method trains another parameterisation than the card's, or whose dataset is unknown
/// or not the network's, is refused where it is read (sampling and export alike).
#[test]
fn a_card_that_contradicts_itself_is_refused() {
    let cases = [
        ("\"method\": \"edm\"", "\"method\": \"ict\"", &["method", "parameterisation"][..]),
        // A 2-D point network models a 2D dataset (core's card rule, the page's too).
        ("\"dataset\": \"moons\"", "\"dataset\": \"mnist\"", &["field `dataset`", "2D datasets"][..]),
        ("\"dataset\": \"moons\"", "\"dataset\": \"nonesuch\"", &["nonesuch", "2D datasets"][..]),
    ];
    for (i, (from, to, needles)) in cases.into_iter().enumerate() {
        let d = tmp(&format!("card-{i}"));
        for f in ["config.json", "model.safetensors"] {
            std::fs::copy(bundled("moons-edm").join(f), d.join(f)).unwrap();
        }
        let card = std::fs::read_to_string(d.join("config.json")).unwrap();
        let forged = card.replacen(from, to, 1);
        assert_ne!(forged, card, "{from}");
        std::fs::write(d.join("config.json"), forged).unwrap();
        let out = tmp(&format!("card-{i}-out"));
        let (d, s) = (d.to_str().unwrap(), out.join("s.npy"));
        fails_with(
            &cm(&["sample", "--model", d, "--teacher-nfe", "4", "--out", s.to_str().unwrap()]),
            needles,
        );
        fails_with(&cm(&["export", "--from", d, "--out", out.join("m").to_str().unwrap()]), needles);
    }
}

/// `--force` replaces a run only once the new one has done its first step: a missing init_from (read
/// after the backend starts, before the data), or a first step whose loss is not finite, leaves the
/// old run's checkpoints, metrics and recipe where they were.
#[test]
fn a_failed_force_keeps_the_old_run() {
    let (d, run) = run_killed_after_checkpoint_8("force-fails");
    let missing = recipe("init_from = \"/nonexistent/model\"", "");
    fails_with(&train(&d, &missing, &["--force"]), &["/nonexistent/model"]);
    let overflowing = trained_model("force-fails-model");
    fill_weights(&overflowing, 3.0e38);
    let files = ["metrics.jsonl", "config.toml"].map(|f| std::fs::read(run.join(f)).unwrap());
    let first_step_fails = recipe(&format!("init_from = {:?}", overflowing.to_str().unwrap()), "");
    fails_with(
        &train(&d, &first_step_fails, &["--force"]),
        &["loss became", "at step 1", "nothing was changed"],
    );
    assert_eq!(files, ["metrics.jsonl", "config.toml"].map(|f| std::fs::read(run.join(f)).unwrap()));
    // A run ends by writing `model/`: where that would be refused, the run is refused before training.
    std::fs::write(run.join("model"), "mine").unwrap();
    fails_with(&train(&d, &recipe("", ""), &["--force"]), &["model", "is a file"]);
    assert_eq!(std::fs::read_to_string(run.join("model")).unwrap(), "mine");
    std::fs::remove_file(run.join("model")).unwrap();
    assert!(run.join("checkpoints/step-0000008/state.json").is_file());
    ok(&train(&d, &recipe("", ""), &["--resume"]));
}

/// A second `cm train` into a folder a run is training in is refused; a killed run's lock goes with it.
#[test]
fn a_run_folder_in_use_is_refused() {
    let d = tmp("lock");
    let long = recipe("", "")
        .replace("steps = 12", "steps = 1000000")
        .replace("checkpoint_every = 4", "checkpoint_every = 0");
    let cfg = d.join("long.toml");
    std::fs::write(&cfg, &long).unwrap();
    let run = d.join("run");
    let mut first = std::process::Command::new(env!("CARGO_BIN_EXE_cm"))
        .args(["train", "--config", cfg.to_str().unwrap(), "--out", run.to_str().unwrap()])
        .env("CM_LOG", "off")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The first run holds the lock once its recipe is written.
    let mut waited = 0;
    while !run.join("config.toml").exists() && waited < 600 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        waited += 1;
    }
    assert!(run.join("config.toml").exists(), "the first run did not start");
    let second = train(&d, &long, &["--force", "--stop-at", "1"]);
    first.kill().unwrap();
    first.wait().unwrap();
    fails_with(&second, &["in use by another `cm train`"]);
    ok(&train(&d, &recipe("", ""), &["--force", "--stop-at", "2"]));
}

// 12. Found by a walk through the README (2026-11-29).

/// A GPU backend this cm was built without is one error line naming it and the feature to build
/// with, and leaves no run folder behind.
#[test]
fn a_backend_not_built_in_is_one_line_and_leaves_no_folder() {
    let d = tmp("no-backend");
    for (backend, built) in [
        ("cuda", cfg!(feature = "cuda")),
        ("wgpu", cfg!(feature = "wgpu")),
        ("vulkan", cfg!(feature = "wgpu")),
    ] {
        if built {
            continue;
        }
        let out = train(&d, &recipe("", ""), &["--backend", backend]);
        fails_with(&out, &[&format!("backend `{backend}` is not compiled into this cm"), "--features"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked") && stderr.trim().lines().count() == 1, "{stderr}");
        assert!(!d.join("run").exists(), "a run that could not start left {}", d.join("run").display());
    }
}

/// `cm export --from` a run that has no model yet says so and how to finish it.
#[test]
fn exporting_a_run_without_a_model_says_how_to_finish_it() {
    let (d, run) = run_killed_after_checkpoint_8("export-unfinished");
    let out = d.join("exported");
    fails_with(
        &cm(&["export", "--from", run.to_str().unwrap(), "--out", out.to_str().unwrap()]),
        &["without a model yet", "--resume"],
    );
    assert!(!out.exists());
}
