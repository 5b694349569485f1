//! `cm tune`: the intermediate noise levels of `k`-step consistency sampling, chosen by a search on the
//! model's own quality metric, as the CM paper picks its few-step time points by their FID rather than
//! by rule. Three searches:
//! - [`Search::Centre`] varies one number, the centre `c` of the `k`-step list
//!   (`schedule::taus_around`: `c` itself for two steps, a geometric spread around it for more);
//! - [`Search::Greedy`] chooses the levels one at a time, largest first: `tau_1` as the two-step level,
//!   then `tau_2` below it with `tau_1` kept, scored as three-step sampling, and so on to `k` steps;
//! - [`Search::Both`] runs the two and keeps the better `k`-step list (at four steps greedy won on seven
//!   of eight bundled models, centre on Fashion-MNIST's iCT).
//!
//! Each one-dimensional search runs over log tau: a grid first, then golden-section steps inside the
//! best grid point's neighbours. Every probe draws from the same seed (common random numbers), so the
//! objective changes only with the list. The target is data the final evaluation does not use: the
//! training split for images, a separate stream for 2D datasets.
//!
//! The best of 15-60 probes on one seed is partly the luckiest: a list whose first level is large
//! draws nearly independent samples, and among many such draws one wins by chance (mnist-sct's
//! two-step search scored 16.9 at 1.81 against 18.5 at sCM's t_mid on its seed; on each of the three
//! seeds after it t_mid won). So the search's candidates and the current list are scored again on
//! seeds the search never saw ([`Confirmation`]: fresh noise, and for images a fresh set of training
//! images per seed), and the list with the lowest mean there is the one recommended; the current list
//! wins ties.

use anyhow::{Result, bail};
use cm_core::data2d::Dataset2d;
use cm_core::schedule::taus_around;
use cm_core::{Model, TauRequest};
use serde::Serialize;

use super::features::{Gaussian, frechet_distance};
use super::lenet::LeNet;
use super::metrics::sliced_w2;
use super::{eval_data, model_points};
use crate::classifier::embed_rows;
use crate::data::ImageSet;

/// A metric of samples `[n, D]` (lower is better).
type Score<'a> = dyn Fn(&[f32]) -> Result<f64> + 'a;

/// How the levels are searched (see the module comment).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Search {
    /// One number: the centre of `schedule::taus_around`'s geometric list.
    Centre,
    /// One level at a time, each with the larger ones fixed.
    Greedy,
    /// Both, keeping the better list (neither wins on every bundled model).
    Both,
    /// No search: a list given to `cm tune --taus`, checked against the current one.
    #[value(skip)]
    Given,
}

/// One evaluated list.
#[derive(Clone, Debug, Serialize)]
pub struct Probe {
    /// `log` of what the search moves: the list's centre, or in a greedy search the level being chosen.
    pub log_centre: f64,
    pub taus: Vec<f64>,
    /// The metric (lower is better).
    pub value: f64,
}

/// What a tuning run found.
#[derive(Clone, Debug, Serialize)]
pub struct Tuned {
    pub steps: usize,
    pub search: Search,
    /// `fid` (FID-LeNet against training images) or `sliced_w2` (against a fresh 2D stream).
    pub metric: &'static str,
    pub n: usize,
    pub seed: u64,
    /// The model's list before tuning (a card's earlier tuned list, or the built-in default).
    pub current: Probe,
    /// The best `steps`-step list the search found (on its own seed).
    pub best: Probe,
    /// Every probe, in the order evaluated (a greedy search's first stages sample fewer steps: a
    /// probe's step count is its list's length plus one).
    pub probes: Vec<Probe>,
    /// The current list and the search's candidates scored again on seeds the search never saw
    /// (absent when asked for no confirmation seeds).
    pub confirm: Option<Confirmation>,
}

