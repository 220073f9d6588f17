use std::{path::PathBuf, process::Command};

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Run a command, inheriting stdio; error with its exit status.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().map_err(|e| anyhow::anyhow!("cannot run {:?}: {e}", cmd.get_program()))?;
    anyhow::ensure!(status.success(), "{:?} failed: {status}", cmd.get_program());
    Ok(())
}

/// Run a command quietly; true on success.
pub fn ok(cmd: &mut Command) -> bool {
    cmd.output().map(|o| o.status.success()).unwrap_or(false)
}

/// Run a command and return its stdout (empty on failure).
pub fn stdout(cmd: &mut Command) -> String {
    cmd.output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
}

pub fn cargo(args: &[&str], extra: &[String]) -> anyhow::Result<()> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root()).args(args);
    if !extra.is_empty() {
        cmd.arg("--").args(extra);
    }
    run(&mut cmd)
}
