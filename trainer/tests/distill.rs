//! CD, TrigFlow diffusion, sCT and sCD through the `cm` binary on moons: training from a teacher,
//! exports that sample, bit-exact `--resume` of an sCM run (with its adaptive weight `w_phi`), and clear
//! errors for every misfit between a recipe and its teacher.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

mod common;
use common::{cm, fails_with, fresh_dir, moons_recipe};

fn tmp(name: &str) -> PathBuf {
    fresh_dir("distill", name)
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "cm failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A tiny moons recipe for `method` with `extra` TOML appended (sections last).
fn recipe(method: &str, steps: u64, embedding: &str, extra: &str) -> String {
    let top = format!(
        "method = \"{method}\"\nsteps = {steps}\nbatch = 32\nseed = 1\nema_decay = 0.9\nlog_every = 1"
    );
    moons_recipe(&top, embedding, extra)
}

const FOURIER: &str = r#"{ kind = "fourier", scale = 1.0, seed = 0 }"#;
const POSITIONAL: &str = r#"{ kind = "positional", scale = 10.0 }"#;

/// Trains `text` as `<dir>/<name>.toml` into `<dir>/<name>`.
fn train(dir: &Path, name: &str, text: &str, more: &[&str]) -> Output {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    let out = dir.join(name);
    let mut args = vec!["train", "--config", path.to_str().unwrap(), "--out", out.to_str().unwrap()];
    args.extend_from_slice(more);
    cm(&args)
}

/// A tiny EDM teacher on moons, trained once for all tests.
fn teacher() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = tmp("teacher");
        ok(&train(&d, "edm", &recipe("edm", 40, FOURIER, ""), &[]));
        d.join("edm/model")
    })
}

fn teacher_section(path: &Path, extra: &str) -> String {
    format!("[teacher]\npath = {:?}\n{extra}", path.to_str().unwrap())
}

/// The value of `key` in every line of a run folder's `metrics.jsonl`.
fn logged(run: &Path, key: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()[key].clone())
        .collect()
}

fn card(model: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(model.join("config.json")).unwrap()).unwrap()
}

#[test]
fn cd_starts_from_the_teacher_and_exports_a_consistency_model() {
    let d = tmp("cd");
    let extra = teacher_section(teacher(), "solver = \"heun\"\ninit_from_teacher = true\n");
    ok(&train(&d, "cd", &recipe("cd", 6, FOURIER, &extra), &[]));
    let c = card(&d.join("cd/model"));
    assert_eq!(c["method"], "cd");
    assert_eq!(c["model"]["parameterisation"], "consistency");
    assert!(c["metrics"]["sliced_w2_1step"].as_f64().unwrap() > 0.0);
    // The resolved recipe records CD's defaults: a fixed 18-level grid.
    let saved = std::fs::read_to_string(d.join("cd/config.toml")).unwrap();
    assert!(saved.contains("kind = \"fixed\"") && saved.contains("n = 18"), "{saved}");
    let metrics = std::fs::read_to_string(d.join("cd/metrics.jsonl")).unwrap();
    assert!(metrics.lines().all(|l| l.contains("\"n\":18")), "{metrics}");
    let npy = d.join("s.npy");
    ok(&cm(&[
        "sample",
        "--model",
        d.join("cd/model").to_str().unwrap(),
        "--steps",
        "2",
        "--out",
        npy.to_str().unwrap(),
    ]));
}

/// The f32 tensors of a safetensors file, by name (header: u64 length, JSON, then the data).
fn tensors(file: &Path) -> std::collections::BTreeMap<String, Vec<f32>> {
    let bytes = std::fs::read(file).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    (header.into_iter().filter(|(k, _)| k != "__metadata__"))
        .map(|(k, v)| {
            assert_eq!(v["dtype"], "F32", "{k}");
            let [a, b] = [0, 1].map(|i| v["data_offsets"][i].as_u64().unwrap() as usize);
            (k, data[a..b].chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect())
        })
        .collect()
}

/// The largest absolute difference between two models' weights of the same names.
fn weight_gap(a: &Path, b: &Path) -> f32 {
    let (a, b) = (tensors(&a.join("model.safetensors")), tensors(&b.join("model.safetensors")));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    (a.values().zip(b.values()))
        .flat_map(|(x, y)| x.iter().zip(y).map(|(x, y)| (x - y).abs()))
        .fold(0.0, f32::max)
}

