//! `cm classifier`: the per-dataset LeNet whose features our image metrics compare, trained by `cm` itself
//! and kept in `classifiers/<dataset>-<resolution>/` (card `classifier.json` + `classifier.safetensors`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::eval::lenet::{LeNet, LeNetConfig};
use anyhow::{Context, Result, bail};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::TensorData;
use burn::tensor::activation::softmax;
use cm_core::card::{load_weights, weights_to_bytes};
use cm_core::rng::Noise;
use serde::{Deserialize, Serialize};

use crate::data::{ImageDataset, ImageSet};
use crate::eval::{hardware, host};
use crate::io::write_atomic;

pub const CLASSIFIER_FORMAT: &str = "cm-classifier/1";
pub const CARD_FILE: &str = "classifier.json";
pub const WEIGHTS_FILE: &str = "classifier.safetensors";

/// What a classifier folder says about itself.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierCard {
    pub format: String,
    pub dataset: String,
    pub network: LeNetConfig,
    pub steps: u64,
    pub batch: usize,
    pub seed: u64,
    /// Accuracy on the whole test split.
    pub test_accuracy: f64,
    pub provenance: BTreeMap<String, serde_json::Value>,
    /// SHA-256 of `classifier.safetensors` (lower-case hex), checked on every load: every FID figure
    /// stands on these weights, so a swapped or damaged file is refused, not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_sha256: Option<String>,
}

/// `classifiers/<dataset>-<resolution>` under `root`.
pub fn classifier_dir(root: &Path, dataset: &str, resolution: usize) -> PathBuf {
    root.join(format!("{dataset}-{resolution}"))
}

/// Rows `[n, D]` and labels of draw `stream`: uniformly drawn training images, each shifted by up to one
/// pixel (a little augmentation so features do not hinge on exact positions).
fn batch(set: &ImageSet, seed: u64, stream: u64, n: usize) -> (Vec<f32>, Vec<i64>) {
    let noise = Noise::new(seed ^ 0xC1A5_51F1);
    let [c, h, w] = set.shape;
    let (mut x, mut y) = (Vec::with_capacity(n * set.dim()), Vec::with_capacity(n));
    for row in 0..n {
        let mut g = noise.generator(stream, row as u64);
        let i = set.draw(&mut g);
        let (dy, dx) = ((g.uniform() * 3.0) as i64 - 1, (g.uniform() * 3.0) as i64 - 1);
        let img = set.row(i);
        for ch in 0..c {
            for yy in 0..h as i64 {
                for xx in 0..w as i64 {
                    let (sy, sx) = (yy - dy, xx - dx);
                    let inside = (0..h as i64).contains(&sy) && (0..w as i64).contains(&sx);
                    x.push(if inside { img[ch * h * w + sy as usize * w + sx as usize] } else { -1.0 });
                }
            }
        }
        y.push(set.labels[i] as i64);
    }
    (x, y)
}

/// How long and on what a classifier trains.
#[derive(Clone, Copy, Debug)]
pub struct ClassifierRecipe {
    pub steps: u64,
    pub batch: usize,
    pub seed: u64,
}

