//! Image models through the `cm` binary, on the committed subsets in `tests/data` (`CM_DATA`): training
//! with sample grids, bit-exact `--resume`, sampling to PNG/npy, the classifier and `cm eval`, and clear
//! errors for missing or broken data.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::{fails_with, fresh_dir};

fn test_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data")
}

fn cm_in(cwd: &Path, data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cm"))
        .args(args)
        .current_dir(cwd)
        .env("CM_LOG", "off")
        .env("CM_DATA", data)
        .output()
        .expect("cm runs")
}

fn tmp(name: &str) -> PathBuf {
    fresh_dir("img", name)
}

fn ok(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "cm failed: {err}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The tensor bytes of a safetensors file (after its 8-byte length and JSON header).
fn tensor_data(bytes: &[u8]) -> &[u8] {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    &bytes[8 + n..]
}

/// A tiny iCT U-Net on 8×8 MNIST (dropout on, so the shared masks are exercised).
fn recipe(dataset: &str, channels: usize, steps: u64) -> String {
    format!(
        r#"
dataset = "{dataset}"
method = "ict"
steps = {steps}
batch = 8
seed = 3
ema_decay = 0.9
log_every = 1
sample_every = 3
checkpoint_every = 3
[optimizer]
lr = 0.001
[network]
kind = "unet"
channels = {channels}
resolution = 8
base = 8
mult = [1, 2]
res_blocks = 1
attention = [4]
groups = 4
emb_dim = 8
dropout = 0.1
embedding = {{ kind = "fourier", scale = 20.0, seed = 0 }}
"#
    )
}

#[test]
fn image_training_writes_grids_and_resumes_bit_exactly() {
    let d = tmp("resume");
    // RAdam here (its state is Adam's, so this covers both optimisers' checkpoints).
    let radam = recipe("mnist", 1, 6).replace("[optimizer]\n", "[optimizer]\nkind = \"radam\"\n");
    assert!(radam.contains("radam"));
    std::fs::write(d.join("r.toml"), radam).unwrap();
    let full = d.join("full");
    ok(&cm_in(&d, &test_data(), &["train", "--config", "r.toml", "--out", full.to_str().unwrap()]));
    assert!(full.join("samples/step-0000003.png").is_file());
    assert!(full.join("samples.png").is_file());
    let last = std::fs::read(full.join("checkpoints/step-0000006/model.safetensors")).unwrap();
    let last_ema = std::fs::read(full.join("checkpoints/step-0000006/ema.safetensors")).unwrap();

    // A run stopped after step 3: the same folder without its later checkpoint and export.
    let cut = d.join("cut");
    std::fs::create_dir_all(cut.join("checkpoints")).unwrap();
    std::fs::copy(full.join("config.toml"), cut.join("config.toml")).unwrap();
    let src = full.join("checkpoints/step-0000003");
    let dst = cut.join("checkpoints/step-0000003");
    std::fs::create_dir_all(&dst).unwrap();
    for f in std::fs::read_dir(&src).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, dst.join(f.file_name().unwrap())).unwrap();
    }
    let metrics = std::fs::read_to_string(full.join("metrics.jsonl")).unwrap();
    let first_three: String = metrics.lines().take(3).map(|l| format!("{l}\n")).collect();
    std::fs::write(cut.join("metrics.jsonl"), first_three).unwrap();

    ok(&cm_in(
        &d,
        &test_data(),
        &["train", "--config", "r.toml", "--out", cut.to_str().unwrap(), "--resume"],
    ));
    let resumed = std::fs::read_to_string(cut.join("metrics.jsonl")).unwrap();
    let loss = |s: &str| {
        s.lines().map(|l| l.split("\"loss\":").nth(1).unwrap()[..12].to_string()).collect::<Vec<_>>()
    };
    assert_eq!(loss(&resumed), loss(&metrics), "the resumed losses differ");
    // Tensor data, not whole files: the safetensors metadata map has no fixed key order.
    let same = |name: &str, want: &[u8]| {
        tensor_data(&std::fs::read(cut.join("checkpoints/step-0000006").join(name)).unwrap())
            == tensor_data(want)
    };
    assert!(same("model.safetensors", &last), "resumed weights differ");
    assert!(same("ema.safetensors", &last_ema), "resumed EMA differs");

    // Resuming with another recipe is refused and names the difference.
    let other = recipe("mnist", 1, 9).replace("[optimizer]\n", "[optimizer]\nkind = \"radam\"\n");
    std::fs::write(d.join("other.toml"), other).unwrap();
    let out = cm_in(
        &d,
        &test_data(),
        &["train", "--config", "other.toml", "--out", cut.to_str().unwrap(), "--resume"],
    );
    fails_with(&out, &["--resume", "config.toml", "steps"]);

    // Samples of an image model: a PNG grid and a [n, C·H·W] .npy.
    let model = full.join("model");
    for ext in ["png", "npy"] {
        let path = d.join(format!("s.{ext}"));
        ok(&cm_in(
            &d,
            &test_data(),
            &["sample", "--model", model.to_str().unwrap(), "--n", "9", "--out", path.to_str().unwrap()],
        ));
        let bytes = std::fs::read(&path).unwrap();
        match ext {
            "png" => assert_eq!(&bytes[1..4], b"PNG"),
            _ => assert!(String::from_utf8_lossy(&bytes[..80]).contains("(9, 64)")),
        }
    }
}

