//! `cm data`: samples of a 2D dataset to a file.

use std::path::PathBuf;

use anyhow::{Result, bail};
use cm_core::data2d::Dataset2d;

use super::{MAX_POINTS, at_most};
use crate::io::write_points;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    name: String,
    #[arg(long, value_parser = at_most(MAX_POINTS, "points at a time"), allow_negative_numbers = true, default_value = "4096")]
    n: u64,
    #[arg(long, default_value = "0")]
    seed: u64,
    #[arg(long)]
    out: PathBuf,
}

/// Writes `n` points of the named dataset.
pub fn run(a: Args) -> Result<()> {
    let Some(d) = Dataset2d::from_name(&a.name) else {
        let names: Vec<_> = Dataset2d::ALL.iter().map(|d| d.name()).collect();
        bail!("unknown dataset {:?}, expected one of {names:?}", a.name);
    };
    write_points(&a.out, &d.sample(a.seed, 0, 0, a.n as usize), 2)
}