/// Trains a LeNet on `train`, measures it on `test`, and writes the classifier folder `out`.
pub fn train_classifier(
    dataset: ImageDataset,
    train: &ImageSet,
    test: &ImageSet,
    recipe: ClassifierRecipe,
    out: &Path,
    command: &str,
    device: &Device,
) -> Result<ClassifierCard> {
    let ClassifierRecipe { steps, batch: batch_size, seed } = recipe;
    if train.classes < 2 || train.labels.is_empty() {
        bail!("dataset `{}` has no class labels: a classifier cannot be trained on it", dataset.name());
    }
    let started = Instant::now();
    let [c, r, _] = train.shape;
    let network = LeNetConfig { channels: c, resolution: r, classes: train.classes, features: 128 };
    network.validate().map_err(|e| anyhow::anyhow!("classifier for {} at {r} px: {e}", dataset.name()))?;
    let device = device.clone().autodiff();
    device.seed(seed);
    let mut model = network.init(&device);
    let mut optim = AdamConfig::new().init();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let bar = indicatif::ProgressBar::new(steps);
    for k in 0..steps {
        let (x, y) = batch(train, seed, k, batch_size);
        let x = Tensor::<1>::from_floats(x.as_slice(), &device).reshape([batch_size, train.dim()]);
        let y = Tensor::<1, Int>::from_data(TensorData::new(y, [batch_size]), &device);
        let loss = loss_fn.forward(model.logits(model.features(x)), y);
        let lr = if k < steps * 2 / 3 { 1e-3 } else { 2e-4 };
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(lr, model, grads);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let model = model.valid();
    let (_, probs) = embed(&model, test)?;
    let k = test.classes;
    let correct = probs
        .chunks_exact(k)
        .zip(&test.labels)
        .filter(|(p, l)| {
            let arg = p.iter().enumerate().fold(0, |best, (i, v)| if *v > p[best] { i } else { best });
            arg == **l as usize
        })
        .count();
    let mut provenance = BTreeMap::new();
    provenance.insert("command".into(), command.into());
    provenance.insert("wall_time_s".into(), started.elapsed().as_secs_f64().into());
    provenance.insert("hardware".into(), hardware().into());
    let card = ClassifierCard {
        format: CLASSIFIER_FORMAT.into(),
        dataset: dataset.name().into(),
        network,
        steps,
        batch: batch_size,
        seed,
        test_accuracy: correct as f64 / test.len().max(1) as f64,
        provenance,
        weights_sha256: None,
    };
    let bytes = weights_to_bytes(&model).context("cannot serialise the classifier")?;
    let card = ClassifierCard { weights_sha256: Some(cm_core::card::sha256_hex(&bytes)), ..card };
    write_atomic(&out.join(WEIGHTS_FILE), &bytes)?;
    write_atomic(&out.join(CARD_FILE), serde_json::to_string_pretty(&card)?.as_bytes())?;
    Ok(card)
}

/// Reads a classifier folder, with errors naming the file and, if it is missing, the command that makes it.
pub fn load_classifier(dir: &Path, device: &Device) -> Result<(ClassifierCard, LeNet)> {
    let card_path = dir.join(CARD_FILE);
    if !card_path.exists() {
        // A default folder is named `<dataset>-<resolution>`: the command that makes it says so.
        let name = dir.file_name().and_then(|n| n.to_str()).and_then(|n| n.rsplit_once('-'));
        let flags = match name.filter(|(_, r)| r.parse::<u32>().is_ok()) {
            Some((set, r)) => format!("--dataset {set} --resolution {r}"),
            None => "--dataset <name> --resolution <px>".into(),
        };
        bail!(
            "no classifier at {} (a relative path is read from the current folder; the committed ones are in the repository's classifiers/): pass --classifier <folder>, or train one with `cm classifier {flags} --out {}`",
            dir.display(),
            dir.display()
        );
    }
    let text = crate::io::read_limited(&card_path, crate::io::MAX_TEXT_FILE)?;
    let card: ClassifierCard = serde_json::from_slice(&text)
        .with_context(|| format!("{}: not a classifier card", card_path.display()))?;
    if card.format != CLASSIFIER_FORMAT {
        bail!("{}: format {:?}, expected {CLASSIFIER_FORMAT:?}", card_path.display(), card.format);
    }
    card.network.validate().map_err(|e| anyhow::anyhow!("{}: {e}", card_path.display()))?;
    let weights = dir.join(WEIGHTS_FILE);
    // The card decides what `init` allocates: a weights file of another size is refused before it is
    // read or anything is built.
    let have =
        std::fs::metadata(&weights).with_context(|| format!("cannot read {}", weights.display()))?.len();
    cm_core::card::check_weights_len(have, card.network.parameters()).map_err(|e| {
        anyhow::anyhow!("{}: {e} (the network {} describes)", weights.display(), card_path.display())
    })?;
    let bytes = std::fs::read(&weights).with_context(|| format!("cannot read {}", weights.display()))?;
    if let Some(want) = &card.weights_sha256 {
        cm_core::card::check_sha256(&bytes, want).map_err(|e| {
            anyhow::anyhow!(
                "{}: {e} (the card's `weights_sha256`): the file is damaged or belongs to another classifier",
                weights.display()
            )
        })?;
    }
    let model = load_weights(card.network.init(device), bytes)
        .map_err(|e| anyhow::anyhow!("{}: {e}", weights.display()))?;
    Ok((card, model))
}

/// Refuses the classifier of `card` (read from `dir`) where it cannot read `model`'s images: another
/// dataset, resolution or channel count, or, where `classes` is given (reading each image's class),
/// another number of classes.
pub fn check_reads(
    dir: &Path,
    card: &ClassifierCard,
    model: &cm_core::Model,
    classes: Option<usize>,
) -> Result<()> {
    let [c, r] = model.image_shape().map_or([0, 0], |s| [s[0], s[1]]);
    let n = &card.network;
    if card.dataset != model.card.dataset
        || n.resolution != r
        || n.channels != c
        || classes.is_some_and(|k| n.classes != k)
    {
        bail!(
            "{}: a classifier of {} ({} classes at {} px, {} channels) cannot read {} ({}, {} classes at {r} px, {c} channels)",
            dir.display(),
            card.dataset,
            n.classes,
            n.resolution,
            n.channels,
            model.name(),
            model.card.dataset,
            model.denoiser.classes()
        );
    }
    Ok(())
}

/// Features `[n, features]` and class probabilities `[n, classes]` of every image in `set`.
pub fn embed(model: &LeNet, set: &ImageSet) -> Result<(Vec<f32>, Vec<f32>)> {
    embed_rows(model, &set.pixels, set.dim())
}

/// As [`embed`], for raw rows `[n, D]`.
pub fn embed_rows(model: &LeNet, pixels: &[f32], dim: usize) -> Result<(Vec<f32>, Vec<f32>)> {
    let device = model.devices().into_iter().next().unwrap_or_else(Device::flex);
    let (mut feats, mut probs) = (Vec::new(), Vec::new());
    for chunk in pixels.chunks(512 * dim) {
        let n = chunk.len() / dim;
        let x = Tensor::<1>::from_floats(chunk, &device).reshape([n, dim]);
        let f = model.features(x);
        probs.extend(host(softmax(model.logits(f.clone()), 1))?);
        feats.extend(host(f)?);
    }
    Ok((feats, probs))
}