#[test]
fn classifier_and_image_eval_report_every_metric() {
    let d = tmp("eval");
    let out = cm_in(
        &d,
        &test_data(),
        &["classifier", "--dataset", "mnist", "--resolution", "8", "--steps", "200", "--batch", "32"],
    );
    let card: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    // Ten classes from 512 images and 200 steps: well above chance (10 %).
    assert!(card["test_accuracy"].as_f64().unwrap() > 0.3, "{card}");
    assert!(d.join("classifiers/mnist-8/classifier.safetensors").is_file());

    std::fs::write(d.join("r.toml"), recipe("mnist", 1, 2)).unwrap();
    ok(&cm_in(&d, &test_data(), &["train", "--config", "r.toml", "--out", "run"]));
    let out = cm_in(&d, &test_data(), &["eval", "--model", "run/model", "--n", "64", "--write-card"]);
    let report: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    for steps in ["1", "2", "4"] {
        let e = &report["consistency"][steps];
        for k in ["fid", "kid", "precision", "recall", "class_kl", "max_prob", "nn_train"] {
            assert!(e[k].as_f64().is_some_and(f64::is_finite), "{steps}-step {k}: {e}");
        }
    }
    // Two training steps make noise, not digits: far from the train-vs-test reference.
    let fid = |e: &serde_json::Value| e["fid"].as_f64().unwrap();
    assert!(fid(&report["consistency"]["1"]) > 2.0 * fid(&report["reference"]), "{report}");
    let card = std::fs::read_to_string(d.join("run/model/config.json")).unwrap();
    assert!(card.contains("fid_1step") && card.contains("fid_reference"));

    // No classifier for this resolution: the error names the command that makes one.
    let out = cm_in(&d, &test_data(), &["eval", "--model", "run/model", "--classifier", "nowhere"]);
    fails_with(&out, &["no classifier at nowhere", "cm classifier"]);
    // A classifier of another resolution or dataset cannot read this model's images (it once panicked in a
    // reshape, or measured with the wrong features).
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for other in ["classifiers/mnist-16", "classifiers/fashion-mnist-16"] {
        let other = repo.join(other);
        let out = cm_in(
            &d,
            &test_data(),
            &["eval", "--model", "run/model", "--classifier", other.to_str().unwrap()],
        );
        fails_with(&out, &["cannot read"]);
    }
    // The classifier behind the metrics is not replaced by accident; --force replaces it.
    let again = ["classifier", "--dataset", "mnist", "--resolution", "8", "--steps", "1", "--batch", "8"];
    fails_with(&cm_in(&d, &test_data(), &again), &["holds a classifier already", "--force"]);
    ok(&cm_in(&d, &test_data(), &[&again[..], &["--force"]].concat()));
    let into_model = [&again[..], &["--out", "run/model", "--force"]].concat();
    fails_with(&cm_in(&d, &test_data(), &into_model), &["not a classifier folder"]);
    // The card records its weights' SHA-256: weights changed behind it (same shape), or a file of
    // another size, are refused before any feature is computed.
    let weights = d.join("classifiers/mnist-8/classifier.safetensors");
    let good = std::fs::read(&weights).unwrap();
    let eval = ["eval", "--model", "run/model", "--n", "64"];
    let mut swapped = good.clone();
    *swapped.last_mut().unwrap() ^= 1;
    std::fs::write(&weights, &swapped).unwrap();
    fails_with(&cm_in(&d, &test_data(), &eval), &["classifier.safetensors", "SHA-256", "weights_sha256"]);
    let mut padded = good.clone();
    padded.resize(good.len() + (2 << 20), 0);
    std::fs::write(&weights, &padded).unwrap();
    fails_with(&cm_in(&d, &test_data(), &eval), &["classifier.safetensors", "more than its", "a header"]);
}

