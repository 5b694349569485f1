//! `cm eval`: a model's quality against fresh data (2D distances, or the image metrics of the
//! dataset's classifier), printed as JSON and optionally stored in its card.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use cm_core::Model;
use cm_core::data2d::Dataset2d;

use super::{ImageSource, TauList, at_most, positive, tau_list};
use crate::backend::Backend;
use crate::data::{ImageDataset, Split};
use crate::eval::{evaluate, images::evaluate_images};
use crate::io::{CARD_FILE, load_model_dir, write_atomic};

/// Point counts for `cm eval`, whose MMD and energy distance cost O(n^2).
const MAX_EVAL_POINTS: u64 = 50_000;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    model: PathBuf,
    #[arg(long, value_parser = at_most(MAX_EVAL_POINTS, "points (the metrics are quadratic in n)"), allow_negative_numbers = true, default_value = "4096")]
    n: u64,
    #[arg(long, allow_negative_numbers = true, default_value = "1")]
    seed: u64,
    /// Teacher NFE (diffusion models).
    #[arg(long, value_parser = positive, allow_negative_numbers = true, default_value = "35")]
    teacher_nfe: u64,
    /// Also evaluate this decreasing tau list (consistency models), reported as `custom`.
    #[arg(long, value_parser = tau_list, allow_negative_numbers = true)]
    taus: Option<TauList>,
    /// Store the 1/2/4-step (or teacher) metrics in the model's card.
    #[arg(long)]
    write_card: bool,
    /// Class-conditional diffusion models: classifier-free guidance weight of the teacher row's ODE
    /// (1: none; not written to the card, which records the model unguided).
    #[arg(long, allow_negative_numbers = true, default_value = "1")]
    guidance: f64,
    #[command(flatten)]
    images: ImageSource,
}

/// Evaluates the model, prints the report, and stores its flat metrics in the card when asked.
pub fn run(a: Args) -> Result<()> {
    if a.guidance != 1.0 && a.write_card {
        bail!("--guidance {} with --write-card: the card records the model unguided; drop one", a.guidance);
    }
    let mut model = load_model_dir(&a.model, &Backend::Cpu.device()?)?;
    if a.guidance != 1.0 && model.is_consistency() {
        bail!(
            "--guidance {}: {} is a consistency model, sampled by jumps; guidance applies to a diffusion \
             model's ODE (a student distilled from a guided teacher has it built in)",
            a.guidance,
            a.model.display()
        );
    }
    if a.guidance != 1.0 && ImageDataset::from_name(&model.card.dataset).is_none() {
        bail!(
            "--guidance: {} is not an image model; guidance needs a class-conditional image model",
            a.model.display()
        );
    }
    let extra = a.taus.as_ref().map(|t| t.0.clone());
    let (metrics, json) = if let Some(set) = ImageDataset::from_name(&model.card.dataset) {
        image_report(&model, set, &a, extra).with_context(|| a.model.display().to_string())?
    } else {
        let dataset = Dataset2d::from_name(&model.card.dataset).with_context(|| {
            format!("the card names dataset {:?}, which cm does not know", model.card.dataset)
        })?;
        let report = evaluate(&model, dataset, a.n as usize, a.seed, a.teacher_nfe as usize, extra)
            .with_context(|| a.model.display().to_string())?;
        (report.flat_metrics(), serde_json::to_value(&report)?)
    };
    if a.write_card {
        model.card.metrics.extend(metrics);
        write_atomic(&a.model.join(CARD_FILE), model.card.to_json().as_bytes())?;
    }
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(())
}

/// The image report: the dataset's test and train splits at the model's resolution, and its classifier.
fn image_report(
    model: &Model,
    set: ImageDataset,
    a: &Args,
    extra: Option<Vec<f64>>,
) -> Result<(std::collections::BTreeMap<String, f64>, serde_json::Value)> {
    let test = a.images.images(model, set, Split::Test)?.take(a.n as usize);
    let train = a.images.images(model, set, Split::Train)?;
    let lenet = a.images.classifier(model, set)?;
    let report = evaluate_images(
        model,
        &lenet,
        &test,
        &train,
        set.name(),
        a.seed,
        (a.teacher_nfe as usize, a.guidance),
        extra,
    )?;
    Ok((report.flat_metrics(), serde_json::to_value(&report)?))
}