/// `init_from` starts iCT from a diffusion model's weights (ECT): after one step with a negligible
/// learning rate the exported network is the teacher's, while the same run without it is not.
#[test]
fn init_from_starts_consistency_training_from_a_diffusion_model() {
    let d = tmp("init-from");
    let base = recipe("ict", 1, FOURIER, "").replace("lr = 0.001", "lr = 1e-9");
    let with = base.replace(
        "method = \"ict\"\n",
        &format!("method = \"ict\"\ninit_from = {:?}\n", teacher().to_str().unwrap()),
    );
    ok(&train(&d, "with", &with, &[]));
    ok(&train(&d, "without", &base, &[]));
    let started = weight_gap(&d.join("with/model"), teacher());
    assert!(started < 1e-6, "init_from: weights differ from the teacher's by {started}");
    let scratch = weight_gap(&d.join("without/model"), teacher());
    assert!(scratch > 1e-3, "without init_from the weights are the teacher's ({scratch})");
    assert_eq!(card(&d.join("with/model"))["method"], "ict");
    let saved = std::fs::read_to_string(d.join("with/config.toml")).unwrap();
    assert!(saved.contains("init_from"), "{saved}");
    // Misfits name the field: another width, another dataset, and both ways of initialising at once.
    fails_with(
        &train(&d, "wide", &with.replace("hidden = 16", "hidden = 32"), &[]),
        &["init_from", "network"],
    );
    // Same sizes, other time-embedding frequencies: the weights would load, the function would not be the
    // model's.
    let scaled = with.replace(FOURIER, r#"{ kind = "fourier", scale = 2.0, seed = 0 }"#);
    fails_with(&train(&d, "scaled", &scaled, &[]), &["init_from", "network"]);
    // Dropout is a training setting: a start with dropout on is fine.
    ok(&train(&d, "dropout", &with.replace("embedding = ", "dropout = 0.1\nembedding = "), &[]));
    let other = with.replace("\"moons\"", "\"swiss-roll\"");
    fails_with(&train(&d, "other", &other, &[]), &["init_from", "moons", "swiss-roll"]);
    let both = recipe("cd", 1, FOURIER, &teacher_section(teacher(), "init_from_teacher = true\n")).replace(
        "method = \"cd\"\n",
        &format!("method = \"cd\"\ninit_from = {:?}\n", teacher().to_str().unwrap()),
    );
    fails_with(&train(&d, "both", &both, &[]), &["init_from", "init_from_teacher"]);
}

/// ECT from a diffusion model's weights: the card says `ect`, the resolved recipe records ECT's mapping,
/// the log walks through its stages, and a recipe mixing ECT with another method's curriculum is refused
/// with the field named.
#[test]
fn ect_tunes_a_diffusion_model_stage_by_stage() {
    let d = tmp("ect");
    let text = recipe("ect", 16, FOURIER, "").replace(
        "method = \"ect\"\n",
        &format!("method = \"ect\"\ninit_from = {:?}\n", teacher().to_str().unwrap()),
    );
    ok(&train(&d, "ect", &text, &[]));
    let c = card(&d.join("ect/model"));
    assert_eq!(c["method"], "ect");
    assert_eq!(c["model"]["parameterisation"], "consistency");
    assert!(c["metrics"]["sliced_w2_1step"].as_f64().unwrap() > 0.0);
    let saved = std::fs::read_to_string(d.join("ect/config.toml")).unwrap();
    assert!(saved.contains("kind = \"ect\"") && saved.contains("stages = 8"), "{saved}");
    let stages: Vec<u64> = logged(&d.join("ect"), "stage").iter().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(stages, [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7]);

    let ect_curriculum = "[ct]\ncurriculum = { kind = \"ect\", q = 2.0, k = 8.0, b = 1.0, stages = 4 }\n\
                          distance = \"pseudo-huber\"\nweighting = \"ict\"\n\
                          index_sampling = { kind = \"lognormal\", p_mean = -1.1, p_std = 2.0 }\n";
    ok(&train(&d, "own", &recipe("ect", 2, FOURIER, ect_curriculum), &[]));
    fails_with(
        &train(&d, "ict", &recipe("ict", 2, FOURIER, ect_curriculum), &[]),
        &["ct.curriculum", "ect", "ict"],
    );
    let grid = ect_curriculum.replace(
        "kind = \"ect\", q = 2.0, k = 8.0, b = 1.0, stages = 4",
        "kind = \"ict\", s0 = 10, s1 = 1280",
    );
    fails_with(&train(&d, "grid", &recipe("ect", 2, FOURIER, &grid), &[]), &["ct.curriculum", "ect"]);
    for (bad, field) in [("q = 2.0", "q = 1.0"), ("stages = 4", "stages = 0"), ("b = 1.0", "b = -1.0")] {
        let text = recipe("ect", 2, FOURIER, &ect_curriculum.replace(bad, field));
        let name = field.split(' ').next().unwrap();
        fails_with(&train(&d, name, &text, &[]), &[&format!("ct.curriculum.{name}")]);
    }
}

/// On `--resume` the checkpoint holds the weights: the `init_from` model is not read again (it may be
/// gone), and the resumed run ends where the uninterrupted one does.
#[test]
fn a_resumed_init_from_run_needs_only_its_checkpoint() {
    let d = tmp("init-from-resume");
    let start = d.join("start");
    std::fs::create_dir_all(&start).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(teacher().join(f), start.join(f)).unwrap();
    }
    let text = recipe("ict", 4, FOURIER, "")
        .replace(
            "method = \"ict\"\n",
            &format!("method = \"ict\"\ninit_from = {:?}\n", start.to_str().unwrap()),
        )
        .replace("log_every = 1\n", "log_every = 1\ncheckpoint_every = 2\n");
    ok(&train(&d, "full", &text, &[]));
    let (full, cut) = (d.join("full"), d.join("cut"));
    std::fs::create_dir_all(cut.join("checkpoints/step-0000002")).unwrap();
    std::fs::copy(full.join("config.toml"), cut.join("config.toml")).unwrap();
    for f in std::fs::read_dir(full.join("checkpoints/step-0000002")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, cut.join("checkpoints/step-0000002").join(f.file_name().unwrap())).unwrap();
    }
    std::fs::remove_dir_all(&start).unwrap();
    let recipe_path = d.join("full.toml");
    ok(&cm(&[
        "train",
        "--config",
        recipe_path.to_str().unwrap(),
        "--out",
        cut.to_str().unwrap(),
        "--resume",
    ]));
    assert_eq!(weight_gap(&full.join("model"), &cut.join("model")), 0.0);
}

