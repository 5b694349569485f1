//! `cm classifier`: trains the LeNet behind the image metrics ([`crate::classifier`]).

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use super::{at_most, command_line, positive};
use crate::backend::Backend;
use crate::classifier::{CARD_FILE, ClassifierRecipe, WEIGHTS_FILE, classifier_dir, train_classifier};
use crate::data::{ImageDataset, Split, load_images};
use crate::io::check_replaceable_dir;

#[derive(clap::Args)]
pub struct Args {
    /// Image dataset: mnist, fashion-mnist, emoji, emoji-open, cifar10.
    #[arg(long)]
    dataset: String,
    #[arg(long, value_parser = at_most(256, "pixels"), allow_negative_numbers = true)]
    resolution: u64,
    #[arg(long)]
    data_path: Option<PathBuf>,
    #[arg(long, value_parser = positive, allow_negative_numbers = true, default_value = "3000")]
    steps: u64,
    #[arg(long, value_parser = at_most(4096, "images per batch"), allow_negative_numbers = true, default_value = "128")]
    batch: u64,
    #[arg(long, allow_negative_numbers = true, default_value = "0")]
    seed: u64,
    /// Output folder (default `classifiers/<dataset>-<resolution>`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Replace the classifier already in the output folder (every FID measured with it changes).
    #[arg(long)]
    force: bool,
    #[arg(long, value_enum, default_value = "cpu")]
    backend: Backend,
}

/// Trains the classifier on the dataset's train split, measures it on the test split, prints its card.
pub fn run(a: Args) -> Result<()> {
    let Some(set) = ImageDataset::from_name(&a.dataset) else {
        let names: Vec<_> = ImageDataset::ALL.iter().map(|d| d.name()).collect();
        bail!("unknown image dataset {:?}, expected one of {names:?}", a.dataset);
    };
    let r = a.resolution as usize;
    let out = a.out.unwrap_or_else(|| classifier_dir(Path::new("classifiers"), set.name(), r));
    check_out(&out, a.force)?;
    let train = load_images(set, Split::Train, r, a.data_path.as_deref())?;
    let test = load_images(set, Split::Test, r, a.data_path.as_deref())?;
    let recipe = ClassifierRecipe { steps: a.steps, batch: a.batch as usize, seed: a.seed };
    let card = train_classifier(set, &train, &test, recipe, &out, &command_line(), &a.backend.device()?)?;
    println!("{}", serde_json::to_string_pretty(&card)?);
    Ok(())
}

/// The output folder is new or empty, or holds a classifier and `force` says to replace it; a folder
/// holding anything else (a model, a run) is refused either way. Checked before any data is read.
fn check_out(out: &Path, force: bool) -> Result<()> {
    if check_replaceable_dir(out, &[CARD_FILE, WEIGHTS_FILE], "a classifier folder")? && !force {
        bail!(
            "--out {}: holds a classifier already, and every FID measured with it depends on it; pass --force to replace it",
            out.display()
        );
    }
    Ok(())
}
