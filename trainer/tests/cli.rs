//! The `cm` binary on good and bad input: every bad input gives a one-line error naming the
//! problem, a non-zero exit, no panic, and leaves existing files intact.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

mod common;
use common::{cm, fails_with, fresh_dir, moons_recipe};

fn tmp(name: &str) -> PathBuf {
    fresh_dir("cli", name)
}

fn recipe() -> String {
    moons_recipe(
        "method = \"ict\"\nsteps = 30\nbatch = 64\nema_decay = 0.9",
        r#"{ kind = "fourier", scale = 0.02, seed = 0 }"#,
        "",
    )
}

/// `cm train --config <dir>/<recipe> --out <dir>/run`.
fn train_in(dir: &Path, recipe: &str) -> Output {
    cm(&["train", "--config", dir.join(recipe).to_str().unwrap(), "--out", dir.join("run").to_str().unwrap()])
}

/// A tiny trained model folder shared by the tests.
fn model_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = tmp("model");
        std::fs::write(d.join("recipe.toml"), recipe()).unwrap();
        let out = train_in(&d, "recipe.toml");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        d.join("run/model")
    })
}

fn copy_model(name: &str) -> PathBuf {
    let d = tmp(name);
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(model_dir().join(f), d.join(f)).unwrap();
    }
    d
}

