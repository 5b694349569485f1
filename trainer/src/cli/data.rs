//! `cm data`: samples of a 2D dataset to a file.

use anyhow::{Result, bail};
use cm_core::data2d::Dataset2d;

use super::Output;
use crate::io::write_points;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    name: String,
    #[command(flatten)]
    output: Output,
}

/// Writes `n` points of the named dataset.
pub fn run(a: Args) -> Result<()> {
    let Some(d) = Dataset2d::from_name(&a.name) else {
        let names: Vec<_> = Dataset2d::ALL.iter().map(|d| d.name()).collect();
        bail!("unknown dataset {:?}, expected one of {names:?}", a.name);
    };
    write_points(&a.output.out, &d.sample(a.output.seed, 0, 0, a.output.n as usize), 2)
}
