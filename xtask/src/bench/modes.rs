//! One measured run of a workload under one mode on this host: bare, `trace` system-wide,
//! `trace -- CMD`, `serve`, bpftrace. What is compared is the loop's own elapsed time (the
//! workload's `elapsed_ns=`); tracers are started and ready before it, stopped after it.
use super::proc::{self, Bg, Stream};
use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A tracer start-up includes the BPF load and, for serve, the first snapshot pass.
const READY: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Bare,
    Trace,
    TraceCmd,
    Serve,
    /// `serve --snapshot-only` of the build under test (the newest): no program between
    /// passes; the baseline may not have the flag.
    ServeSnapshot,
    Bpftrace,
    /// Empty programs on the kmem tracepoints (`lazyvma-floor`): the dispatch alone.
    Floor,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Bare => "bare",
            Mode::Trace => "trace",
            Mode::TraceCmd => "trace -- CMD",
            Mode::Serve => "serve",
            Mode::ServeSnapshot => "serve --snapshot-only",
            Mode::Bpftrace => "bpftrace",
            Mode::Floor => "floor",
        }
    }
    /// Modes that run a lazyvma build (once per build in a round).
    pub fn per_build(self) -> bool {
        matches!(self, Mode::Trace | Mode::TraceCmd | Mode::Serve)
    }
}

#[derive(Clone, Debug)]
pub struct Workload {
    pub name: &'static str,
    pub scenario: &'static str,
    pub n: u32,
    pub loops: usize,
}

impl Workload {
    pub fn args(&self) -> Vec<String> {
        vec![self.scenario.into(), "-n".into(), self.n.to_string(), "--loops".into(), self.loops.to_string()]
    }
}

/// What one run measured. `lost`: records the tracer dropped (None: the mode has no ring
/// buffer, or the tracer did not say).
#[derive(Clone, Debug, Default)]
pub struct Sample {
    pub elapsed_ns: u64,
    pub lost: Option<u64>,
    /// bpftrace's (alloc, free) counts, a check that it saw the same call sites.
    pub counted: Option<(u64, u64)>,
    /// The round it ran in (1-based), to pair it with that round's bare run.
    pub round: usize,
}

pub enum Outcome {
    Ran(Sample),
    /// The workload exited 3: the machine lacks what it needs (its own line says what).
    Unavailable(String),
}

pub struct Host {
    pub workload: PathBuf,
    /// `lazyvma-floor`, built beside the workload.
    pub floor: PathBuf,
    pub bpftrace_script: Option<String>,
}

fn workload_cmd(host: &Host, w: &Workload) -> Command {
    let mut c = Command::new(&host.workload);
    c.args(w.args());
    c
}

/// The workload's done line → elapsed_ns, or why it did not run.
fn parse_workload(d: &proc::Done, what: &str) -> Result<std::result::Result<u64, String>> {
    if d.code == Some(3) {
        return Ok(Err(d.err.trim().to_string()));
    }
    match proc::field(&d.out, "elapsed_ns") {
        Some(ns) if d.code == Some(0) || what.starts_with("trace") => Ok(Ok(ns)),
        _ => bail!("{what}: the workload failed ({:?}): {}", d.code, d.err.trim()),
    }
}

fn bare(host: &Host, w: &Workload) -> Result<Outcome> {
    let d = proc::run(&mut workload_cmd(host, w))?;
    Ok(match parse_workload(&d, "bare")? {
        Ok(ns) => Outcome::Ran(Sample { elapsed_ns: ns, ..Default::default() }),
        Err(why) => Outcome::Unavailable(why),
    })
}

/// The JSON document after the workload's lines on a `trace -j` stdout.
pub fn trace_json(out: &str) -> Result<Value> {
    let at = out.find("\n{").map(|i| i + 1).or_else(|| out.starts_with('{').then_some(0)).context("no JSON report on stdout")?;
    serde_json::from_str(&out[at..]).context("the trace's JSON report")
}

/// A workload run during a background tracer; the tracer's output comes back with it.
fn during(host: &Host, w: &Workload, mut bg: Bg, what: &str) -> Result<(u64, String, String, Bg)> {
    let d = proc::run(&mut workload_cmd(host, w))?;
    let ns = match parse_workload(&d, what)? {
        Ok(ns) => ns,
        Err(why) => bail!("{what}: the workload ran bare but not now: {why}"),
    };
    let (out, err) = bg.stop()?;
    Ok((ns, out, err, bg))
}

fn trace(host: &Host, lazyvma: &Path, w: &Workload) -> Result<Outcome> {
    // -j: the live rows go to stderr; the first one (after 1 s) says the programs run.
    let mut bg = Bg::spawn(Command::new(lazyvma).args(["trace", "-j"]), Stream::Err)?;
    bg.wait_line(READY, |l| l.trim_start().starts_with("time"))?;
    let (ns, out, _, _) = during(host, w, bg, "trace")?;
    let j = trace_json(&out)?;
    Ok(Outcome::Ran(Sample { elapsed_ns: ns, lost: j["lost_events"].as_u64(), counted: None, round: 0 }))
}