#[test]
fn trigflow_teacher_samples_with_an_ode_solver_and_serves_scd() {
    let d = tmp("trigflow");
    ok(&train(&d, "tf", &recipe("trigflow", 6, POSITIONAL, ""), &[]));
    let model = d.join("tf/model");
    assert_eq!(card(&model)["model"]["parameterisation"], "trig-flow");
    let npy = d.join("s.npy");
    let m = model.to_str().unwrap();
    ok(&cm(&["sample", "--model", m, "--teacher-nfe", "9", "--out", npy.to_str().unwrap()]));
    fails_with(
        &cm(&["sample", "--model", m, "--out", npy.to_str().unwrap()]),
        &["diffusion model", "--teacher-nfe"],
    );
    // A TrigFlow teacher distils like an EDM one.
    ok(&train(&d, "scd", &recipe("scd", 4, POSITIONAL, &teacher_section(&model, "")), &[]));
    assert_eq!(card(&d.join("scd/model"))["method"], "scd");
}

#[test]
fn sct_resumes_bit_exactly_with_its_adaptive_weight() {
    let d = tmp("sct");
    let text = recipe("sct", 6, POSITIONAL, "[scm]\ntangent_warmup = 4\n")
        .replace("log_every = 1\n", "log_every = 1\ncheckpoint_every = 3\n");
    ok(&train(&d, "full", &text, &[]));
    let full = d.join("full");
    let step6 = full.join("checkpoints/step-0000006");
    assert!(step6.join("weight.safetensors").is_file(), "w_phi is checkpointed");
    let metrics = std::fs::read_to_string(full.join("metrics.jsonl")).unwrap();
    // Tangent warm-up r = min(1, k / 4) is logged.
    assert!(metrics.lines().next().unwrap().contains("\"r\":0.0"), "{metrics}");
    assert!(metrics.lines().last().unwrap().contains("\"r\":1.0"), "{metrics}");

    let cut = d.join("cut");
    std::fs::create_dir_all(cut.join("checkpoints/step-0000003")).unwrap();
    std::fs::copy(full.join("config.toml"), cut.join("config.toml")).unwrap();
    for f in std::fs::read_dir(full.join("checkpoints/step-0000003")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, cut.join("checkpoints/step-0000003").join(f.file_name().unwrap())).unwrap();
    }
    let first: String = metrics.lines().take(3).map(|l| format!("{l}\n")).collect();
    std::fs::write(cut.join("metrics.jsonl"), first).unwrap();
    ok(&cm(&[
        "train",
        "--config",
        d.join("full.toml").to_str().unwrap(),
        "--out",
        cut.to_str().unwrap(),
        "--resume",
    ]));
    let loss = |s: &str| {
        s.lines().map(|l| l.split("\"loss\":").nth(1).unwrap()[..12].to_string()).collect::<Vec<_>>()
    };
    assert_eq!(loss(&std::fs::read_to_string(cut.join("metrics.jsonl")).unwrap()), loss(&metrics));
    let data = |p: PathBuf| {
        let b = std::fs::read(p).unwrap();
        let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
        b[8 + n..].to_vec()
    };
    for f in ["model.safetensors", "weight.safetensors", "ema.safetensors"] {
        assert_eq!(
            data(step6.join(f)),
            data(cut.join("checkpoints/step-0000006").join(f)),
            "{f} differs after resume"
        );
    }
}