#[test]
fn colour_sets_and_folders_train() {
    let d = tmp("colour");
    std::fs::write(d.join("emoji.toml"), recipe("emoji-open", 3, 1)).unwrap();
    ok(&cm_in(&d, &test_data(), &["train", "--config", "emoji.toml", "--out", "emoji"]));
    let folder = test_data().join("emoji/google/64");
    let r = recipe("folder", 3, 1).replace(
        "dataset = \"folder\"",
        &format!("dataset = \"folder\"\ndata_path = {:?}", folder.to_str().unwrap()),
    );
    std::fs::write(d.join("folder.toml"), r).unwrap();
    ok(&cm_in(&d, &test_data(), &["train", "--config", "folder.toml", "--out", "folder"]));
    // --resolution overrides the recipe's (and must suit the U-Net's levels).
    ok(&cm_in(
        &d,
        &test_data(),
        &["train", "--config", "emoji.toml", "--out", "emoji4", "--resolution", "4"],
    ));
    let out =
        cm_in(&d, &test_data(), &["train", "--config", "emoji.toml", "--out", "emoji5", "--resolution", "5"]);
    fails_with(&out, &["resolution", "divisible by 2"]);
}

#[test]
fn bad_image_data_is_explained() {
    let d = tmp("bad");
    std::fs::write(d.join("r.toml"), recipe("mnist", 1, 1)).unwrap();
    // Missing data cache: the error names the fetch command.
    let out = cm_in(&d, &d.join("empty-cache"), &["train", "--config", "r.toml", "--out", "run"]);
    fails_with(&out, &["mnist", "scripts/data.sh"]);
    // A truncated IDX file is named.
    let cache = d.join("cache");
    std::fs::create_dir_all(cache.join("mnist")).unwrap();
    for f in std::fs::read_dir(test_data().join("mnist")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, cache.join("mnist").join(f.file_name().unwrap())).unwrap();
    }
    let images = cache.join("mnist/train-images-idx3-ubyte");
    let bytes = std::fs::read(&images).unwrap();
    std::fs::write(&images, &bytes[..1000]).unwrap();
    let out = cm_in(&d, &cache, &["train", "--config", "r.toml", "--out", "run"]);
    fails_with(&out, &["train-images-idx3-ubyte", "IDX3"]);
    // Channels that do not match the dataset, and a folder set without a path.
    std::fs::write(d.join("c.toml"), recipe("mnist", 3, 1)).unwrap();
    fails_with(
        &cm_in(&d, &test_data(), &["train", "--config", "c.toml", "--out", "run"]),
        &["network.channels", "1 channel"],
    );
    std::fs::write(d.join("f.toml"), recipe("folder", 3, 1)).unwrap();
    fails_with(&cm_in(&d, &test_data(), &["train", "--config", "f.toml", "--out", "run"]), &["data_path"]);
    // All four emoji vendors where the cache has two: the missing vendor's package and the fetch command.
    std::fs::write(d.join("e.toml"), recipe("emoji", 3, 1)).unwrap();
    fails_with(
        &cm_in(&d, &test_data(), &["train", "--config", "e.toml", "--out", "run"]),
        &["apple/64", "emoji-datasource-apple", "scripts/data.sh"],
    );
    // A CIFAR-10 folder without the binary batches.
    let r =
        recipe("cifar10", 3, 1).replace("dataset = \"cifar10\"", "dataset = \"cifar10\"\ndata_path = \".\"");
    std::fs::write(d.join("cifar.toml"), r).unwrap();
    fails_with(
        &cm_in(&d, &test_data(), &["train", "--config", "cifar.toml", "--out", "run"]),
        &["data_batch_1.bin"],
    );
}

