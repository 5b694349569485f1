//! `cm tune`: search a consistency model's `k`-step tau list on its quality metric, score the best
//! lists again on seeds the search never saw, print what every probe scored, and (with
//! `--write-card`) make the confirmed list the model's default `k`-step sampler.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use cm_core::card::MAX_TUNED_STEPS;
use cm_core::data2d::Dataset2d;

use super::{ImageSource, TauList, at_most, command_line, tau_list};
use crate::backend::Backend;
use crate::data::{ImageDataset, Split};
use crate::eval::tune::{Search, Target, Tuned, check, tune};
use crate::io::{CARD_FILE, load_model_dir, write_atomic};

/// Samples per probe: every probe holds them (and their features) in memory at once.
const MAX_TUNE_SAMPLES: u64 = 50_000;

/// Confirmation seeds: each scores every candidate list once more.
const MAX_CONFIRM_SEEDS: u64 = 16;

/// A confirmation seed count, 0 (no confirmation) to [`MAX_CONFIRM_SEEDS`].
fn confirm_seeds(s: &str) -> Result<u64, String> {
    match s.parse::<i128>() {
        Ok(v) if (0..=MAX_CONFIRM_SEEDS as i128).contains(&v) => Ok(v as u64),
        _ => Err(format!("must be a whole number from 0 to {MAX_CONFIRM_SEEDS}, got {s:?}")),
    }
}

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    model: PathBuf,
    /// The step count whose list is tuned (default 2, which tunes the one intermediate level).
    #[arg(long, value_parser = at_most(MAX_TUNED_STEPS as u64, "steps"), allow_negative_numbers = true)]
    steps: Option<u64>,
    /// Samples per probe. 1024 ranks levels a few percent apart; where the best and the current list
    /// score within a few percent, search again at 4096 (`cm eval`'s n) before trusting the order.
    #[arg(long, value_parser = at_most(MAX_TUNE_SAMPLES, "samples per probe"), allow_negative_numbers = true, default_value = "1024")]
    n: u64,
    /// Sampling seed of every probe; the confirmation uses the seeds after it. Keep them apart from
    /// the seeds you report `cm eval` at (1, 2, 3).
    #[arg(long, allow_negative_numbers = true, default_value = "1000")]
    seed: u64,
    /// Seeds after `--seed` on which the current list and the searches' best lists are scored again
    /// (fresh noise, and fresh training images for image models); the lowest mean is recommended and
    /// is what `--write-card` stores. 0 trusts the search's own seed.
    #[arg(long, value_parser = confirm_seeds, default_value = "3")]
    confirm: u64,
    /// No search: check this decreasing list (`steps` = its length + 1) against the model's current
    /// one on `--seed` and the confirmation seeds.
    #[arg(long, value_parser = tau_list, allow_negative_numbers = true)]
    taus: Option<TauList>,
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
    /// Store the recommended list in the card (only when it beats the model's current list on the
    /// confirmation seeds); the card's `<metric>_<k>step` metrics no longer describe the sampler and
    /// are removed.
    #[arg(long)]
    write_card: bool,
    #[command(flatten)]
    images: ImageSource,
}

