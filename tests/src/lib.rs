//! The end-to-end test bed of deploy-guard, shared by the tests and the demo.
//!
//! - [`testbed`]: the local AWS (moto, extended by `testbed/testbed.py`), started once per
//!   process, with its recorded calls, faults and scenario seeding.
//! - [`sample_app`]: a local HTTP app whose behaviour a test chooses.
//! - [`runtime`]: a Lambda Runtime API emulator that runs the real function binaries.
//!
//! Every server binds 127.0.0.1 on a free port and stops with the test (or demo) that started
//! it: the app and the emulator are tasks of the caller's runtime, the test bed exits when the
//! process that started it closes its stdin.

pub mod demos;
pub mod runtime;
pub mod sample_app;
pub mod testbed;

use std::path::PathBuf;

/// The repository's root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Where the function binaries are: `DEPLOY_GUARD_BIN_DIR`, else the target directory's
/// `debug` folder (`CARGO_TARGET_DIR` honoured).
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("DEPLOY_GUARD_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("target"));
    target.join("debug")
}
