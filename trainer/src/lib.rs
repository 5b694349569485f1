//! The native side of cm: recipes, the training loop, evaluation and files. The `cm` binary
//! (src/main.rs) is a thin command line over this library; tests drive it directly.

pub mod backend;
pub mod checkpoint;
pub mod classifier;
pub mod config;
pub mod data;
pub mod edit;
pub mod eval;
pub mod eval_images;
pub mod gpu;
pub mod io;
pub mod plot;
pub mod radam;
pub mod train;