#[test]
fn sct_with_the_finite_difference_fallback_trains() {
    let d = tmp("sct-fd");
    ok(&train(
        &d,
        "fd",
        &recipe("sct", 3, POSITIONAL, "[scm]\njvp = { kind = \"finite-difference\", h = 0.001 }\n"),
        &[],
    ));
    assert_eq!(card(&d.join("fd/model"))["model"]["parameterisation"], "trig-flow");
}

#[test]
fn teacher_misfits_are_named() {
    let d = tmp("misfit");
    // No teacher for a distillation method.
    fails_with(&train(&d, "a", &recipe("cd", 2, FOURIER, ""), &[]), &["teacher"]);
    // A teacher for a method without one.
    fails_with(
        &train(&d, "b", &recipe("ict", 2, FOURIER, &teacher_section(teacher(), "")), &[]),
        &["teacher", "ict"],
    );
    // The teacher folder does not exist.
    fails_with(
        &train(&d, "c", &recipe("cd", 2, FOURIER, &teacher_section(&d.join("nope"), "")), &[]),
        &["teacher.path", "nope"],
    );
    // A consistency model is no teacher.
    ok(&train(&d, "ict", &recipe("ict", 2, FOURIER, ""), &[]));
    fails_with(
        &train(&d, "e", &recipe("cd", 2, FOURIER, &teacher_section(&d.join("ict/model"), "")), &[]),
        &["teacher.path", "diffusion"],
    );
    // A teacher of another dataset.
    let other =
        recipe("cd", 2, FOURIER, &teacher_section(teacher(), "")).replace("\"moons\"", "\"swiss-roll\"");
    fails_with(&train(&d, "f", &other, &[]), &["teacher.path", "moons", "swiss-roll"]);
    // Starting from a teacher of another width.
    let wide = recipe("cd", 2, FOURIER, &teacher_section(teacher(), "init_from_teacher = true\n"))
        .replace("hidden = 16", "hidden = 32");
    fails_with(&train(&d, "g", &wide, &[]), &["init_from_teacher"]);
    // sCM settings on a discrete method, and a bad finite-difference step.
    fails_with(&train(&d, "h", &recipe("ict", 2, FOURIER, "[scm]\np_mean = -1.0\n"), &[]), &["scm", "ict"]);
    fails_with(
        &train(
            &d,
            "i",
            &recipe("sct", 2, POSITIONAL, "[scm]\njvp = { kind = \"finite-difference\", h = 2.0 }\n"),
            &[],
        ),
        &["scm.jvp.h", "2"],
    );
}

/// `--devices 2` splits each batch in two shards (on the CPU both on the flex device) whose noise is
/// their rows of the whole batch, and burn's MultiGradientsParams sums the shard gradients: the run
/// follows the one-device run up to float summation order.
#[test]
fn a_batch_split_over_two_devices_trains_like_one() {
    let d = tmp("devices");
    for (method, embedding) in [("ict", FOURIER), ("sct", POSITIONAL)] {
        let text = recipe(method, 4, embedding, "");
        ok(&train(&d, &format!("{method}-1"), &text, &[]));
        ok(&train(&d, &format!("{method}-2"), &text, &["--devices", "2"]));
        let losses = |run: &str| -> Vec<f64> {
            logged(&d.join(run), "loss").iter().map(|v| v.as_f64().unwrap()).collect()
        };
        let (one, two) = (losses(&format!("{method}-1")), losses(&format!("{method}-2")));
        assert_eq!(one.len(), 4);
        for (a, b) in one.iter().zip(&two) {
            assert!((a - b).abs() <= 1e-4 * a.abs().max(1e-3), "{method}: {one:?} vs {two:?}");
        }
        assert_eq!(card(&d.join(format!("{method}-2/model")))["provenance"]["devices"], 2);
    }
    fails_with(
        &cm(&[
            "train",
            "--config",
            d.join("ict-1.toml").to_str().unwrap(),
            "--out",
            d.join("x").to_str().unwrap(),
            "--devices",
            "0",
        ]),
        &["--devices"],
    );
}
