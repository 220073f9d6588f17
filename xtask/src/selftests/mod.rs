//! `cargo xtask selftests`: the kernel's own mm selftests that exercise anonymous memory,
//! from Debian's linux-source of the kernel under test (the closest older one for the
//! host), each run under `lazyvma trace -j` as a new user would. Every (process, phase)
//! row must be exact or flagged (the report says why it is not exact); a wrong row the
//! report does not flag fails the suite. The selftest's own pass / skip / fail is shown,
//! not judged: it is the kernel's business.
use crate::{util, vm::assets};
use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};
use std::{fs, path::Path, process::Command, time::Instant};

mod guest;
mod judge;
mod source;

/// The selftests that exercise anonymous memory (VMAs, faults, fork, mremap, madvise,
/// mlock, KSM) without hugetlbfs, NUMA nodes or a test module; a tree without one skips it.
const TESTS: [&str; 9] =
    ["madv_populate", "map_populate", "mremap_dontunmap", "mremap_test", "mlock2-tests", "mdwe_test", "cow", "ksm_functional_tests", "merge"];

#[derive(clap::Args)]
pub struct Args {
    /// Only these tests (repeatable; default: every one of the list).
    #[arg(long = "test", value_name = "NAME")]
    tests: Vec<String>,
    /// Seconds a test may run before it is killed (the kselftest `settings` say 180).
    #[arg(long, default_value_t = TIMEOUT)]
    timeout: u64,
    /// Trace with this lazyvma binary instead of building the workspace's (before/after).
    #[arg(long, value_name = "PATH")]
    lazyvma: Option<std::path::PathBuf>,
    /// Run them in this guest instead of on the host (repeatable): `x86_64:6.12`, ...; see
    /// docs/trace.md for which kernels the sources build for.
    #[arg(long = "guest", value_name = "ARCH:X.Y")]
    guests: Vec<guest::Guest>,
    /// In the guests, trace with `lazyvma trace -k` (kprobes instead of fentry).
    #[arg(long, requires = "guests")]
    kprobes: bool,
}

/// `cargo xtask test`'s run: every test, the kselftest timeout.
impl Default for Args {
    fn default() -> Args {
        Args { tests: Vec::new(), timeout: TIMEOUT, lazyvma: None, guests: Vec::new(), kprobes: false }
    }
}

const TIMEOUT: u64 = 180;

/// `cargo xtask test`'s guest run: the same tests in amd64 6.12 (fentry backends; ~2.3 min).
/// arm64 and 6.1 stay on demand (arm64 needs Debian's cross gcc on the CI machine).
pub fn suite_guest() -> Args {
    Args { guests: vec!["x86_64:6.12".parse().expect("a known guest")], ..Args::default() }
}

/// One test's outcome.
struct Outcome {
    test: String,
    status: String,
    secs: f64,
    verdict: Option<judge::Verdict>,
    error: Option<String>,
}

pub fn run(args: Args) -> Result<()> {
    let t0 = Instant::now();
    let wanted: Vec<&str> = if args.tests.is_empty() { TESTS.to_vec() } else { args.tests.iter().map(String::as_str).collect() };
    if let Some(t) = wanted.iter().find(|t| !TESTS.contains(t)) {
        bail!("no selftest {t:?} in the suite (one of {})", TESTS.join(", "));
    }
    ensure!(args.lazyvma.is_none() || args.guests.is_empty(), "--lazyvma is for the host run; a guest runs this tree's static build");
    let mut bad = Vec::new();
    if args.guests.is_empty() {
        bad.extend(host(&args, &wanted)?);
    }
    for g in &args.guests {
        bad.extend(guest::run(*g, &wanted, args.timeout, args.kprobes)?);
    }
    eprintln!("selftests: {:.0} s", t0.elapsed().as_secs_f64());
    if !bad.is_empty() {
        bail!("selftests: {}", bad.join("; "));
    }
    Ok(())
}

/// This host: the closest older Debian source, built with the host's gcc, traced here.
fn host(args: &Args, wanted: &[&str]) -> Result<Vec<String>> {
    let release = util::stdout(Command::new("uname").arg("-r")).trim().to_string();
    let kernel = source::major_minor(&release).with_context(|| format!("cannot read X.Y from uname -r {release:?}"))?;
    let cache = assets::Cache::open(false)?;
    let src = source::Source::fetch(&cache, kernel, crate::vm::Arch::X86_64)?;
    drop(cache);
    let lazyvma = match &args.lazyvma {
        Some(p) => fs::canonicalize(p).with_context(|| format!("no lazyvma at {}", p.display()))?,
        None => {
            util::cargo(&["build", "--release", "--bin", "lazyvma"], &[])?;
            util::workspace_root().join("target/release/lazyvma")
        }
    };
    let out = util::workspace_root().join("target/selftests").join(&src.series);
    let mut results = Vec::new();
    for &test in wanted {
        if !src.has(test) {
            results.push(Outcome::missing(test, &src));
            continue;
        }
        let bin = src.build(test, &out, source::Target::Host)?;
        eprintln!("selftests: {test} under lazyvma trace -j");
        results.push(trace(&lazyvma, &bin, &out, args.timeout));
    }
    conclude("host", &release, &src, &results, &out)
}

impl Outcome {
    fn missing(test: &str, src: &source::Source) -> Outcome {
        Outcome { test: test.into(), status: format!("not in {}", src.series), secs: 0.0, verdict: None, error: None }
    }
}