#[test]
fn data_writes_evenly_spaced_test_images() {
    let d = tmp("data");
    let out = d.join("x.npy");
    ok(&cm_in(
        &d,
        &test_data(),
        &["data", "--name", "mnist", "--resolution", "28", "--n", "4", "--out", "x.npy"],
    ));
    // The committed subset has 256 test images: rows 0, 64, 128 and 192, unresized, in [-1, 1].
    let npy = std::fs::read(&out).unwrap();
    let header_len = u16::from_le_bytes([npy[8], npy[9]]) as usize;
    assert!(String::from_utf8_lossy(&npy[10..10 + header_len]).contains("(4, 784)"));
    let rows: Vec<f32> =
        npy[10 + header_len..].chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    let idx = std::fs::read(test_data().join("mnist/t10k-images-idx3-ubyte")).unwrap();
    for (r, i) in [0usize, 64, 128, 192].into_iter().enumerate() {
        let want = &idx[16 + i * 784..16 + (i + 1) * 784];
        for (p, &byte) in want.iter().enumerate() {
            assert!((rows[r * 784 + p] - (byte as f32 / 127.5 - 1.0)).abs() < 1e-6, "row {r}, pixel {p}");
        }
    }
    // A PNG row of tiles with a 1-pixel gutter: 4 × (28 + 1) + 1 wide, 28 + 2 high.
    ok(&cm_in(
        &d,
        &test_data(),
        &["data", "--name", "mnist", "--resolution", "28", "--n", "4", "--out", "x.png"],
    ));
    let png = std::fs::read(d.join("x.png")).unwrap();
    let be = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    assert_eq!((be(16), be(20)), (117, 30));
    fails_with(&cm_in(&d, &test_data(), &["data", "--name", "mnist", "--out", "x.png"]), &["--resolution"]);
    fails_with(
        &cm_in(&d, &test_data(), &["data", "--name", "mnist", "--resolution", "8", "--out", "x.png"]),
        &["--n 4096", "at most 1024"],
    );
    // More images than the test split holds: said, not a shorter file.
    fails_with(
        &cm_in(
            &d,
            &test_data(),
            &["data", "--name", "mnist", "--resolution", "8", "--n", "1024", "--out", "x.png"],
        ),
        &["--n 1024", "test split"],
    );
}

