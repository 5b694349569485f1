//! `cm tune`: search a consistency model's `k`-step tau list on its quality metric, print what every
//! probe scored, and (with `--write-card`) make the best list the model's default `k`-step sampler.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use cm_core::card::MAX_TUNED_STEPS;
use cm_core::data2d::Dataset2d;

use super::{ImageSource, at_most, command_line};
use crate::backend::Backend;
use crate::data::{ImageDataset, Split};
use crate::eval::tune::{Search, Target, Tuned, tune};
use crate::io::{CARD_FILE, load_model_dir, write_atomic};

/// Samples per probe: every probe holds them (and their features) in memory at once.
const MAX_TUNE_SAMPLES: u64 = 50_000;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    model: PathBuf,
    /// The step count whose list is tuned (2 tunes the one intermediate level).
    #[arg(long, value_parser = at_most(MAX_TUNED_STEPS as u64, "steps"), allow_negative_numbers = true, default_value = "2")]
    steps: u64,
    /// Samples per probe. 1024 ranks levels a few percent apart; where the best and the current list
    /// score within a few percent, search again at 4096 (`cm eval`'s n) before trusting the order.
    #[arg(long, value_parser = at_most(MAX_TUNE_SAMPLES, "samples per probe"), allow_negative_numbers = true, default_value = "1024")]
    n: u64,
    /// Sampling seed of every probe. Keep it apart from the seeds you report `cm eval` at (1, 2, 3).
    #[arg(long, default_value = "1000")]
    seed: u64,
    /// `centre` moves the whole list by one number (its geometric centre); `greedy` chooses the levels
    /// one at a time, largest first, each scored at the step count it completes (`--probes` for each
    /// of the `--steps - 1` levels); `both` runs the two and keeps the better list. All are the same
    /// search for two steps.
    #[arg(long, value_enum, default_value = "both")]
    search: Search,
    /// Probes per one-dimensional search, the grid included (greedy searches each of the `--steps - 1`
    /// levels, `both` adds the centre search).
    #[arg(long, value_parser = at_most(200, "probes"), allow_negative_numbers = true, default_value = "15")]
    probes: u64,
    /// Points of the first, evenly spaced grid over log tau (at least 3).
    #[arg(long, value_parser = at_most(200, "grid points"), allow_negative_numbers = true, default_value = "9")]
    grid: u64,
    /// Store the best list in the card (only when it beats the model's current list); the card's
    /// `<metric>_<k>step` metrics no longer describe the sampler and are removed.
    #[arg(long)]
    write_card: bool,
    #[command(flatten)]
    images: ImageSource,
}

/// Tunes, prints the JSON report, and stores the result in the card when asked.
pub fn run(a: Args) -> Result<()> {
    if a.steps < 2 {
        bail!("--steps must be at least 2: one step has no intermediate level to tune, got {}", a.steps);
    }
    if a.grid < 3 || a.probes < a.grid {
        bail!(
            "--grid must be at least 3 and --probes at least --grid, got --grid {} --probes {}",
            a.grid,
            a.probes
        );
    }
    let device = Backend::Cpu.device()?;
    let mut model = load_model_dir(&a.model, &device)?;
    if !model.is_consistency() {
        bail!(
            "{}: a {} model samples by its ODE; only consistency models have tau lists to tune",
            a.model.display(),
            model.card.method.name()
        );
    }
    let (steps, n) = (a.steps as usize, a.n as usize);
    let (grid, probes) = (a.grid as usize, a.probes as usize);
    let tuned = if let Some(set) = ImageDataset::from_name(&model.card.dataset) {
        let train = a.images.images(&model, set, Split::Train)?;
        if train.len() < n {
            bail!("--n {n}: the {} training split holds only {} images", set.name(), train.len());
        }
        let reference = train.spread(n, 0);
        let lenet = a.images.classifier(&model, set)?;
        tune(
            &model,
            &Target::Images { classifier: &lenet, reference: &reference },
            steps,
            a.search,
            n,
            a.seed,
            grid,
            probes,
        )
    } else {
        let dataset = Dataset2d::from_name(&model.card.dataset).with_context(|| {
            format!("the card names dataset {:?}, which cm does not know", model.card.dataset)
        })?;
        tune(&model, &Target::Points(dataset), steps, a.search, n, a.seed, grid, probes)
    }
    .with_context(|| a.model.display().to_string())?;
    if a.write_card {
        if tuned.improves() {
            store(&mut model.card, &tuned);
            write_atomic(&a.model.join(CARD_FILE), model.card.to_json().as_bytes())?;
            eprintln!(
                "tune: {} now samples {steps} steps through {:?}; run `cm eval --model {} --write-card` to measure it",
                a.model.display(),
                tuned.best.taus,
                a.model.display()
            );
        } else {
            eprintln!("tune: no probe beat the current list {:?}; the card is unchanged", tuned.current.taus);
        }
    }
    println!("{}", serde_json::to_string_pretty(&tuned)?);
    Ok(())
}

/// Makes `tuned.best` the card's `k`-step list, records how it was found, and drops the `_<k>step`
/// metrics measured with the list it replaces.
fn store(card: &mut cm_core::ModelCard, tuned: &Tuned) {
    let k = tuned.steps.to_string();
    card.taus.insert(k.clone(), tuned.best.taus.clone());
    let suffix = format!("_{k}step");
    card.metrics.retain(|name, _| !name.ends_with(&suffix));
    let record = serde_json::json!({
        "command": command_line(),
        "metric": tuned.metric,
        "search": tuned.search,
        "n": tuned.n,
        "seed": tuned.seed,
        "target": if tuned.metric == "fid" { "training images, evenly spaced" } else { "a fresh stream of the dataset" },
        "replaced": {"taus": tuned.current.taus, "value": tuned.current.value},
        "value": tuned.best.value,
        "probes": tuned.probes.len(),
    });
    let entry = card.provenance.entry("tune".into()).or_insert_with(|| serde_json::json!({}));
    if !entry.is_object() {
        *entry = serde_json::json!({});
    }
    entry[k] = record;
}