/// Prints the table, writes `results.json` beside the reports, and returns what fails the
/// suite: a test that could not be judged, or a wrong row the report did not flag.
fn conclude(place: &str, release: &str, src: &source::Source, results: &[Outcome], out: &Path) -> Result<Vec<String>> {
    print(place, release, src, results);
    write_results(out, place, release, src, results)?;
    Ok(results
        .iter()
        .filter_map(|r| match (&r.error, &r.verdict) {
            (Some(e), _) => Some(format!("{place}: {}: {e}", r.test)),
            (None, Some(v)) if v.wrong > 0 => Some(format!("{place}: {}: {} rows wrong and not flagged", r.test, v.wrong)),
            _ => None,
        })
        .collect())
}

/// `lazyvma trace -j -- sh -c 'exec timeout -s KILL T ./test >log'` in the build folder: the
/// test's output goes to its log, the report alone to trace's stdout.
fn trace(lazyvma: &Path, bin: &Path, out: &Path, timeout: u64) -> Outcome {
    let test = bin.file_name().unwrap().to_string_lossy().into_owned();
    let script = format!("exec timeout -s KILL {timeout} ./{test} >{test}.log 2>&1");
    let t = Instant::now();
    let run = Command::new(lazyvma).current_dir(out).args(["trace", "-j", "--", "sh", "-c", &script]).output();
    let secs = t.elapsed().as_secs_f64();
    let mut o = Outcome { test, status: "?".into(), secs, verdict: None, error: None };
    let run = match run {
        Ok(r) => r,
        Err(e) => {
            o.error = Some(format!("cannot run {}: {e}", lazyvma.display()));
            return o;
        }
    };
    let stdout = String::from_utf8_lossy(&run.stdout);
    let json = stdout.find("\n{").map(|i| &stdout[i + 1..]).or(stdout.starts_with('{').then_some(&*stdout));
    let err = String::from_utf8_lossy(&run.stderr);
    let failed = (!run.status.success()).then(|| format!("{}: {}", run.status, err.lines().find(|l| l.starts_with("lazyvma:")).unwrap_or("")));
    judged(o, json, failed, out, timeout)
}

/// One test's report (`json`, the trace's stdout from its `{`) judged. `failed`: the trace's
/// exit status and first `lazyvma:` line when it did not exit 0.
fn judged(mut o: Outcome, json: Option<&str>, failed: Option<String>, out: &Path, timeout: u64) -> Outcome {
    let report: Option<Value> = json.and_then(|j| serde_json::from_str(j).ok());
    // Kept beside the test's log: what a wrong or flagged row is looked into with.
    if let Some(j) = json {
        let _ = fs::write(out.join(format!("{}.json", o.test)), j);
    }
    let (Some(report), None) = (report, &failed) else {
        o.error = Some(format!("lazyvma trace {}", failed.as_deref().unwrap_or("exited 0 with no JSON report")));
        return o;
    };
    let secs = o.secs;
    o.status = match report["command"]["exit_status"].as_i64() {
        Some(0) => "pass".into(),
        Some(4) => "skip".into(),
        Some(137) => "timeout".into(),
        None if report["command"]["signal"] == 9 && secs >= timeout as f64 => "timeout".into(),
        Some(n) => format!("fail {n}"),
        None => format!("signal {}", report["command"]["signal"]),
    };
    match judge::judge(&report) {
        Ok(v) => o.verdict = Some(v),
        Err(e) => o.error = Some(e),
    }
    o
}

fn print(place: &str, release: &str, src: &source::Source, results: &[Outcome]) {
    println!("mm selftests under `lazyvma trace -j` on {release} ({place}), from linux-source-{} {}", src.series, src.version);
    println!("{:<22} {:<10} {:>5} {:>6} {:>8} {:>6} {:>9} {:>7}", "test", "selftest", "rows", "exact", "flagged", "wrong", "complete", "secs");
    for r in results {
        match &r.verdict {
            Some(v) => {
                println!("{:<22} {:<10} {:>5} {:>6} {:>8} {:>6} {:>9} {:>7.1}", r.test, r.status, v.rows, v.exact, v.flagged, v.wrong, v.complete, r.secs)
            }
            None => println!("{:<22} {:<10} {}", r.test, r.status, r.error.as_deref().unwrap_or("")),
        }
        for why in r.verdict.iter().flat_map(|v| &v.reasons) {
            println!("{:<22}   - {why}", "");
        }
    }
}

fn write_results(out: &Path, place: &str, release: &str, src: &source::Source, results: &[Outcome]) -> Result<()> {
    let tests: Vec<Value> = results
        .iter()
        .map(|r| {
            let v = r.verdict.as_ref();
            json!({"test": r.test, "selftest": r.status, "secs": r.secs, "error": r.error,
                "rows": v.map(|v| v.rows), "exact": v.map(|v| v.exact), "flagged": v.map(|v| v.flagged), "wrong": v.map(|v| v.wrong),
                "complete": v.map(|v| v.complete), "lost": v.map(|v| v.lost), "reasons": v.map(|v| &v.reasons)})
        })
        .collect();
    let doc = json!({"kernel": release, "where": place, "source": format!("linux-source-{} {}", src.series, src.version), "tests": tests});
    fs::create_dir_all(out)?;
    fs::write(out.join("results.json"), serde_json::to_string_pretty(&doc)? + "\n")?;
    Ok(())
}