/// Lists scored on the confirmation seeds.
#[derive(Clone, Debug, Serialize)]
pub struct Confirmation {
    /// The sampling seeds (each also picks its own reference data).
    pub seeds: Vec<u64>,
    /// The current list first, then each distinct candidate.
    pub lists: Vec<Checked>,
    /// Index into `lists` of the lowest mean (0, the current list, on a tie).
    pub chosen: usize,
}

/// One list's scores on the confirmation seeds.
#[derive(Clone, Debug, Serialize)]
pub struct Checked {
    /// `current`, `centre`, `greedy` (the search that proposed it) or `given` (`cm tune --taus`).
    pub from: &'static str,
    pub taus: Vec<f64>,
    /// One value per confirmation seed, in order.
    pub values: Vec<f64>,
    pub mean: f64,
}

impl Tuned {
    /// Whether a list beat the one the model already had: on the confirmation seeds where they were
    /// scored, otherwise on the search's seed.
    pub fn improves(&self) -> bool {
        match &self.confirm {
            Some(c) => c.chosen != 0,
            None => self.best.value < self.current.value,
        }
    }

    /// The recommended list (the confirmed winner, or the search's best without confirmation) and the
    /// value it is recommended on.
    pub fn recommended(&self) -> (&[f64], f64) {
        match &self.confirm {
            Some(c) => (&c.lists[c.chosen].taus, c.lists[c.chosen].mean),
            None => (&self.best.taus, self.best.value),
        }
    }

    /// What the current list scores on the same footing as [`Self::recommended`].
    pub fn current_value(&self) -> f64 {
        match &self.confirm {
            Some(c) => c.lists[0].mean,
            None => self.current.value,
        }
    }
}

/// The `k`-th confirmation seed after the search's `seed` (`k` from 1), or an error where it would
/// pass `u64::MAX`.
pub fn confirmation_seeds(seed: u64, count: usize) -> Result<Vec<u64>> {
    (1..=count as u64)
        .map(|k| {
            seed.checked_add(k).ok_or_else(|| {
                anyhow::anyhow!("--seed {seed}: the {count} confirmation seeds after it pass 2^64 - 1")
            })
        })
        .collect()
}

/// Minimises `f` over `[lo, hi]` in `probes` evaluations: a grid of `grid` evenly spaced points
/// (ends included), then golden-section search inside the bracket formed by the best grid point's
/// neighbours. Returns every `(x, f(x))` in order; an error from `f` stops the search.
pub fn minimise(
    lo: f64,
    hi: f64,
    grid: usize,
    probes: usize,
    mut f: impl FnMut(f64) -> Result<f64>,
) -> Result<Vec<(f64, f64)>> {
    if !(lo.is_finite() && hi.is_finite() && lo < hi) {
        bail!("the search interval [{lo}, {hi}] is empty");
    }
    if grid < 3 || probes < grid {
        bail!("a search needs a grid of at least 3 points and at least as many probes ({grid} and {probes})");
    }
    let mut seen = Vec::with_capacity(probes);
    let mut eval = |x: f64, seen: &mut Vec<(f64, f64)>| -> Result<f64> {
        let v = f(x)?;
        seen.push((x, v));
        Ok(v)
    };
    let at = |i: usize| lo + (hi - lo) * i as f64 / (grid - 1) as f64;
    for i in 0..grid {
        eval(at(i), &mut seen)?;
    }
    let best = (0..grid).min_by(|&i, &j| seen[i].1.total_cmp(&seen[j].1)).expect("grid of at least 3");
    let (mut a, mut b) = (at(best.saturating_sub(1)), at((best + 1).min(grid - 1)));
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let (mut c, mut d) = (b - g * (b - a), a + g * (b - a));
    let left = probes - grid;
    if left == 0 {
        return Ok(seen);
    }
    let mut fc = eval(c, &mut seen)?;
    if left == 1 {
        return Ok(seen);
    }
    let mut fd = eval(d, &mut seen)?;
    for _ in 2..left {
        if fc < fd {
            (b, d, fd) = (d, c, fc);
            c = b - g * (b - a);
            fc = eval(c, &mut seen)?;
        } else {
            (a, c, fc) = (c, d, fd);
            d = a + g * (b - a);
            fd = eval(d, &mut seen)?;
        }
    }
    Ok(seen)
}

