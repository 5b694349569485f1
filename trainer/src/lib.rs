//! The native side of cm: recipes, the training loop, evaluation and files. The `cm` binary
//! (src/main.rs) parses the command line and dispatches to [`cli`], one module per subcommand; tests
//! drive the library directly too.

pub mod backend;
pub mod checkpoint;
pub mod classifier;
pub mod cli;
pub mod config;
pub mod data;
pub mod eval;
pub mod gpu;
pub mod io;
pub mod plot;
pub mod radam;
pub mod train;