/// Tunes, prints the JSON report, and stores the result in the card when asked.
pub fn run(a: Args) -> Result<()> {
    let steps = match (&a.taus, a.steps) {
        (Some(TauList(t)), Some(s)) if s != t.len() as u64 + 1 => {
            bail!("--steps {s} does not match --taus {t:?}, a list for {} steps", t.len() + 1)
        }
        (Some(TauList(t)), _) if t.is_empty() || t.len() >= MAX_TUNED_STEPS => {
            bail!("--taus {t:?}: give 1 to {} levels", MAX_TUNED_STEPS - 1)
        }
        (Some(TauList(t)), _) => t.len() + 1,
        (None, s) => s.unwrap_or(2) as usize,
    };
    if steps < 2 {
        bail!("--steps must be at least 2: one step has no intermediate level to tune, got {steps}");
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
    if a.write_card {
        // Found out before the search, not after it: a folder the card cannot be written into.
        let probe = a.model.join(format!(".cm-write-check-{}", std::process::id()));
        std::fs::write(&probe, b"")
            .with_context(|| format!("--write-card: cannot write into {}", a.model.display()))?;
        let _ = std::fs::remove_file(&probe);
    }
    if !model.is_consistency() {
        bail!(
            "{}: a {} model samples by its ODE; only consistency models have tau lists to tune",
            a.model.display(),
            model.card.method.name()
        );
    }
    let n = a.n as usize;
    let (grid, probes, confirm) = (a.grid as usize, a.probes as usize, a.confirm as usize);
    let run = |target: &Target| match &a.taus {
        Some(TauList(t)) => check(&model, target, t.clone(), n, a.seed, confirm),
        None => tune(&model, target, steps, a.search, n, a.seed, grid, probes, confirm),
    };
    let tuned = if let Some(set) = ImageDataset::from_name(&model.card.dataset) {
        let train = a.images.images(&model, set, Split::Train)?;
        if train.len() < n {
            bail!("--n {n}: the {} training split holds only {} images", set.name(), train.len());
        }
        let lenet = a.images.classifier(&model, set)?;
        run(&Target::Images { classifier: &lenet, train: &train })
    } else {
        let dataset = Dataset2d::from_name(&model.card.dataset).with_context(|| {
            format!("the card names dataset {:?}, which cm does not know", model.card.dataset)
        })?;
        run(&Target::Points(dataset))
    }
    .with_context(|| a.model.display().to_string())?;
    let (taus, value) = tuned.recommended();
    let on = if tuned.confirm.is_some() { "the confirmation seeds' mean" } else { "the search's seed" };
    if tuned.improves() {
        eprintln!(
            "tune: recommended {steps}-step list {taus:?}: {} {value:.4} against the current {:?}'s {:.4} on {on}",
            tuned.metric,
            tuned.current.taus,
            tuned.current_value()
        );
    } else {
        eprintln!(
            "tune: keep the current list {:?} ({} {:.4} on {on}; the search's best {:?} scored {:.4} on its seed)",
            tuned.current.taus,
            tuned.metric,
            tuned.current_value(),
            tuned.best.taus,
            tuned.best.value
        );
    }
    // The report first: a card that cannot be written must not cost the search's result.
    println!("{}", serde_json::to_string_pretty(&tuned)?);
    if a.write_card {
        if tuned.improves() {
            store(&mut model.card, &tuned);
            write_atomic(&a.model.join(CARD_FILE), model.card.to_json().as_bytes())?;
            eprintln!(
                "tune: {} now samples {steps} steps through {taus:?}; run `cm eval --model {} --write-card` to measure it",
                a.model.display(),
                a.model.display()
            );
        } else {
            eprintln!("tune: the card is unchanged");
        }
    }
    Ok(())
}

/// Makes the recommended list the card's `k`-step list, records how it was found, and drops the
/// `_<k>step` metrics measured with the list it replaces.
fn store(card: &mut cm_core::ModelCard, tuned: &Tuned) {
    let k = tuned.steps.to_string();
    let (taus, value) = tuned.recommended();
    card.taus.insert(k.clone(), taus.to_vec());
    let suffix = format!("_{k}step");
    card.metrics.retain(|name, _| !name.ends_with(&suffix));
    let record = serde_json::json!({
        "command": command_line(),
        "metric": tuned.metric,
        "search": tuned.search,
        "n": tuned.n,
        "seed": tuned.seed,
        "target": if tuned.metric == "fid" { "training images, evenly spaced" } else { "a fresh stream of the dataset" },
        "replaced": {"taus": tuned.current.taus, "value": tuned.current_value()},
        "value": value,
        "probes": tuned.probes.len(),
        "confirm_seeds": tuned.confirm.as_ref().map(|c| c.seeds.clone()),
    });
    let entry = card.provenance.entry("tune".into()).or_insert_with(|| serde_json::json!({}));
    if !entry.is_object() {
        *entry = serde_json::json!({});
    }
    entry[k] = record;
}
