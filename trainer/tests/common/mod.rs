//! Helpers shared by the binary's integration tests.

use std::process::Output;

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
