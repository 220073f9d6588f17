//! Output to `-o FILE` all at once, through [`crate::safe_out`]: a failure never leaves a
//! partial file behind, and nothing but OUT itself is ever written.
use anyhow::Context;
use std::io::Write;
use std::path::Path;

/// Fail before a long run rather than after it: `path`'s directory must exist.
pub fn check_dir(path: &Path) -> anyhow::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    anyhow::ensure!(dir.is_dir(), "{}: no such directory {}", path.display(), dir.display());
    Ok(())
}

pub fn output(out: Option<&Path>, text: &str) -> anyhow::Result<()> {
    let Some(path) = out else {
        let mut stdout = std::io::stdout().lock();
        return stdout.write_all(text.as_bytes()).and_then(|_| stdout.flush()).context("writing to stdout");
    };
    crate::safe_out::write(path, text.as_bytes())
}
