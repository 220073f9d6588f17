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

/// A flag error as one line (`lazyvma: invalid value 'x' for '--top <N>': ...`), exit 2;
/// help and version print as clap prints them.
pub fn usage_error(e: clap::Error) -> ! {
    use clap::error::ErrorKind::*;
    if matches!(e.kind(), DisplayHelp | DisplayVersion | DisplayHelpOnMissingArgumentOrSubcommand) {
        e.exit()
    }
    let text = e.render().to_string();
    let parts: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
        .collect();
    eprintln!("lazyvma: {}", parts.join(" ").trim_start_matches("error: "));
    std::process::exit(2)
}