#[test]
fn sample_writes_every_format() {
    let d = tmp("formats");
    for ext in ["npy", "csv", "png"] {
        let out_path = d.join(format!("s.{ext}"));
        let out = cm(&[
            "sample",
            "--model",
            model_dir().to_str().unwrap(),
            "--steps",
            "2",
            "--n",
            "100",
            "--out",
            out_path.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(std::fs::metadata(&out_path).unwrap().len() > 100);
    }
    let npy = std::fs::read(d.join("s.npy")).unwrap();
    assert_eq!(&npy[..6], b"\x93NUMPY");
    assert_eq!(npy.len(), 128 + 100 * 2 * 4);
    let data = d.join("d.csv");
    assert!(
        cm(&["data", "--name", "swiss-roll", "--n", "10", "--out", data.to_str().unwrap()]).status.success()
    );
    assert_eq!(std::fs::read_to_string(&data).unwrap().lines().count(), 11);
}

#[test]
fn missing_weights_file_is_named() {
    let d = copy_model("missing");
    std::fs::remove_file(d.join("model.safetensors")).unwrap();
    fails_with(
        &cm(&["sample", "--model", d.to_str().unwrap(), "--out", "/tmp/x.npy"]),
        &["model.safetensors"],
    );
}

#[test]
fn truncated_weights_file_is_named() {
    let d = copy_model("truncated");
    let bytes = std::fs::read(d.join("model.safetensors")).unwrap();
    std::fs::write(d.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    fails_with(
        &cm(&["sample", "--model", d.to_str().unwrap(), "--out", "/tmp/x.npy"]),
        &["model.safetensors"],
    );
}

#[test]
fn wrong_shaped_weights_are_refused() {
    let d = copy_model("shape");
    let card = std::fs::read_to_string(d.join("config.json")).unwrap();
    std::fs::write(d.join("config.json"), card.replace("\"hidden\": 16", "\"hidden\": 24")).unwrap();
    fails_with(
        &cm(&["sample", "--model", d.to_str().unwrap(), "--out", "/tmp/x.npy"]),
        &["model.safetensors", "match"],
    );
}

#[test]
fn unknown_config_field_is_named() {
    let d = tmp("unknown");
    std::fs::write(
        d.join("r.toml"),
        recipe().replace("ema_decay = 0.9", "ema_decay = 0.9\nlearning_rat = 3"),
    )
    .unwrap();
    fails_with(&train_in(&d, "r.toml"), &["learning_rat"]);
    assert!(!d.join("run").exists(), "a rejected config must not create a run folder");
}

#[test]
fn training_never_overwrites_a_finished_run_unasked() {
    let run = model_dir().parent().unwrap();
    let before = std::fs::read(run.join("model/model.safetensors")).unwrap();
    let recipe = run.parent().unwrap().join("recipe.toml");
    fails_with(
        &cm(&["train", "--config", recipe.to_str().unwrap(), "--out", run.to_str().unwrap()]),
        &["--force"],
    );
    assert_eq!(std::fs::read(run.join("model/model.safetensors")).unwrap(), before);
}

#[test]
fn negative_step_counts_are_refused() {
    let d = tmp("negative");
    std::fs::write(d.join("r.toml"), recipe().replace("steps = 30", "steps = -3")).unwrap();
    fails_with(&train_in(&d, "r.toml"), &["steps"]);
    fails_with(
        &cm(&["sample", "--model", model_dir().to_str().unwrap(), "--steps", "-2", "--out", "/tmp/x.npy"]),
        &["steps", "-2"],
    );
    fails_with(
        &cm(&["train", "--config", d.join("r.toml").to_str().unwrap(), "--steps", "-1", "--out", "/tmp/r"]),
        &["steps"],
    );
}

#[test]
fn bad_sampling_arguments_are_explained() {
    let m = model_dir().to_str().unwrap();
    fails_with(&cm(&["sample", "--model", m, "--taus", "0.5,2", "--out", "/tmp/x.npy"]), &["decreasing"]);
    fails_with(&cm(&["sample", "--model", m, "--taus", "500", "--out", "/tmp/x.npy"]), &["sigma_max"]);
    // The one rule (core::sample::check_taus), as in the page: both ends excluded.
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model_dir().join("config.json")).unwrap()).unwrap();
    let sigma_max = card["model"]["sigma_max"].as_f64().unwrap();
    fails_with(
        &cm(&["sample", "--model", m, "--taus", &sigma_max.to_string(), "--out", "/tmp/x.npy"]),
        &["strictly between"],
    );
    fails_with(
        &cm(&["sample", "--model", m, "--teacher-nfe", "35", "--out", "/tmp/x.npy"]),
        &["consistency model"],
    );
    fails_with(&cm(&["sample", "--model", m, "--out", "/tmp/x.txt"]), &["x.txt", ".npy"]);
    fails_with(&cm(&["data", "--name", "spirals", "--out", "/tmp/x.npy"]), &["spirals"]);
    fails_with(
        &cm(&["data", "--name", "moons", "--n", "1000000000000", "--out", "/tmp/x.npy"]),
        &["--n", "at most"],
    );
    fails_with(&cm(&["eval", "--model", m, "--n", "1000000"]), &["--n", "quadratic"]);
    fails_with(
        &cm(&["sample", "--model", "/nonexistent/model", "--out", "/tmp/x.npy"]),
        &["/nonexistent/model"],
    );
}

/// An export into a `models` folder is named after its folder (card and page list) and registered once;
/// exporting an unchanged model again writes the same weights file, byte for byte.
#[test]
fn export_names_the_model_after_its_folder_and_registers_it() {
    let models = tmp("export-index").join("models");
    std::fs::create_dir_all(&models).unwrap();
    // The page's other fields (its notes) survive an export.
    std::fs::write(models.join("index.json"), r#"{"models": ["other"], "notes": {"other": "kept"}}"#)
        .unwrap();
    let src = copy_model("export-src");
    let mut weights = Vec::new();
    for _ in 0..3 {
        let out = cm(&[
            "export",
            "--from",
            src.to_str().unwrap(),
            "--out",
            models.join("renamed").to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        weights.push(std::fs::read(models.join("renamed/model.safetensors")).unwrap());
    }
    assert!(
        weights.iter().all(|w| *w == weights[0]),
        "three exports of one model wrote different weights files"
    );
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(models.join("renamed/config.json")).unwrap()).unwrap();
    assert_eq!(card["name"], "renamed");
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(models.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["models"], serde_json::json!(["other", "renamed"]));
    assert_eq!(index["notes"], serde_json::json!({"other": "kept"}));
}

#[test]
fn a_failed_export_keeps_the_existing_model() {
    let good = copy_model("keep");
    let before = std::fs::read(good.join("model.safetensors")).unwrap();
    let bad = copy_model("bad-src");
    std::fs::write(bad.join("model.safetensors"), b"not safetensors at all").unwrap();
    fails_with(
        &cm(&["export", "--from", bad.to_str().unwrap(), "--out", good.to_str().unwrap()]),
        &["model.safetensors"],
    );
    assert_eq!(std::fs::read(good.join("model.safetensors")).unwrap(), before);
}

#[test]
fn eval_reports_steps_noise_floor_and_custom_taus() {
    let out = cm(&["eval", "--model", model_dir().to_str().unwrap(), "--n", "256", "--taus", "2,0.5"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for k in ["1", "2", "4", "custom"] {
        assert!(report["consistency"][k]["sliced_w2"].as_f64().unwrap().is_finite(), "{k}");
    }
    assert_eq!(report["consistency"]["custom"]["nfe"], 3);
    assert!(report["noise_floor"]["mmd2"].is_number());
}

/// `cm tune` searches the two-step tau, reports every probe, and with `--write-card` makes the best
/// list the model's default (used by `cm eval` and `cm sample`), dropping the two-step metrics it
/// invalidates; a second tune starts from that list.
#[test]
fn tune_finds_a_two_step_tau_and_the_card_makes_it_the_default() {
    let d = copy_model("tune");
    let m = d.to_str().unwrap();
    // A card with a recorded two-step metric, which the tuned list makes stale.
    let eval = cm(&["eval", "--model", m, "--n", "256", "--write-card"]);
    assert!(eval.status.success(), "{}", String::from_utf8_lossy(&eval.stderr));
    let out = cm(&["tune", "--model", m, "--n", "256", "--probes", "7", "--grid", "5", "--write-card"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["metric"], "sliced_w2");
    assert_eq!(report["probes"].as_array().unwrap().len(), 7);
    let best = report["best"]["value"].as_f64().unwrap();
    let probes: Vec<f64> =
        report["probes"].as_array().unwrap().iter().map(|p| p["value"].as_f64().unwrap()).collect();
    assert_eq!(best, probes.iter().cloned().fold(f64::INFINITY, f64::min));
    // The built-in default (iCT's 0.821) was the list before tuning.
    assert_eq!(report["current"]["taus"], serde_json::json!([0.821]));
    // The current list and the search's best, scored again on the three seeds after the search's.
    let confirm = &report["confirm"];
    assert_eq!(confirm["seeds"], serde_json::json!([1001, 1002, 1003]));
    let lists = confirm["lists"].as_array().unwrap();
    assert_eq!(lists[0]["from"], "current");
    assert_eq!(lists[0]["taus"], report["current"]["taus"]);
    let means: Vec<f64> = lists
        .iter()
        .map(|l| {
            let values: Vec<f64> =
                l["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            assert_eq!(values.len(), 3);
            let mean = l["mean"].as_f64().unwrap();
            assert!((mean - values.iter().sum::<f64>() / 3.0).abs() < 1e-12, "{l}");
            mean
        })
        .collect();
    if report["best"]["taus"] != report["current"]["taus"] {
        assert_eq!(lists.len(), 2);
        assert_eq!(lists[1]["from"], "centre");
        assert_eq!(lists[1]["taus"], report["best"]["taus"]);
    }
    let chosen = confirm["chosen"].as_u64().unwrap() as usize;
    assert!(means.iter().all(|&m| m >= means[chosen]), "chosen {chosen} of {means:?}");
    assert!(chosen == 0 || means[chosen] < means[0], "a tie keeps the current list");
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("config.json")).unwrap()).unwrap();
    let improves = chosen != 0;
    if improves {
        assert_eq!(card["taus"]["2"], report["best"]["taus"]);
        assert_eq!(card["provenance"]["tune"]["2"]["value"], lists[chosen]["mean"]);
        assert_eq!(card["provenance"]["tune"]["2"]["confirm_seeds"], confirm["seeds"]);
        assert!(card["metrics"].get("sliced_w2_2step").is_none(), "stale two-step metric kept");
        assert!(card["metrics"]["sliced_w2_1step"].is_number(), "one-step metric lost");
        assert_eq!(card["provenance"]["tune"]["2"]["metric"], "sliced_w2");
        // `cm eval` now samples two steps through the tuned list.
        let again = cm(&["eval", "--model", m, "--n", "256"]);
        let again: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
        assert_eq!(again["consistency"]["2"]["taus"], report["best"]["taus"]);
        // A second tune starts from the card's list.
        let second = cm(&["tune", "--model", m, "--n", "256", "--probes", "3", "--grid", "3"]);
        let second: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
        assert_eq!(second["current"]["taus"], report["best"]["taus"]);
    } else {
        assert!(card.get("taus").is_none(), "a list no better than the default was stored");
    }
}

/// `cm tune --search greedy` chooses the levels one at a time: every probe of a later stage keeps the
/// earlier stages' best levels and adds one below them, and the best list is the best of the last stage.
#[test]
fn a_greedy_tune_chooses_one_level_at_a_time() {
    let d = copy_model("tune-greedy");
    let m = d.to_str().unwrap();
    let out = cm(&[
        "tune", "--model", m, "--steps", "4", "--search", "greedy", "--n", "256", "--probes", "4", "--grid",
        "3",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["search"], "greedy");
    let probes = report["probes"].as_array().unwrap();
    assert_eq!(probes.len(), 12, "4 probes for each of 3 levels");
    let taus = |p: &serde_json::Value| -> Vec<f64> {
        p["taus"].as_array().unwrap().iter().map(|t| t.as_f64().unwrap()).collect()
    };
    let value = |p: &serde_json::Value| p["value"].as_f64().unwrap();
    let mut fixed: Vec<f64> = vec![];
    for stage in probes.chunks(4) {
        for p in stage {
            let t = taus(p);
            assert_eq!(t.len(), fixed.len() + 1, "{t:?}");
            assert_eq!(t[..fixed.len()], fixed[..], "a stage keeps the levels chosen before it");
            assert!(t.windows(2).all(|w| w[0] > w[1]), "not decreasing: {t:?}");
            assert!(t.iter().all(|&x| x > 0.002 && x < 80.0), "outside the noise range: {t:?}");
        }
        let best = stage.iter().min_by(|a, b| value(a).total_cmp(&value(b))).unwrap();
        fixed = taus(best);
    }
    assert_eq!(taus(&report["best"]), fixed);
    assert_eq!(report["current"]["taus"].as_array().unwrap().len(), 3);
    // `both` (the default): the centre search, then the greedy one; the best three-step list of either.
    let out = cm(&["tune", "--model", m, "--steps", "3", "--n", "256", "--probes", "3", "--grid", "3"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["search"], "both");
    let probes = report["probes"].as_array().unwrap();
    assert_eq!(probes.iter().map(|p| taus(p).len()).collect::<Vec<_>>(), [2, 2, 2, 1, 1, 1, 2, 2, 2]);
    let best = probes.iter().filter(|p| taus(p).len() == 2).min_by(|a, b| value(a).total_cmp(&value(b)));
    assert_eq!(report["best"]["value"], best.unwrap()["value"]);
    fails_with(&cm(&["tune", "--model", m, "--search", "random"]), &["--search", "random"]);
}

/// `cm tune --taus` searches nothing: it scores the given list against the current one on the
/// search's seed and the confirmation seeds, and `--confirm 0` leaves the decision to that one seed.
#[test]
fn tune_checks_a_given_list_against_the_current_one() {
    let m = model_dir().to_str().unwrap();
    let out = cm(&["tune", "--model", m, "--taus", "5,0.5", "--n", "256", "--confirm", "2", "--seed", "7"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["steps"], 3);
    assert_eq!(report["search"], "given");
    assert_eq!(report["probes"].as_array().unwrap().len(), 1);
    assert_eq!(report["best"]["taus"], serde_json::json!([5.0, 0.5]));
    assert_eq!(report["current"]["taus"].as_array().unwrap().len(), 2);
    assert_eq!(report["confirm"]["seeds"], serde_json::json!([8, 9]));
    let lists = report["confirm"]["lists"].as_array().unwrap();
    assert_eq!(lists.iter().map(|l| l["from"].as_str().unwrap()).collect::<Vec<_>>(), ["current", "given"]);
    // The list a model already samples is one list, kept.
    let out = cm(&["tune", "--model", m, "--taus", "0.821", "--n", "256"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["confirm"]["lists"].as_array().unwrap().len(), 1);
    assert_eq!(report["confirm"]["chosen"], 0);
    // Without confirmation the report has none.
    let out = cm(&["tune", "--model", m, "--taus", "2", "--n", "256", "--confirm", "0"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["confirm"].is_null());
    fails_with(&cm(&["tune", "--model", m, "--taus", "5,0.5", "--steps", "2"]), &["--steps 2", "3 steps"]);
    fails_with(&cm(&["tune", "--model", m, "--taus", "0.5,5"]), &["strictly decreasing", "[0.5, 5.0]"]);
    fails_with(&cm(&["tune", "--model", m, "--confirm", "17"]), &["--confirm", "0 to 16"]);
    fails_with(
        &cm(&["tune", "--model", m, "--seed", "18446744073709551614"]),
        &["--seed", "confirmation seeds"],
    );
}

#[test]
fn bad_tune_requests_and_bad_card_taus_are_explained() {
    let m = model_dir().to_str().unwrap();
    fails_with(&cm(&["tune", "--model", m, "--steps", "1"]), &["--steps", "at least 2"]);
    fails_with(&cm(&["tune", "--model", m, "--steps", "65"]), &["--steps", "at most 64"]);
    fails_with(&cm(&["tune", "--model", m, "--grid", "9", "--probes", "5"]), &["--probes", "--grid"]);
    fails_with(&cm(&["tune", "--model", m, "--n", "100000"]), &["--n", "at most"]);
    let d = copy_model("bad-card-taus");
    let card = std::fs::read_to_string(d.join("config.json")).unwrap();
    for (taus, needles) in [
        (r#"{"2": [0.5, 0.2]}"#, &["config.json", "taus", "2 steps need 1"][..]),
        (r#"{"two": [0.5]}"#, &["config.json", "taus", "\"two\""][..]),
        (r#"{"3": [0.2, 0.5]}"#, &["config.json", "taus", "decreasing"][..]),
        (r#"{"2": [500.0]}"#, &["config.json", "taus", "sigma_max"][..]),
    ] {
        let bad = card.replacen("\"metrics\"", &format!("\"taus\": {taus},\n  \"metrics\""), 1);
        std::fs::write(d.join("config.json"), bad).unwrap();
        fails_with(&cm(&["sample", "--model", d.to_str().unwrap(), "--out", "/tmp/x.npy"]), needles);
    }
}

/// `cm trajectory` on the bundled MNIST pair: a JSON report of every level (the jump closer to the
/// trajectory's origin than the teacher's denoised estimate at sigma_max) and a PNG strip of three rows
/// per trajectory and one column per level plus the origin; bad requests are explained.
#[test]
fn trajectory_measures_jumps_from_the_teachers_ode() {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../www/models");
    let (student, teacher) = (models.join("mnist-cd"), models.join("mnist-edm"));
    let (student, teacher) = (student.to_str().unwrap(), teacher.to_str().unwrap());
    let d = tmp("trajectory");
    let strip = d.join("strip.png");
    let out = cm(&[
        "trajectory",
        "--model",
        student,
        "--teacher",
        teacher,
        "--n",
        "6",
        "--levels",
        "4",
        "--show",
        "2",
        "--out",
        strip.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let levels = report["levels"].as_array().unwrap();
    assert_eq!((levels.len(), report["trajectories"].as_u64()), (4, Some(6)));
    assert_eq!(levels[0]["sigma"].as_f64(), Some(80.0));
    let (jump, denoised) =
        (levels[0]["jump_rms"].as_f64().unwrap(), levels[0]["denoised_rms"].as_f64().unwrap());
    assert!(jump < 0.7 * denoised, "jump {jump} vs denoised {denoised}");
    let png = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&strip).unwrap()));
    let info = png.read_info().unwrap().info().clone();
    // 16 px images at zoom 4 with a 1-pixel gutter: 5 columns (4 levels and the origin), 2 x 3 rows.
    assert_eq!((info.width, info.height), (5 * 65 + 1, 6 * 65 + 1));
    let moons = models.join("moons-edm");
    let moons = moons.to_str().unwrap();
    fails_with(
        &cm(&["trajectory", "--model", student, "--teacher", teacher, "--out", "/tmp/x.json"]),
        &[".png"],
    );
    fails_with(
        &cm(&["trajectory", "--model", teacher, "--teacher", teacher, "--n", "2"]),
        &["consistency model"],
    );
    fails_with(
        &cm(&["trajectory", "--model", student, "--teacher", teacher, "--levels", "65"]),
        &["at most 64"],
    );
    fails_with(&cm(&["trajectory", "--model", student, "--teacher", moons, "--n", "2"]), &["same data"]);
    // Same shape, other data: Fashion-MNIST's teacher is not MNIST CD's.
    let fashion = models.join("fashion-mnist-edm");
    fails_with(
        &cm(&["trajectory", "--model", student, "--teacher", fashion.to_str().unwrap(), "--n", "2"]),
        &["fashion-mnist", "same data"],
    );
    fails_with(
        &cm(&["trajectory", "--model", student, "--teacher", teacher, "--show", "65"]),
        &["at most 64"],
    );

    // A class-conditional pair follows each class's ODE (every class in turn unless --class says), and
    // the student jumps with that class: nearer the origin than with no class. Guidance changes the ODE.
    let (cs, ct) = (models.join("mnist-sct-cond"), models.join("mnist-trigflow-cond"));
    let (cs, ct) = (cs.to_str().unwrap(), ct.to_str().unwrap());
    let jumps = |extra: &[&str]| {
        let mut args = vec!["trajectory", "--model", cs, "--teacher", ct, "--n", "10", "--levels", "2"];
        args.extend_from_slice(extra);
        let out = cm(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let (each, none, guided) = (jumps(&[]), jumps(&["--class", "none"]), jumps(&["--guidance", "2"]));
    assert_eq!((each["classes"].as_str(), none["classes"].is_null()), (Some("each"), true));
    assert_eq!((each["guidance"].as_f64(), guided["guidance"].as_f64()), (Some(1.0), Some(2.0)));
    // The same noise: only the classes (then the guidance) differ, so every level's numbers move.
    assert_ne!(each["levels"], none["levels"], "the classes reach the ODE and the jumps");
    assert_ne!(each["levels"], guided["levels"], "the guidance reaches the ODE");
    assert_eq!(jumps(&["--class", "7"])["classes"].as_str(), Some("7"));
    let args = ["trajectory", "--model", student, "--teacher", ct, "--n", "2", "--class", "3"];
    fails_with(&cm(&args), &["same classes"]);
    let args = ["trajectory", "--model", student, "--teacher", ct, "--n", "2", "--guidance", "2"];
    fails_with(&cm(&args), &["--guidance 2", "mnist-cd does not take"]);
    fails_with(
        &cm(&["trajectory", "--model", cs, "--teacher", teacher, "--class", "3"]),
        &["not class-conditional"],
    );
    fails_with(
        &cm(&[
            "trajectory",
            "--model",
            model_dir().to_str().unwrap(),
            "--teacher",
            moons,
            "--out",
            "/tmp/x.png",
        ]),
        &["2D model"],
    );
}