/// `trace -j [extra] -- workload`: the model is fed. Returns the sample and the report.
pub fn trace_cmd(host: &Host, lazyvma: &Path, w: &Workload, extra: &[&str]) -> Result<(Sample, Value)> {
    let mut c = Command::new(lazyvma);
    c.args(["trace", "-j"]).args(extra).arg("--").arg(&host.workload).args(w.args());
    let d = proc::run(&mut c)?;
    let ns = match parse_workload(&d, "trace -- CMD")? {
        Ok(ns) => ns,
        Err(why) => bail!("trace -- CMD: {why}"),
    };
    let j = trace_json(&d.out).with_context(|| format!("trace -- CMD (exit {:?}): {}", d.code, d.err.lines().last().unwrap_or("")))?;
    Ok((Sample { elapsed_ns: ns, lost: j["lost_events"].as_u64(), counted: None, round: 0 }, j))
}

fn serve(host: &Host, lazyvma: &Path, w: &Workload, extra: &[&str]) -> Result<Outcome> {
    let port = proc::free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let mut bg = Bg::spawn(Command::new(lazyvma).args(["serve", "--listen", &listen]).args(extra), Stream::Err)?;
    // The port answers once the programs are attached and the first pass is done.
    bg.wait_until(READY, || proc::http_get(port, "/metrics").is_some())?;
    let d = proc::run(&mut workload_cmd(host, w))?;
    let metrics = proc::http_get(port, "/metrics");
    let (_, err) = bg.stop()?;
    let ns = match parse_workload(&d, "serve")? {
        Ok(ns) => ns,
        Err(why) => bail!("serve: the workload ran bare but not now: {why}"),
    };
    let lost =
        metrics.as_deref().and_then(|m| m.lines().find_map(|l| l.strip_prefix("lazyvma_events_lost_total")?.split_whitespace().last()?.parse::<f64>().ok()));
    if metrics.is_none() {
        eprintln!("bench: serve's /metrics did not answer after the run: {}", err.trim());
    }
    Ok(Outcome::Ran(Sample { elapsed_ns: ns, lost: lost.map(|l| l as u64), counted: None, round: 0 }))
}

fn bpftrace(host: &Host, script: &str, w: &Workload) -> Result<Outcome> {
    let mut bg = Bg::spawn(Command::new("bpftrace").args(["-e", script]), Stream::Out)?;
    // "Attaching" comes before the programs load: a program the verifier refuses ends
    // bpftrace within the second after it.
    bg.wait_line(READY, |l| l.starts_with("Attaching"))?;
    std::thread::sleep(Duration::from_secs(1));
    if !bg.running() {
        let (_, err) = bg.stop()?;
        bail!("bpftrace stopped before the run: {}", err.lines().filter(|l| l.starts_with("ERROR")).collect::<Vec<_>>().join("; "));
    }
    let (ns, out, err, _) = during(host, w, bg, "bpftrace")?;
    let Some(counted) = super::bpftrace::totals(&out) else {
        let all: Vec<&str> = out.lines().chain(err.lines()).filter(|l| !l.trim().is_empty() && !l.contains("RLIMIT_MEMLOCK")).collect();
        bail!("bpftrace printed no counts: {}", all[all.len().saturating_sub(5)..].join(" | "))
    };
    let lost = err.lines().find_map(|l| l.strip_prefix("Lost ")?.split_whitespace().next()?.parse().ok());
    Ok(Outcome::Ran(Sample { elapsed_ns: ns, lost, counted: Some(counted), round: 0 }))
}

fn floor(host: &Host, w: &Workload) -> Result<Outcome> {
    // It holds its programs until its stdin closes (or the stop's SIGINT).
    let mut bg = Bg::spawn_with_stdin(&mut Command::new(&host.floor), Stream::Out)?;
    bg.wait_line(READY, |l| l.trim() == "attached")?;
    let d = proc::run(&mut workload_cmd(host, w))?;
    ensure!(bg.running(), "lazyvma-floor stopped during the run: {}", bg.stop()?.1.trim());
    bg.stop()?;
    let ns = match parse_workload(&d, "floor")? {
        Ok(ns) => ns,
        Err(why) => bail!("floor: the workload ran bare but not now: {why}"),
    };
    Ok(Outcome::Ran(Sample { elapsed_ns: ns, ..Default::default() }))
}

pub fn run(host: &Host, mode: Mode, lazyvma: &Path, w: &Workload) -> Result<Outcome> {
    match mode {
        Mode::Bare => bare(host, w),
        Mode::Trace => trace(host, lazyvma, w),
        Mode::TraceCmd => Ok(Outcome::Ran(trace_cmd(host, lazyvma, w, &[])?.0)),
        Mode::Serve => serve(host, lazyvma, w, &[]),
        // The default interval (10 s): a pass may fall inside the loop, as it would.
        Mode::ServeSnapshot => serve(host, lazyvma, w, &["--snapshot-only"]),
        Mode::Floor => floor(host, w),
        Mode::Bpftrace => match &host.bpftrace_script {
            Some(s) => bpftrace(host, s, w),
            None => bail!("bpftrace is not installed"),
        },
    }
}
