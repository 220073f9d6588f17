//! The process's exit status, chosen where an error is made (`main` reads it).

/// Attach to an error as context to choose the process exit code (default 1); it adds no text.
#[derive(Debug, thiserror::Error)]
#[error("")]
pub struct ExitCode(pub i32);
