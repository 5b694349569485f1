//! Helpers shared by the binary's integration tests.

use std::path::PathBuf;
use std::process::{Command, Output};

/// Asserts a failure with a single error line containing every `needle`, and no panic.
pub fn fails_with(out: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    let first =
        err.lines().find(|l| l.starts_with("error")).unwrap_or_else(|| panic!("no error line in {err:?}"));
    for n in needles {
        assert!(first.contains(n), "error line {first:?} does not mention {n:?}");
    }
}

/// Runs the `cm` binary with logging off.
#[allow(dead_code)] // not every test binary that includes this module runs `cm` this way
pub fn cm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cm")).args(args).env("CM_LOG", "off").output().expect("cm runs")
}

/// A tiny moons recipe on a 16-wide MLP: `top` holds the top-level keys (method, steps, batch, ...),
/// `embedding` the time embedding's inline table, `sections` TOML tables appended last.
#[allow(dead_code)] // not every test binary that includes this module writes recipes
pub fn moons_recipe(top: &str, embedding: &str, sections: &str) -> String {
    format!(
        r#"
dataset = "moons"
{top}
[optimizer]
lr = 0.001
[network]
kind = "mlp"
dim = 2
hidden = 16
blocks = 1
emb_dim = 8
embedding = {embedding}
{sections}
"#
    )
}

/// An empty folder `cm-<kind>-<pid>-<name>` in the temporary directory.
pub fn fresh_dir(kind: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cm-{kind}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
