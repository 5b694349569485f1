//! `cm edit` on the bundled MNIST iCT model: every task runs, keeps what it must keep, reports its metric,
//! and bad input gets a one-line error naming the argument or file.

use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
use common::{cm, fails_with, fresh_dir};

fn tmp(name: &str) -> PathBuf {
    fresh_dir("edit", name)
}

fn model() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../www/models/mnist-ict").to_str().unwrap().to_string()
}

/// A 16×16 grey PNG from a pixel function.
fn grey_png(path: &Path, f: impl Fn(usize, usize) -> u8) {
    let mut buf = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut buf, 16, 16);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().unwrap();
        let pix: Vec<u8> = (0..16).flat_map(|y| (0..16).map(move |x| (y, x))).map(|(y, x)| f(y, x)).collect();
        w.write_image_data(&pix).unwrap();
    }
    std::fs::write(path, buf).unwrap();
}

fn report(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "cm edit failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("a JSON report")
}

/// A fresh folder `name` with a reference ring (`in.png`) and a mask of its lower half (`mask.png`), and
/// their paths as strings.
fn ring_and_lower_half(name: &str) -> (PathBuf, String, String) {
    let d = tmp(name);
    let (input, mask) = (d.join("in.png"), d.join("mask.png"));
    grey_png(&input, ring);
    grey_png(&mask, |y, _| if y >= 8 { 255 } else { 0 });
    let path = |p: PathBuf| p.to_str().unwrap().to_string();
    (d, path(input), path(mask))
}

/// A "digit": a bright ring on black.
fn ring(y: usize, x: usize) -> u8 {
    let r = ((y as f64 - 7.5).powi(2) + (x as f64 - 7.5).powi(2)).sqrt();
    if (3.5..6.0).contains(&r) { 255 } else { 0 }
}

#[test]
fn every_task_keeps_what_it_must_and_reports_its_metric() {
    let (d, i, m) = ring_and_lower_half("tasks");
    let (i, m, md) = (i.as_str(), m.as_str(), model());
    let out = |name: &str| d.join(name).to_str().unwrap().to_string();

    let r =
        report(&cm(&["edit", "inpaint", "--model", &md, "--input", i, "--mask", m, "--out", &out("a.png")]));
    assert!(r["metrics"]["mse_known"].as_f64().unwrap() < 1e-10, "{r}");
    assert!(d.join("a.png").is_file());

    let r = report(&cm(&[
        "edit",
        "super-resolution",
        "--model",
        &md,
        "--input",
        i,
        "--factor",
        "4",
        "--out",
        &out("b.png"),
    ]));
    assert!(r["metrics"]["downsampling_max_error"].as_f64().unwrap() < 1e-5, "{r}");

    let r = report(&cm(&[
        "edit",
        "denoise",
        "--model",
        &md,
        "--input",
        i,
        "--sigma",
        "0.5",
        "--out",
        &out("c.npy"),
    ]));
    let (noisy, denoised) =
        (r["metrics"]["psnr_noisy"].as_f64().unwrap(), r["metrics"]["psnr_denoised"].as_f64().unwrap());
    assert!(denoised > noisy + 1.0, "denoising should raise PSNR: {noisy} -> {denoised}");
    assert!(std::fs::metadata(d.join("c.npy")).unwrap().len() > 4 * 256 * 4, "four result rows");

    let r = report(&cm(&[
        "edit",
        "stroke",
        "--model",
        &md,
        "--input",
        i,
        "--sigma",
        "2",
        "--out",
        &out("e.png"),
    ]));
    assert!(r["metrics"]["rms_change"].as_f64().unwrap() > 0.0);

    let r = report(&cm(&["edit", "interpolate", "--model", &md, "--n", "6", "--out", &out("f.npy")]));
    assert_eq!(r["images"], 6);
}

