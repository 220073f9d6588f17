//! `cargo xtask fuzz`: the libFuzzer targets of fuzz/ (the files lazyvma reads from users:
//! recordings, reports, scenarios), each from its committed seeds for a while, after its
//! saved crash inputs (fuzz/regressions/TARGET/) replay clean. `test` runs the same for
//! SUITE_SECONDS each (docs/reliability.md: what that costs cold and warm).
use crate::util::workspace_root;
use std::process::Command;

pub const TARGETS: [&str; 3] = ["recording", "report", "scenario"];

/// Seconds per target in `cargo xtask test`: enough to run every seed and a few 10k mutations
/// of them; the long runs are `cargo xtask fuzz --seconds N`.
pub const SUITE_SECONDS: u32 = 10;

#[derive(clap::Args, Default)]
pub struct Args {
    /// Seconds of fuzzing per target.
    #[arg(long, default_value_t = 20)]
    pub seconds: u32,
    /// Targets (default: all).
    #[arg(value_parser = TARGETS)]
    pub targets: Vec<String>,
}

/// `cargo +NIGHTLY fuzz SUB -O -a ARGS..` in fuzz/, built in the xtask cache (overflow checks on: a sum that wraps is
/// a bug the release build would hide).
fn cargo_fuzz(sub: &str) -> Command {
    // The rustup proxy, not $CARGO (xtask's own stable cargo), so +NIGHTLY applies.
    let mut cmd = Command::new("cargo");
    cmd.current_dir(workspace_root().join("fuzz")).env_remove("RUSTC").env_remove("RUSTUP_TOOLCHAIN");
    cmd.arg(format!("+{}", crate::setup::bpf_toolchain())).args(["fuzz", sub, "-O", "--debug-assertions"]);
    // Out of the checkout, beside the guests' kernels and the userland image: CI's clean
    // clone builds only what changed (a cold sanitizer build is ~4.5 min here).
    cmd.arg("--target-dir").arg(crate::vm::assets::cache_dir().join("fuzz-target"));
    cmd
}

/// `cargo fuzz run TARGET INPUTS.. -- FLAGS..`, its output kept for the error, which names
/// the input that failed.
fn fuzz_run(target: &str, inputs: &[std::path::PathBuf], flags: &[String]) -> anyhow::Result<String> {
    let mut cmd = cargo_fuzz("run");
    cmd.arg(target).args(inputs).arg("--").args(flags);
    let out = cmd.output().map_err(|e| anyhow::anyhow!("cannot run cargo fuzz: {e}"))?;
    let text = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let from = text.find("==ERROR").or_else(|| text.find("panicked")).or_else(|| text.find("error")).unwrap_or(0);
        let tail: String = text[from..].lines().take(40).collect::<Vec<_>>().join("\n");
        let input = match failing_input(&text) {
            Some(p) => format!("the input: {p} (again: cargo xtask fuzz {target}, or cargo +{} fuzz run -O -a {target} {p})", crate::setup::bpf_toolchain()),
            None => format!("no input named; crash inputs land in fuzz/artifacts/{target}/"),
        };
        anyhow::bail!("fuzz target {target} failed ({}); {input}; fix, then keep the input in fuzz/regressions/{target}/\n{tail}", out.status);
    }
    Ok(text)
}

/// The input libFuzzer saved for a crash, a timeout or an out-of-memory ("Test unit written
/// to PATH"); else, when it ran given files, the last one it started.
fn failing_input(text: &str) -> Option<&str> {
    let written = text.lines().rev().find_map(|l| l.split_once("Test unit written to ").map(|(_, p)| p.trim()));
    written.or_else(|| text.lines().rev().find_map(|l| l.strip_prefix("Running: ").map(str::trim)))
}

/// The part of `cargo xtask test`: cargo-fuzz installed if absent, then SUITE_SECONDS per target.
pub fn suite() -> anyhow::Result<()> {
    crate::setup::cargo_fuzz()?;
    run(Args { seconds: SUITE_SECONDS, targets: Vec::new() })
}

/// The three targets in one cargo run: their dependencies built once, in parallel.
fn build() -> anyhow::Result<()> {
    let start = std::time::Instant::now();
    let out = cargo_fuzz("build").output().map_err(|e| anyhow::anyhow!("cannot run cargo fuzz: {e}"))?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stderr);
        let from = text.find("error").unwrap_or(0);
        anyhow::bail!("building the fuzz targets failed ({}):\n{}", out.status, text[from..].lines().take(40).collect::<Vec<_>>().join("\n"));
    }
    println!("fuzz: build of the targets {:.0} s", start.elapsed().as_secs_f64());
    Ok(())
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let root = workspace_root();
    let targets: Vec<&str> = if a.targets.is_empty() { TARGETS.to_vec() } else { a.targets.iter().map(String::as_str).collect() };
    let start = std::time::Instant::now();
    build()?;
    for t in targets {
        let regressions: Vec<_> =
            std::fs::read_dir(root.join("fuzz/regressions").join(t)).map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
        if !regressions.is_empty() {
            fuzz_run(t, &regressions, &[])?;
        }
        // A fresh corpus each time: libFuzzer adds to its first directory, the seeds stay as committed.
        let corpus = root.join("fuzz/target/xtask-corpus").join(t);
        let _ = std::fs::remove_dir_all(&corpus);
        std::fs::create_dir_all(&corpus)?;
        let t0 = std::time::Instant::now();
        let flags = [format!("-max_total_time={}", a.seconds), "-timeout=5".into(), "-print_final_stats=1".into()];
        let text = fuzz_run(t, &[corpus.clone(), root.join("fuzz/seeds").join(t)], &flags)?;
        let execs = text.lines().find_map(|l| l.strip_prefix("stat::number_of_executed_units:")).map_or("?", str::trim);
        println!(
            "fuzz: {t:<10} {execs} inputs in {} s, {} regression inputs, no crash ({:.0} s wall)",
            a.seconds,
            regressions.len(),
            t0.elapsed().as_secs_f64()
        );
    }
    println!("fuzz: {:.0} s in all", start.elapsed().as_secs_f64());
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_failing_input_is_named() {
        let crash = "INFO: Running with entropic power schedule\n#1024 pulse\n==1== ERROR: libFuzzer: deadly signal\nMS: 1 ChangeBit-; base unit: 0\nartifact_prefix='/w/fuzz/artifacts/report/'; Test unit written to /w/fuzz/artifacts/report/crash-da39a3ee\nBase64: AA==\n";
        assert_eq!(super::failing_input(crash), Some("/w/fuzz/artifacts/report/crash-da39a3ee"));
        let replay = "Running: /w/fuzz/regressions/scenario/a.lzs\nExecuted /w/fuzz/regressions/scenario/a.lzs in 1 ms\nRunning: /w/fuzz/regressions/scenario/b.lzs\nthread '<unnamed>' panicked at src/x.rs:1:1\n";
        assert_eq!(super::failing_input(replay), Some("/w/fuzz/regressions/scenario/b.lzs"));
        assert_eq!(super::failing_input("error: could not compile"), None);
    }
}
