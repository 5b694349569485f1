//! `cm export`: a run's model (or a model folder) to a web model folder, validated on the way.

use std::path::PathBuf;

use anyhow::Result;

use crate::backend::Backend;
use crate::io::{load_model_dir, register_in_index, save_model_dir};

#[derive(clap::Args)]
pub struct Args {
    /// A run folder (uses its `model/`) or a model folder.
    #[arg(long)]
    from: PathBuf,
    #[arg(long)]
    out: PathBuf,
}

/// Loads the model (every check of loading), renames it after the folder, writes it, and lists it in
/// the page's `index.json` when the folder is one of the page's.
pub fn run(a: Args) -> Result<()> {
    let is_run = a.from.join("config.toml").is_file() || a.from.join("checkpoints").is_dir();
    if is_run && !a.from.join("model").is_dir() {
        anyhow::bail!(
            "{0} is a run folder without a model yet (stopped early, still training, or killed): finish it with `cm train --config {0}/config.toml --out {0} --resume`",
            a.from.display()
        );
    }
    let src = if a.from.join("model").is_dir() { a.from.join("model") } else { a.from };
    let mut model = load_model_dir(&src, &Backend::Cpu.device()?)?;
    // The folder names the model: the page lists it (and the card calls it) by that name.
    if let Some(name) = a.out.file_name().and_then(|n| n.to_str()) {
        model.card.name = name.to_string();
    }
    save_model_dir(&a.out, &model.card, &model.denoiser)?;
    if let Some(parent) = a.out.parent().filter(|p| p.join("index.json").is_file() || p.ends_with("models")) {
        register_in_index(parent, &model.card.name)?;
    }
    println!("exported {} to {}", model.card.name, a.out.display());
    Ok(())
}