#[test]
fn bad_edit_input_is_named() {
    let d = tmp("bad");
    let input = d.join("in.png");
    grey_png(&input, ring);
    let black = d.join("black.png");
    grey_png(&black, |_, _| 0);
    let (i, md) = (input.to_str().unwrap(), model());
    let o = d.join("o.png");
    let o = o.to_str().unwrap();
    fails_with(&cm(&["edit", "inpaint", "--model", &md, "--input", i, "--out", o]), &["--mask"]);
    fails_with(
        &cm(&[
            "edit",
            "inpaint",
            "--model",
            &md,
            "--input",
            i,
            "--mask",
            black.to_str().unwrap(),
            "--out",
            o,
        ]),
        &["black.png", "white"],
    );
    fails_with(&cm(&["edit", "denoise", "--model", &md, "--out", o]), &["--input"]);
    // A flag the task does not read is refused rather than silently ignored.
    fails_with(
        &cm(&["edit", "interpolate", "--model", &md, "--input", i, "--out", o]),
        &["--input", "no effect"],
    );
    let m = black.to_str().unwrap();
    for (task, flag, value) in
        [("inpaint", "--sigma", "0.5"), ("denoise", "--mask", m), ("stroke", "--factor", "4")]
    {
        let mut args = vec!["edit", task, "--model", &md, "--input", i, "--out", o, flag, value];
        if task == "inpaint" {
            args.extend(["--mask", m]);
        }
        fails_with(&cm(&args), &[flag, "no effect", task]);
    }
    fails_with(&cm(&["edit", "interpolate", "--model", &md, "--n", "1", "--out", o]), &["--n 1", "2 frames"]);
    // Both outputs' formats are checked before either is written.
    let fresh = d.join("fresh.npy");
    let (f, bad) = (fresh.to_str().unwrap(), d.join("x.bad"));
    fails_with(
        &cm(&[
            "edit",
            "denoise",
            "--model",
            &md,
            "--input",
            i,
            "--sigma",
            "0.5",
            "--out",
            f,
            "--save-input",
            bad.to_str().unwrap(),
        ]),
        &["--save-input", ".png, .npy"],
    );
    assert!(!fresh.exists());
    fails_with(&cm(&["edit", "denoise", "--model", &md, "--input", i, "--out", o]), &["--sigma"]);
    fails_with(
        &cm(&[
            "edit", "denoise", "--model", &md, "--input", i, "--sigma", "0.5", "--taus", "0.8", "--out", o,
        ]),
        &["tau 0.8"],
    );
    fails_with(&cm(&["edit", "colourise", "--model", &md, "--input", i, "--out", o]), &["3-channel"]);
    fails_with(
        &cm(&["edit", "super-resolution", "--model", &md, "--input", i, "--factor", "3", "--out", o]),
        &["factor 3"],
    );
    fails_with(
        &cm(&[
            "edit",
            "stroke",
            "--model",
            &md,
            "--input",
            d.join("nope.png").to_str().unwrap(),
            "--sigma",
            "1",
            "--out",
            o,
        ]),
        &["nope.png"],
    );
    let teacher = Path::new(env!("CARGO_MANIFEST_DIR")).join("../www/models/mnist-edm");
    fails_with(
        &cm(&[
            "edit",
            "denoise",
            "--model",
            teacher.to_str().unwrap(),
            "--input",
            i,
            "--sigma",
            "0.5",
            "--out",
            o,
        ]),
        &["diffusion model"],
    );
    let points = Path::new(env!("CARGO_MANIFEST_DIR")).join("../www/models/moons-ict");
    fails_with(
        &cm(&["edit", "interpolate", "--model", points.to_str().unwrap(), "--out", o]),
        &["image model"],
    );
}

