//! `cm eval` for image models: our own FID (FID-LeNet), KID, precision/recall, class statistics and
//! nearest-training-image distance, all from the dataset's LeNet classifier (`cm classifier`).

use std::collections::BTreeMap;

use anyhow::Result;
use cm_core::{Model, Plan};
use serde::Serialize;

use super::features::{Gaussian, class_stats, frechet_distance, kid, nearest_distances, precision_recall};
use super::lenet::LeNet;
use super::{ClassPick, model_points_of};
use crate::classifier::embed_rows;
use crate::data::ImageSet;

/// Queries of the nearest-training-image distance (it is `O(queries · train)`).
const NN_QUERIES: usize = 500;

/// Quality of one set of images against the test split.
#[derive(Clone, Debug, Serialize)]
pub struct ImageEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nfe: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub taus: Option<Vec<f64>>,
    /// Classifier-free guidance of a diffusion model's ODE, where not 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guidance: Option<f64>,
    /// Fréchet distance between LeNet-feature Gaussians (the FID formula on our classifier).
    pub fid: f64,
    /// Kernel distance (cubic polynomial kernel, unbiased MMD^2), mean over subsets.
    pub kid: f64,
    /// Improved precision / recall (k = 3 nearest neighbours in feature space).
    pub precision: f64,
    pub recall: f64,
    /// KL divergence of the predicted-class histogram to uniform.
    pub class_kl: f64,
    /// Mean max class probability (confidence: recognisable images score high).
    pub max_prob: f64,
    /// Mean RMS pixel distance from each image to its nearest training image (memorisation: near 0).
    pub nn_train: f64,
    /// Class-conditional models: the share of samples the classifier puts in the class they were drawn
    /// from (sample `i` from class `i mod classes`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class_accuracy: Option<f64>,
}

/// Everything `cm eval` prints for an image model.
#[derive(Clone, Debug, Serialize)]
pub struct ImageReport {
    pub dataset: String,
    pub resolution: usize,
    pub n: usize,
    pub seed: u64,
    /// Training images against the test split: what a perfect sampler would score at this `n`.
    pub reference: ImageEntry,
    pub consistency: BTreeMap<String, ImageEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub teacher: Option<ImageEntry>,
}

impl ImageReport {
    /// Flat `name -> value` metrics for the model card.
    pub fn flat_metrics(&self) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        let mut put = |suffix: &str, e: &ImageEntry| {
            for (k, v) in [
                ("fid", e.fid),
                ("kid", e.kid),
                ("precision", e.precision),
                ("recall", e.recall),
                ("class_kl", e.class_kl),
                ("max_prob", e.max_prob),
                ("nn_train", e.nn_train),
            ] {
                m.insert(format!("{k}_{suffix}"), v);
            }
            if let Some(a) = e.class_accuracy {
                m.insert(format!("class_accuracy_{suffix}"), a);
            }
        };
        put("reference", &self.reference);
        for (k, e) in self.consistency.iter().filter(|(k, _)| *k != "custom") {
            put(&format!("{k}step"), e);
        }
        if let Some(t) = &self.teacher {
            put(&format!("heun{}", t.nfe.unwrap_or(0)), t);
        }
        m
    }
}

/// Real images embedded once, compared against every sampler.
pub struct Reference {
    features: Vec<f32>,
    gaussian: Gaussian,
    train_pixels: Vec<f32>,
    dim: usize,
    classes: usize,
    feature_dim: usize,
}

impl Reference {
    /// `test`: the images samples are compared with; `train`: for the memorisation distance.
    pub fn new(classifier: &LeNet, test: &ImageSet, train: &ImageSet) -> Result<Self> {
        let (features, _) = embed_rows(classifier, &test.pixels, test.dim())?;
        let feature_dim = features.len() / test.len().max(1);
        Ok(Self {
            gaussian: Gaussian::fit(&features, feature_dim),
            features,
            train_pixels: train.pixels.clone(),
            dim: test.dim(),
            classes: test.classes.max(2),
            feature_dim,
        })
    }