/// What a tuned list is scored against.
pub enum Target<'a> {
    /// FID-LeNet against `n` images spread through `train` (the training split), features from
    /// `classifier`; each confirmation seed starts the spread one image later, so it sees other images.
    Images { classifier: &'a LeNet, train: &'a ImageSet },
    /// Sliced W2 against a fresh stream of a 2D dataset (its own stream for each seed).
    Points(Dataset2d),
}

/// The objective of stream `k` (0: the search, `k >= 1`: the `k`-th confirmation seed `seed`).
fn scorer<'a>(target: &'a Target, dim: usize, n: usize, seed: u64, k: usize) -> Result<Box<Score<'a>>> {
    Ok(match target {
        Target::Images { classifier, train } => {
            if train.dim() != dim {
                bail!("the reference images hold {} values each, the model {dim}", train.dim());
            }
            let reference = train.spread(n, k);
            let (f, _) = embed_rows(classifier, &reference.pixels, dim)?;
            let d = f.len() / reference.len().max(1);
            let gaussian = Gaussian::fit(&f, d);
            Box::new(move |pixels: &[f32]| {
                let (f, _) = embed_rows(classifier, pixels, dim)?;
                Ok(frechet_distance(&gaussian, &Gaussian::fit(&f, d)))
            })
        }
        Target::Points(dataset) => {
            // Stream 2 of the evaluation seed space: `cm eval` uses draws 0 (data) and 1 (noise floor).
            let data = eval_data(*dataset, n, seed, 2);
            Box::new(move |pts: &[f32]| Ok(sliced_w2(pts, &data, dim, 128, seed)))
        }
    })
}

/// `taus` scored by `score` on `n` samples of `seed`.
fn probe(
    model: &Model,
    score: &Score,
    taus: Vec<f64>,
    log_centre: f64,
    n: usize,
    seed: u64,
) -> Result<Probe> {
    let plan = model.consistency_plan(TauRequest::Given(taus.clone())).map_err(anyhow::Error::msg)?;
    let value = score(&model_points(model, &plan, n, seed)?)?;
    eprintln!("tune: taus {taus:?} -> {value:.4}");
    Ok(Probe { log_centre, taus, value })
}

/// The model's current `steps`-step list (a card's tuned list, or the built-in one), scored by `score`.
fn current(model: &Model, score: &Score, steps: usize, n: usize, seed: u64) -> Result<Probe> {
    let taus = model.taus(TauRequest::Default { steps }).map_err(anyhow::Error::msg)?.as_slice().to_vec();
    probe(model, score, taus.clone(), log_centre(&taus), n, seed)
}

/// The geometric centre of a list, in log: what a centre search would call it.
fn log_centre(taus: &[f64]) -> f64 {
    taus.iter().map(|t| t.ln()).sum::<f64>() / taus.len().max(1) as f64
}