/// A class-conditional model edits "as a class": the filled pixels follow `--class` (by number or name;
/// `each` gives result `i` class `i mod 10`), the known ones stay, and the report names the classes;
/// interpolation takes a class too; a class for an unconditional model or an unknown one is refused.
#[test]
fn a_conditional_model_fills_in_the_class_asked() {
    let (d, i, m) = ring_and_lower_half("classes");
    let (i, m) = (i.as_str(), m.as_str());
    let cond = Path::new(env!("CARGO_MANIFEST_DIR")).join("../www/models/mnist-sct-cond");
    let md = cond.to_str().unwrap();
    let out = |name: &str| d.join(name).to_str().unwrap().to_string();
    let fill = |class: &str, file: &str, n: &str| {
        cm(&[
            "edit", "inpaint", "--model", md, "--input", i, "--mask", m, "--n", n, "--class", class, "--out",
            file,
        ])
    };
    let (three, seven) = (out("3.npy"), out("7.npy"));
    let r = report(&fill("3", &three, "2"));
    assert_eq!(r["classes"], serde_json::json!([3, 3]), "{r}");
    assert!(r["metrics"]["mse_known"].as_f64().unwrap() < 1e-10, "{r}");
    report(&fill("7", &seven, "2"));
    assert_ne!(std::fs::read(&three).unwrap(), std::fs::read(&seven).unwrap(), "the class changes the fill");
    let r = report(&fill("each", &out("each.npy"), "12"));
    let each: Vec<u64> = (0..12).map(|i| i % 10).collect();
    assert_eq!(r["classes"], serde_json::json!(each), "{r}");
    let r =
        report(&cm(&["edit", "inpaint", "--model", md, "--input", i, "--mask", m, "--out", &out("n.npy")]));
    assert!(r["classes"].is_null(), "no --class: no class, {r}");
    let five = |extra: &[&str]| {
        let mut args = vec!["edit", "interpolate", "--model", md, "--n", "3", "--class", "5"];
        args.extend_from_slice(extra);
        cm(&args)
    };
    let f = out("f.npy");
    let r = report(&five(&["--out", &f]));
    assert_eq!(r["classes"], serde_json::json!([5, 5, 5]), "{r}");
    // The dataset's LeNet reads each result's class: a path within class 5 is read as fives.
    let classifiers = Path::new(env!("CARGO_MANIFEST_DIR")).join("../classifiers");
    let lenet = |name: &str| classifiers.join(name).to_str().unwrap().to_string();
    let r = report(&five(&["--classifier", &lenet("mnist-16"), "--out", &f]));
    assert_eq!(r["classes_read"].as_array().map(|a| a.len()), Some(3), "{r}");
    assert!(r["class_accuracy"].as_f64().unwrap() >= 2.0 / 3.0, "{r}");
    let r = report(&cm(&[
        "edit",
        "inpaint",
        "--model",
        md,
        "--input",
        i,
        "--mask",
        m,
        "--class",
        "each",
        "--classifier",
        &lenet("mnist-16"),
        "--out",
        &f,
    ]));
    let acc = r["class_accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc) && r["classes_read"].as_array().unwrap().len() == 4, "{r}");
    fails_with(&five(&["--classifier", &lenet("mnist-28"), "--out", &f]), &["28 px", "cannot read"]);
    fails_with(
        &five(&["--classifier", &lenet("fashion-mnist-16"), "--out", &f]),
        &["fashion-mnist", "cannot read"],
    );
    let never = out("never.npy");
    fails_with(&five(&["--classifier", &lenet("emoji-32"), "--out", &never]), &["cannot read"]);
    assert!(
        !d.join("never.npy").exists(),
        "a classifier that cannot read is refused before anything is written"
    );
    let args = ["edit", "interpolate", "--model", md, "--class", "each", "--out", &f];
    fails_with(&cm(&args), &["--class each", "one class"]);
    let args = ["edit", "interpolate", "--model", md, "--classifier", &lenet("mnist-16"), "--out", &f];
    fails_with(&cm(&args), &["--classifier", "needs --class"]);
    // Without --classifier, the dataset's own from the working directory's classifiers/.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let from = |dir: &Path, class: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_cm"))
            .current_dir(dir)
            .args(["edit", "interpolate", "--model", md, "--n", "3", "--class", class, "--out", &f])
            .env("CM_LOG", "off")
            .output()
            .unwrap()
    };
    let r = report(&from(&root, "5"));
    assert!(r["class_accuracy"].is_number() && r["classifier"] == "classifiers/mnist-16", "{r}");
    // `--class none` asks for no class, so no classifier is loaded: from a folder whose default
    // classifiers/mnist-16 cannot read this model (a Fashion-MNIST LeNet there), a class is refused and
    // none is not.
    let wrong = d.join("wrong").join("classifiers").join("mnist-16");
    std::fs::create_dir_all(&wrong).unwrap();
    for file in std::fs::read_dir(classifiers.join("fashion-mnist-16")).unwrap() {
        let file = file.unwrap().path();
        std::fs::copy(&file, wrong.join(file.file_name().unwrap())).unwrap();
    }
    fails_with(&from(&d.join("wrong"), "5"), &["classifiers/mnist-16", "cannot read"]);
    let r = report(&from(&d.join("wrong"), "none"));
    assert!(r["classes"].is_null() && r.get("classifier").is_none(), "{r}");
    let args = ["edit", "interpolate", "--model", md, "--class", "none", "--classifier", &lenet("mnist-16")];
    fails_with(&cm(&[&args[..], &["--out", &f]].concat()), &["--classifier", "not none"]);
    fails_with(&fill("cat", &out("x.npy"), "2"), &["--class cat", "0 to 9", "each"]);
    let plain = model();
    let out_x = out("x.npy");
    let args =
        ["edit", "inpaint", "--model", &plain, "--input", i, "--mask", m, "--class", "3", "--out", &out_x];
    fails_with(&cm(&args), &["--class 3", "not class-conditional"]);
}
