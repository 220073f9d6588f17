//! `cargo xtask fuzz`: the libFuzzer targets of fuzz/ (the files lazyvma reads from users:
//! recordings, reports, scenarios), each from its committed seeds for a while, after its
//! saved crash inputs (fuzz/regressions/TARGET/) replay clean. Not in `test`: a cold build
//! of the instrumented targets alone takes minutes (docs/reliability.md).
use crate::util::workspace_root;
use std::process::Command;

pub const TARGETS: [&str; 3] = ["recording", "report", "scenario"];

#[derive(clap::Args, Default)]
pub struct Args {
    /// Seconds of fuzzing per target.
    #[arg(long, default_value_t = 20)]
    pub seconds: u32,
    /// Targets (default: all).
    #[arg(value_parser = TARGETS)]
    pub targets: Vec<String>,
}

/// `cargo +NIGHTLY fuzz run -O -a TARGET INPUTS.. -- FLAGS..` (overflow checks on: a sum that
/// wraps is a bug the release build would hide), its output kept for the error.
fn fuzz_run(target: &str, inputs: &[std::path::PathBuf], flags: &[String]) -> anyhow::Result<String> {
    let root = workspace_root();
    // The rustup proxy, not $CARGO (xtask's own stable cargo), so +NIGHTLY applies.
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root.join("fuzz")).env_remove("RUSTC").env_remove("RUSTUP_TOOLCHAIN");
    cmd.arg(format!("+{}", crate::setup::bpf_toolchain())).args(["fuzz", "run", "-O", "--debug-assertions", target]).args(inputs).arg("--").args(flags);
    let out = cmd.output().map_err(|e| anyhow::anyhow!("cannot run cargo fuzz: {e}"))?;
    let text = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let from = text.find("==ERROR").or_else(|| text.find("panicked")).or_else(|| text.find("error")).unwrap_or(0);
        let tail: String = text[from..].lines().take(40).collect::<Vec<_>>().join("\n");
        anyhow::bail!("fuzz target {target} failed ({}); crash inputs land in fuzz/artifacts/{target}/: fix, then keep the input in fuzz/regressions/{target}/\n{tail}", out.status);
    }
    Ok(text)
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let root = workspace_root();
    let targets: Vec<&str> = if a.targets.is_empty() { TARGETS.to_vec() } else { a.targets.iter().map(String::as_str).collect() };
    for t in targets {
        let regressions: Vec<_> = std::fs::read_dir(root.join("fuzz/regressions").join(t))
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        if !regressions.is_empty() {
            fuzz_run(t, &regressions, &[])?;
        }
        // A fresh corpus each time: libFuzzer adds to its first directory, the seeds stay as committed.
        let corpus = root.join("fuzz/target/xtask-corpus").join(t);
        let _ = std::fs::remove_dir_all(&corpus);
        std::fs::create_dir_all(&corpus)?;
        let start = std::time::Instant::now();
        let flags = [format!("-max_total_time={}", a.seconds), "-timeout=5".into(), "-print_final_stats=1".into()];
        let text = fuzz_run(t, &[corpus.clone(), root.join("fuzz/seeds").join(t)], &flags)?;
        let execs = text.lines().find_map(|l| l.strip_prefix("stat::number_of_executed_units:")).map_or("?", str::trim);
        println!("fuzz: {t:<10} {execs} inputs in {} s, {} regression inputs, no crash ({:.0} s with the build)", a.seconds, regressions.len(), start.elapsed().as_secs_f64());
    }
    Ok(())
}
