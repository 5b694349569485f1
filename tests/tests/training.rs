//! Trains iCT on moons for a few hundred steps and checks that one-step samples move well towards
//! the data; checks the run folder a user gets.

use burn::prelude::*;
use cm_core::Method;
use cm_core::data2d::Dataset2d;
use cm_core::net::Architecture;
use cm_trainer::config::TrainConfig;
use cm_trainer::eval::{consistency_points, eval_data};
use cm_trainer::io::load_model_dir;
use cm_trainer::train::{RunOptions, Start};

fn small_ict(steps: u64) -> TrainConfig {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/moons-ict.toml")).unwrap();
    let mut cfg: TrainConfig = toml::from_str(&text).unwrap();
    cfg.steps = steps;
    cfg.batch = 256;
    match &mut cfg.network {
        Architecture::Mlp(m) => (m.hidden, m.blocks) = (64, 2),
        Architecture::UNet(_) => panic!("moons-ict.toml is an MLP recipe"),
    }
    cfg.eval_every = 0;
    cfg.checkpoint_every = 0;
    cfg.optimizer.warmup_steps = 50;
    cfg.ema_decay = 0.95;
    cfg
}

#[test]
fn ict_on_moons_learns_in_a_few_hundred_steps() {
    let dir = std::env::temp_dir().join(format!("cm-train-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = small_ict(400);
    assert_eq!(cfg.method, Method::Ict);

    // The untrained model's one-step distance to data (same init: same seed, same device kind).
    let device = Device::flex();
    device.seed(cfg.seed);
    let untrained = cfg.model().init(&device);
    let data = eval_data(Dataset2d::Moons, 2048, 5, 0);
    let before = cm_trainer::eval::metrics::sliced_w2(
        &consistency_points(&untrained, 2048, 5, &[]).unwrap(),
        &data,
        2,
        128,
        0,
    );

    let summary = cm_trainer::train::train(&cfg, &dir, "test", RunOptions::new(Start::New)).unwrap();
    let cm_core::Model { card, denoiser: trained } =
        load_model_dir(summary.model_dir.as_ref().unwrap(), &device).unwrap();
    let after = cm_trainer::eval::metrics::sliced_w2(
        &consistency_points(&trained, 2048, 5, &[]).unwrap(),
        &data,
        2,
        128,
        0,
    );
    eprintln!("sliced W2 one step: untrained {before:.4}, trained {after:.4}");
    assert!(after < 0.3 * before, "one-step sliced W2 went from {before} to only {after}");
    assert!(card.metrics.contains_key("sliced_w2_1step"));

    // The run folder holds what the issue promises.
    for f in [
        "config.toml",
        "metrics.jsonl",
        "samples.png",
        "loss.png",
        "eval.json",
        "model/config.json",
        "model/model.safetensors",
    ] {
        assert!(dir.join(f).is_file(), "missing {f}");
    }
    assert!(dir.join("checkpoints/step-0000400/ema.safetensors").is_file());
    let lines = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(lines.lines().last().unwrap()).unwrap();
    assert_eq!(last["step"], 400);
    assert!(last["loss"].as_f64().unwrap().is_finite());
    // The resolved config parses back to the same recipe.
    let resolved: TrainConfig =
        toml::from_str(&std::fs::read_to_string(dir.join("config.toml")).unwrap()).unwrap();
    assert_eq!(resolved.steps, 400);
    assert!(resolved.ct.is_some());
    let _ = std::fs::remove_dir_all(&dir);
}
