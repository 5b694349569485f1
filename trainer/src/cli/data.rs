//! `cm data`: draws of a 2D dataset, or test images of an image dataset, to a file.

use std::path::PathBuf;

use anyhow::{Result, bail};
use cm_core::data2d::Dataset2d;

use super::{Output, at_most};
use crate::data::{ImageDataset, Split, dataset_names, load_images};
use crate::io::{Format, grid_png, write_atomic, write_points};

#[derive(clap::Args)]
pub struct Args {
    /// A 2D dataset (points) or an image dataset (its test images).
    #[arg(long)]
    name: String,
    /// Image datasets: the side in pixels the images are area-resized to.
    #[arg(long, value_parser = at_most(256, "pixels"), allow_negative_numbers = true)]
    resolution: Option<u64>,
    /// Image datasets read from a path (cifar10, folder).
    #[arg(long)]
    data_path: Option<PathBuf>,
    /// Images: `n` test images evenly spaced through the split, starting at index `seed`; as `.npy` rows
    /// in [-1, 1], or `.png` as one row of tiles with a 1-pixel white gutter (the page's editor examples).
    #[command(flatten)]
    output: Output,
}

/// Writes `n` points of the named 2D dataset, or `n` test images of the named image dataset.
pub fn run(a: Args) -> Result<()> {
    if let Some(d) = Dataset2d::from_name(&a.name) {
        if a.resolution.is_some() {
            bail!("--resolution is for image datasets; {} is a 2D dataset", a.name);
        }
        return write_points(&a.output.out, &d.sample(a.output.seed, 0, 0, a.output.n as usize), 2);
    }
    let Some(set) = ImageDataset::from_name(&a.name) else {
        bail!("unknown dataset {:?}, expected one of {:?}", a.name, dataset_names());
    };
    let Some(r) = a.resolution else {
        bail!("{} is an image dataset: give --resolution (the side in pixels)", a.name);
    };
    if a.output.n > 1024 {
        bail!("--n {}: at most 1024 images at a time", a.output.n);
    }
    let test = load_images(set, Split::Test, r as usize, a.data_path.as_deref())?;
    if test.len() < a.output.n as usize {
        let folder = if set == ImageDataset::Folder { " (every tenth file of the folder)" } else { "" };
        bail!("--n {}: the test split of {} holds {} image(s){folder}", a.output.n, a.name, test.len());
    }
    let images = test.spread(a.output.n as usize, a.output.seed as usize);
    match Format::of(&a.output.out, &[Format::Png, Format::Npy], "--out (an image dataset)")? {
        Format::Png => write_atomic(&a.output.out, &grid_png(&images.pixels, images.shape, images.len(), 1)),
        _ => write_points(&a.output.out, &images.pixels, images.dim()),
    }
}