/// The consistency probe: an image run started from a diffusion model (`init_from`) logs, at each sample
/// grid's step, its EMA's jumps from that model's PF-ODE trajectories (RMS to their origin, at sigma_max
/// and over the levels); at the start the weights are the diffusion model's, so the jump from sigma_max is
/// that denoiser's mean, far from the origin. A run from random weights has no diffusion model: no probe.
#[test]
fn runs_from_a_diffusion_model_log_their_jumps_from_its_trajectories() {
    let d = tmp("probe");
    let edm = recipe("mnist", 1, 3)
        .replace("method = \"ict\"", "method = \"edm\"")
        .replace("dropout = 0.1", "dropout = 0.0");
    std::fs::write(d.join("edm.toml"), edm).unwrap();
    ok(&cm_in(&d, &test_data(), &["train", "--config", "edm.toml", "--out", "edm"]));
    let ict = recipe("mnist", 1, 6).replace("dropout = 0.1", "dropout = 0.0");
    std::fs::write(d.join("ict.toml"), ict.replace("steps = 6", "steps = 6\ninit_from = \"edm/model\""))
        .unwrap();
    std::fs::write(d.join("scratch.toml"), &ict).unwrap();
    ok(&cm_in(&d, &test_data(), &["train", "--config", "ict.toml", "--out", "ict"]));
    ok(&cm_in(&d, &test_data(), &["train", "--config", "scratch.toml", "--out", "scratch"]));
    let lines = |run: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(d.join(run).join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let probed: Vec<(u64, f64, f64)> = lines("ict")
        .iter()
        .filter(|l| l.get("jump_rms_sigma_max").is_some())
        .map(|l| {
            (
                l["step"].as_u64().unwrap(),
                l["jump_rms_sigma_max"].as_f64().unwrap(),
                l["jump_rms_mean"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(probed.iter().map(|p| p.0).collect::<Vec<_>>(), vec![3, 6], "at each sample grid: {probed:?}");
    assert!(
        probed.iter().all(|&(_, max, mean)| max.is_finite() && max > 0.0 && mean > 0.0 && mean < max),
        "{probed:?}"
    );
    assert!(
        lines("scratch").iter().all(|l| l.get("jump_rms_sigma_max").is_none()),
        "no diffusion model, no probe"
    );
}

/// A class-conditional run (`network.classes`, `label_dropout`): the card names the classes, `cm sample
/// --class` draws one class by number or name (or none), a bad class is an error naming the choices,
/// `cm eval` scores how often the classifier agrees with the class asked, and recipes whose classes do
/// not fit the data are refused by field.
#[test]
fn class_conditional_runs_sample_and_score_by_class() {
    let d = tmp("classes");
    let conditional = |classes: usize, dataset: &str| {
        recipe(dataset, 1, 3)
            .replace("method = \"ict\"\n", "method = \"ict\"\nlabel_dropout = 0.25\n")
            .replace("dropout = 0.1\n", &format!("dropout = 0.1\nclasses = {classes}\n"))
    };
    std::fs::write(d.join("c.toml"), conditional(10, "mnist")).unwrap();
    ok(&cm_in(&d, &test_data(), &["train", "--config", "c.toml", "--out", "run"]));
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("run/model/config.json")).unwrap()).unwrap();
    assert_eq!(card["model"]["architecture"]["classes"], 10, "{card}");
    let names: Vec<String> = (0..10).map(|c| c.to_string()).collect();
    assert_eq!(card["class_names"], serde_json::json!(names));

    let sample = |class: &str, out: &str| {
        cm_in(
            &d,
            &test_data(),
            &["sample", "--model", "run/model", "--n", "4", "--class", class, "--out", out],
        )
    };
    ok(&sample("3", "three.npy"));
    ok(&sample("7", "seven.npy"));
    ok(&sample("none", "none.npy"));
    let read = |f: &str| tensor_data_npy(&std::fs::read(d.join(f)).unwrap());
    // The same noise, another class: another image.
    assert_ne!(read("three.npy"), read("seven.npy"));
    assert_ne!(read("three.npy"), read("none.npy"));
    fails_with(&sample("10", "x.npy"), &["--class 10", "0 to 9"]);
    fails_with(&sample("cat", "x.npy"), &["--class cat", "\"7\""]);

    // The classifier's verdict on each sample against the class it was drawn from.
    ok(&cm_in(&d, &test_data(), &["classifier", "--dataset", "mnist", "--resolution", "8", "--steps", "20"]));
    let out = cm_in(&d, &test_data(), &["eval", "--model", "run/model", "--n", "40"]);
    let report: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    let acc = report["consistency"]["1"]["class_accuracy"].as_f64().expect("class_accuracy");
    assert!((0.0..=1.0).contains(&acc), "{report}");
    assert!(report["reference"].get("class_accuracy").is_none(), "{report}");

    // An unconditional model takes no class.
    std::fs::write(d.join("u.toml"), recipe("mnist", 1, 1)).unwrap();
    ok(&cm_in(&d, &test_data(), &["train", "--config", "u.toml", "--out", "plain"]));
    let out =
        cm_in(&d, &test_data(), &["sample", "--model", "plain/model", "--class", "3", "--out", "p.npy"]);
    fails_with(&out, &["not class-conditional"]);

    // Classes that do not fit the data, and label dropout without classes.
    std::fs::write(d.join("seven.toml"), conditional(7, "mnist")).unwrap();
    let out = cm_in(&d, &test_data(), &["train", "--config", "seven.toml", "--out", "r7"]);
    fails_with(&out, &["network.classes", "7 classes", "has 10 classes"]);
    std::fs::write(d.join("drop.toml"), conditional(0, "mnist")).unwrap();
    let out = cm_in(&d, &test_data(), &["train", "--config", "drop.toml", "--out", "r0"]);
    fails_with(&out, &["label_dropout", "network.classes"]);

    // Classifier-free guidance: a conditional teacher samples guided by its ODE, and CD distils the
    // guided teacher; guidance needs classes, a diffusion model, and a teacher of the student's classes.
    let edm = conditional(10, "mnist").replace("method = \"ict\"", "method = \"edm\"");
    std::fs::write(d.join("t.toml"), &edm).unwrap();
    ok(&cm_in(&d, &test_data(), &["train", "--config", "t.toml", "--out", "teacher"]));
    let teach = |args: &[&str]| {
        let mut all =
            vec!["sample", "--model", "teacher/model", "--teacher-nfe", "3", "--n", "4", "--out", "t.npy"];
        all.extend_from_slice(args);
        cm_in(&d, &test_data(), &all)
    };
    ok(&teach(&["--class", "3"]));
    let plain = read("t.npy");
    ok(&teach(&["--class", "3", "--guidance", "3"]));
    assert_ne!(read("t.npy"), plain, "guidance changes the teacher's samples");
    fails_with(&teach(&["--class", "none", "--guidance", "3"]), &["guidance 3", "class"]);
    fails_with(&teach(&["--guidance", "-2"]), &["guidance must be"]);
    let args = ["sample", "--model", "run/model", "--class", "3", "--guidance", "2", "--out", "x.npy"];
    fails_with(&cm_in(&d, &test_data(), &args), &["built in"]);
    let args = ["eval", "--model", "run/model", "--n", "8", "--guidance", "2"];
    fails_with(&cm_in(&d, &test_data(), &args), &["--guidance 2", "consistency model"]);
    let cd = |guidance: &str, classes: usize| {
        conditional(classes, "mnist")
            .replace("method = \"ict\"", "method = \"cd\"")
            .replace("label_dropout = 0.25\n", if classes > 0 { "label_dropout = 0.25\n" } else { "" })
            + &format!("[teacher]\npath = \"teacher/model\"\nguidance = {guidance}\n")
    };
    std::fs::write(d.join("cd.toml"), cd("2.0", 10)).unwrap();
    ok(&cm_in(&d, &test_data(), &["train", "--config", "cd.toml", "--out", "guided"]));
    let card = std::fs::read_to_string(d.join("guided/model/config.json")).unwrap();
    assert!(card.contains("\"guidance\": 2.0"), "the card's recipe records the guidance");
    // Its consistency probe follows the guided ODE of every class in turn, and jumps with each class.
    let metrics = std::fs::read_to_string(d.join("guided/metrics.jsonl")).unwrap();
    let probed: Vec<f64> = (metrics.lines())
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["jump_rms_sigma_max"].as_f64())
        .collect();
    assert!(!probed.is_empty() && probed.iter().all(|v| v.is_finite() && *v > 0.0), "{metrics}");
    std::fs::write(d.join("cd0.toml"), cd("1.0", 0)).unwrap();
    let out = cm_in(&d, &test_data(), &["train", "--config", "cd0.toml", "--out", "g0"]);
    fails_with(&out, &["teacher.path", "10 classes", "network.classes"]);
    std::fs::write(d.join("cd1.toml"), cd("2.0", 0)).unwrap();
    let out = cm_in(&d, &test_data(), &["train", "--config", "cd1.toml", "--out", "g1"]);
    fails_with(&out, &["teacher.guidance", "class-conditional"]);
}

/// The float data of a `.npy` file (after its header).
fn tensor_data_npy(bytes: &[u8]) -> Vec<u8> {
    let header = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    bytes[10 + header..].to_vec()
}
