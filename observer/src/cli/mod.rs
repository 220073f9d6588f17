//! One file per subcommand: parse flags, call into load/, model, render.
pub mod doctor;
pub mod merge;
pub mod model;
pub mod report;
pub mod snapshot;
pub mod trace;

/// Attach to an error to choose the process exit code (default 1).
#[derive(Debug, thiserror::Error)]
#[error("exit code {0}")]
pub struct ExitCode(pub i32);