    /// Scores images `[n, D]`; `drawn_from`: a class-conditional model's classes, image `i` drawn from class
    /// `i mod drawn_from` (scored by `class_accuracy`).
    pub fn score(
        &self,
        classifier: &LeNet,
        pixels: &[f32],
        seed: u64,
        drawn_from: Option<usize>,
    ) -> Result<ImageEntry> {
        let (f, probs) = embed_rows(classifier, pixels, self.dim)?;
        let d = self.feature_dim;
        let (precision, recall) = precision_recall(&self.features, &f, d, 3);
        let stats = class_stats(&probs, self.classes);
        let class_accuracy = drawn_from.filter(|&k| k > 0).map(|k| {
            let hits = (stats.predicted.iter().enumerate()).filter(|&(i, &c)| c == i % k).count();
            hits as f64 / stats.predicted.len().max(1) as f64
        });
        Ok(ImageEntry {
            nfe: None,
            taus: None,
            guidance: None,
            fid: frechet_distance(&self.gaussian, &Gaussian::fit(&f, d)),
            kid: kid(&self.features, &f, d, 10, 1000, seed).0,
            precision,
            recall,
            class_kl: stats.kl_to_uniform,
            max_prob: stats.mean_max_prob,
            nn_train: self.nn_train(pixels),
            class_accuracy,
        })
    }

    /// Mean RMS distance of the first [`NN_QUERIES`] images to their nearest training image.
    pub fn nn_train(&self, pixels: &[f32]) -> f64 {
        let queries = &pixels[..pixels.len().min(NN_QUERIES * self.dim)];
        let nn = nearest_distances(queries, &self.train_pixels, self.dim);
        nn.iter().sum::<f64>() / nn.len().max(1) as f64
    }
}

/// Evaluates an image model on `n` samples by each of [`super::plans`] (1, 2 and 4 steps and `extra_taus`
/// for consistency models, Heun at `teacher_nfe` for diffusion models). `test` holds at least `n` images;
/// `train` is the training split (`n` images evenly spaced through it are the reference row: the first
/// `n` were a biased row for a split sorted by name, as emoji's; before this, MNIST's reference used the
/// first `n`).
#[allow(clippy::too_many_arguments)]
pub fn evaluate_images(
    model: &Model,
    classifier: &LeNet,
    test: &ImageSet,
    train: &ImageSet,
    dataset: &str,
    seed: u64,
    (teacher_nfe, guidance): (usize, f64),
    extra_taus: Option<Vec<f64>>,
) -> Result<ImageReport> {
    let n = test.len();
    let reference = Reference::new(classifier, test, train)?;
    // Training images that are not the ones the memorisation distance searches would score 0 there:
    // the reference row's `nn_train` uses test images instead, the value a non-memorising model shows.
    let mut ref_entry = reference.score(classifier, &train.spread(n, 0).pixels, seed, None)?;
    ref_entry.nn_train = reference.nn_train(&test.pixels);
    let mut consistency = BTreeMap::new();
    let mut teacher = None;
    for (name, plan) in super::plans(model, teacher_nfe, extra_taus)? {
        let w = if matches!(plan, Plan::Ode { .. }) { guidance } else { 1.0 };
        let pts = model_points_of(model, &plan, n, seed, ClassPick::Balanced, w)?;
        let mut e = reference.score(classifier, &pts, seed, Some(model.denoiser.classes()))?;
        e.nfe = Some(plan.nfe());
        e.guidance = (w != 1.0).then_some(w);
        match plan {
            Plan::Consistency(taus) => {
                e.taus = Some(taus.as_slice().to_vec());
                consistency.insert(name, e);
            }
            Plan::Ode { .. } => teacher = Some(e),
        }
    }
    Ok(ImageReport {
        dataset: dataset.into(),
        resolution: test.shape[1],
        n,
        seed,
        reference: ref_entry,
        consistency,
        teacher,
    })
}
