//! One file per subcommand: parse flags, call into load/, model, render.
pub mod doctor;
pub mod merge;
pub mod model;
pub mod model_sizes;
pub mod model_sweep;
pub mod replay;
pub mod report;
pub mod serve;
pub mod snapshot;
pub mod trace;

/// Attach to an error as context to choose the process exit code (default 1); it adds no text.
#[derive(Debug, thiserror::Error)]
#[error("")]
pub struct ExitCode(pub i32);