/// Scores the current list and each distinct candidate on the confirmation `seeds`; `None` for none.
fn confirmation(
    model: &Model,
    target: &Target,
    current: &Probe,
    candidates: Vec<(&'static str, Vec<f64>)>,
    n: usize,
    seeds: Vec<u64>,
) -> Result<Option<Confirmation>> {
    if seeds.is_empty() {
        return Ok(None);
    }
    let mut lists = vec![Checked { from: "current", taus: current.taus.clone(), values: vec![], mean: 0.0 }];
    for (from, taus) in candidates {
        if lists.iter().all(|l| l.taus != taus) {
            lists.push(Checked { from, taus, values: vec![], mean: 0.0 });
        }
    }
    for (k, &s) in seeds.iter().enumerate() {
        let score = scorer(target, model.dim(), n, s, k + 1)?;
        for list in &mut lists {
            eprint!("confirm (seed {s}): ");
            list.values.push(probe(model, &*score, list.taus.clone(), 0.0, n, s)?.value);
        }
    }
    for list in &mut lists {
        list.mean = list.values.iter().sum::<f64>() / list.values.len() as f64;
    }
    let mut chosen = 0;
    for (i, list) in lists.iter().enumerate().skip(1) {
        if list.mean < lists[chosen].mean {
            chosen = i;
        }
    }
    Ok(Some(Confirmation { seeds, lists, chosen }))
}

/// Searches the `steps`-step list of a consistency model on `n` samples of seed `seed`, `probes`
/// evaluations per one-dimensional search (a grid of `grid` first): one search for
/// [`Search::Centre`], `steps - 1` for [`Search::Greedy`], `steps` for [`Search::Both`] (one for two
/// steps); then scores the current list and the searches' best lists again on `confirm` seeds after
/// `seed` (none for 0).
#[allow(clippy::too_many_arguments)]
pub fn tune(
    model: &Model,
    target: &Target,
    steps: usize,
    search: Search,
    n: usize,
    seed: u64,
    grid: usize,
    probes: usize,
    confirm: usize,
) -> Result<Tuned> {
    if steps < 2 {
        bail!("--steps must be at least 2: one step has no intermediate level to tune");
    }
    // Before the search, so a seed without room for its confirmation seeds fails at once.
    let seeds = confirmation_seeds(seed, confirm)?;
    let range = model.denoiser.range;
    let score = scorer(target, model.dim(), n, seed, 0)?;
    let current = current(model, &*score, steps, n, seed)?;
    let (lo, hi) = ((range.sigma_min * 1.1).ln(), (range.sigma_max * 0.9).ln());
    let mut probes_done = Vec::new();
    let mut search_one = |lo: f64, hi: f64, list: &dyn Fn(f64) -> Vec<f64>| -> Result<Probe> {
        let first = probes_done.len();
        minimise(lo, hi, grid, probes, |x| {
            let p = probe(model, &*score, list(x), x, n, seed)?;
            let v = p.value;
            probes_done.push(p);
            Ok(v)
        })?;
        probes_done[first..]
            .iter()
            .filter(|p| p.value.is_finite())
            .min_by(|a, b| a.value.total_cmp(&b.value))
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no probe gave a finite {}", metric_name(target)))
    };
    let centre = |search_one: &mut SearchOne| {
        search_one(lo, hi, &|log_c: f64| taus_around(log_c.exp(), steps, range.sigma_min, range.sigma_max))
    };
    let found: Vec<(&'static str, Probe)> = match search {
        Search::Centre => vec![("centre", centre(&mut search_one)?)],
        Search::Greedy => vec![("greedy", greedy(&mut search_one, steps, lo, hi)?)],
        // Two steps: both searches move the one level over the same interval.
        Search::Both if steps == 2 => vec![("centre", centre(&mut search_one)?)],
        Search::Both => {
            let c = centre(&mut search_one)?;
            vec![("centre", c), ("greedy", greedy(&mut search_one, steps, lo, hi)?)]
        }
        Search::Given => bail!("a given list is checked by `check`, not searched"),
    };
    let best = found.iter().map(|(_, p)| p).min_by(|a, b| a.value.total_cmp(&b.value)).cloned();
    let best = best.expect("every search proposes a list");
    let candidates = found.into_iter().map(|(from, p)| (from, p.taus)).collect();
    let confirm = confirmation(model, target, &current, candidates, n, seeds)?;
    Ok(Tuned {
        steps,
        search,
        metric: metric_name(target),
        n,
        seed,
        current,
        best,
        probes: probes_done,
        confirm,
    })
}

/// Scores a given list against the model's current one of the same step count: on `n` samples of
/// `seed`, then on `confirm` seeds after it. No search (`cm tune --taus`).
pub fn check(
    model: &Model,
    target: &Target,
    taus: Vec<f64>,
    n: usize,
    seed: u64,
    confirm: usize,
) -> Result<Tuned> {
    let steps = taus.len() + 1;
    let seeds = confirmation_seeds(seed, confirm)?;
    let score = scorer(target, model.dim(), n, seed, 0)?;
    let given = probe(model, &*score, taus.clone(), log_centre(&taus), n, seed)?;
    let current = current(model, &*score, steps, n, seed)?;
    let confirm = confirmation(model, target, &current, vec![("given", given.taus.clone())], n, seeds)?;
    Ok(Tuned {
        steps,
        search: Search::Given,
        metric: metric_name(target),
        n,
        seed,
        current,
        best: given.clone(),
        probes: vec![given],
        confirm,
    })
}

/// One search over `[lo, hi]` of log tau, turning the searched number into a list; returns the best
/// finite probe.
type SearchOne<'a> = dyn FnMut(f64, f64, &dyn Fn(f64) -> Vec<f64>) -> Result<Probe> + 'a;

/// A greedy search's next level is at most this fraction of the one above it.
const GREEDY_GAP: f64 = 0.98;

/// The `steps - 1` levels one at a time, largest first, each searched with the levels above it fixed
/// and scored at the step count it completes; returns the best `steps`-step probe.
fn greedy(search_one: &mut SearchOne, steps: usize, lo: f64, hi: f64) -> Result<Probe> {
    let g = -GREEDY_GAP.ln();
    let mut best: Option<Probe> = None;
    for level in 0..steps - 1 {
        // The levels chosen so far stay; the next goes strictly below the last (by `g` of log tau),
        // and high enough that the levels still to come fit between it and sigma_min (`2 g` each).
        let prefix = best.as_ref().map_or_else(Vec::new, |p| p.taus.clone());
        let floor = lo + 2.0 * g * (steps - 2 - level) as f64;
        let top = prefix.last().map_or(hi, |t| t.ln() - g);
        best = Some(search_one(floor, top, &|log_t: f64| {
            let mut taus = prefix.clone();
            taus.push(log_t.exp());
            taus
        })?);
    }
    best.ok_or_else(|| anyhow::anyhow!("{steps} steps have no level to search"))
}

fn metric_name(target: &Target) -> &'static str {
    match target {
        Target::Images { .. } => "fid",
        Target::Points(_) => "sliced_w2",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimise_finds_the_minimum_of_a_unimodal_function() {
        // Minimum at 1.3 inside [-6, 4.3], off every grid point.
        let seen = minimise(-6.0, 4.3, 9, 20, |x| Ok((x - 1.3).powi(2) + 0.5)).unwrap();
        assert_eq!(seen.len(), 20);
        let best = seen.iter().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
        assert!((best.0 - 1.3).abs() < 0.05, "best x {}", best.0);
    }

    #[test]
    fn minimise_handles_a_minimum_at_an_end() {
        let seen = minimise(0.0, 1.0, 5, 12, Ok).unwrap();
        let best = seen.iter().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
        assert_eq!(best.0, 0.0);
        assert!(seen.iter().all(|(x, _)| (0.0..=1.0).contains(x)));
    }

    #[test]
    fn minimise_spends_exactly_its_probes_and_refuses_bad_requests() {
        for probes in [3, 4, 5, 9] {
            assert_eq!(minimise(0.0, 1.0, 3, probes, |x| Ok(x * x)).unwrap().len(), probes);
        }
        assert!(minimise(1.0, 1.0, 3, 5, Ok).is_err());
        assert!(minimise(0.0, 1.0, 2, 5, Ok).is_err());
        assert!(minimise(0.0, 1.0, 5, 4, Ok).is_err());
        let mut calls = 0;
        let stopped = minimise(0.0, 1.0, 5, 9, |_| {
            calls += 1;
            if calls == 2 { bail!("broken") } else { Ok(0.0) }
        });
        assert!(stopped.is_err());
        assert_eq!(calls, 2);
    }
}
