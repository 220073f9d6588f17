//! Snapshot at scale: `lazyvma snapshot -j` of a machine holding ≥ 1 M VMAs
//! (`lazyvma-workload manyvmas --hold`: one process of 60,000 written VMAs, 16 children),
//! its wall time and peak RSS (wait4's ru_maxrss), with the machine's VMA count then; and
//! `lazyvma trace -p PARENT -d 1 -j` of the same 17 processes: the seeding pass at scale
//! (every process seeded from one pass, then the model holds them all).
use super::proc::{self, Bg, Stream};
use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The machine's VMAs: lines of every /proc/PID/maps (a process gone meanwhile adds 0).
pub fn machine_vmas() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0 };
    let mut n = 0;
    for e in dir.flatten() {
        if e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(m) = std::fs::read(e.path().join("maps")) {
                n += m.iter().filter(|&&b| b == b'\n').count() as u64;
            }
        }
    }
    n
}

pub struct Held {
    bg: Bg,
    /// The manyvmas parent (its 16 children follow it into a `trace -p`).
    pub parent: Option<u32>,
}

/// Starts manyvmas and waits until its 17 processes hold.
pub fn hold(workload: &Path, vmas: usize) -> Result<Held> {
    let mut c = Command::new(workload);
    c.args(["manyvmas", "-n", "0", "--loops", &vmas.to_string(), "--hold"]);
    // stdin must stay open (a pipe we close at the end): Bg gives null stdin, so use a pipe here.
    let mut bg = Bg::spawn_with_stdin(&mut c, Stream::Out)?;
    let mut ready = 0;
    let mut parent = None;
    bg.wait_line(Duration::from_secs(300), |l| {
        if let Some(rest) = l.strip_prefix("ready ") {
            ready += 1;
            if rest.starts_with("role=parent ") {
                parent = rest.split_whitespace().find_map(|w| w.strip_prefix("pid=")?.parse().ok());
            }
        }
        ready == 17
    })?;
    Ok(Held { bg, parent })
}

impl Held {
    pub fn release(mut self) -> Result<()> {
        self.bg.close_stdin();
        self.bg.wait_exit(Duration::from_secs(120))
    }
}

/// One `snapshot -j` run of each build, `rounds` times interleaved.
pub fn measure(builds: &[(String, PathBuf)], workload: &Path, vmas: usize, rounds: usize) -> Result<Value> {
    let held = hold(workload, vmas).context("manyvmas")?;
    let count = machine_vmas();
    let parent = held.parent.map(|p| p.to_string());
    let mut per: Vec<Runs> = builds.iter().map(|(l, _)| Runs { build: l.clone(), ..Runs::default() }).collect();
    let mut seed: Vec<Runs> = builds.iter().map(|(l, _)| Runs { build: l.clone(), ..Runs::default() }).collect();
    let mut err = None;
    'rounds: for _ in 0..rounds {
        for (((_, bin), row), seed) in builds.iter().zip(per.iter_mut()).zip(seed.iter_mut()) {
            let d = proc::run_peak(bin, &["snapshot", "-j"])?;
            if d.code != Some(0) {
                err = Some(format!("{} snapshot -j failed ({:?}): {}", bin.display(), d.code, d.err.trim()));
                break 'rounds;
            }
            row.push(&d, None);
            let Some(parent) = &parent else { continue };
            let d = proc::run_peak(bin, &["trace", "-p", parent, "-d", "1", "-j"])?;
            if d.code != Some(0) {
                err = Some(format!("{} trace -p {parent} failed ({:?}): {}", bin.display(), d.code, d.err.trim()));
                break 'rounds;
            }
            seed.push(&d, Some(seeded(&d.out)));
        }
    }
    held.release()?;
    ensure!(err.is_none(), "{}", err.unwrap_or_default());
    let rows: Vec<Value> = per.iter().map(Runs::json).collect();
    let seeding = match parent {
        Some(_) => json!(seed.iter().map(Runs::json).collect::<Vec<_>>()),
        None => json!({"error": "manyvmas announced no parent pid"}),
    };
    Ok(json!({"machine_vmas": count, "workload": format!("manyvmas --loops {vmas} (1 process + 16 children)"), "rounds": rounds, "builds": rows,
              "seeding": seeding}))
}

/// One build's runs of one command.
#[derive(Default)]
struct Runs {
    build: String,
    secs: Vec<f64>,
    rss: Vec<u64>,
    /// `trace -p`: per run, the processes seeded and the pass's µs (`model.seed_pass_us`).
    seeded: Vec<Value>,
}

impl Runs {
    fn push(&mut self, d: &proc::Done, seeded: Option<Value>) {
        self.secs.push(d.wall.as_secs_f64());
        self.rss.push(d.maxrss_kib);
        self.seeded.extend(seeded);
    }

    fn json(&self) -> Value {
        let mut v = json!({"build": self.build, "wall_s": self.secs, "median_wall_s": super::median_f(&self.secs), "peak_rss_kib": self.rss,
                           "median_peak_rss_kib": super::median_f(&self.rss.iter().map(|&r| r as f64).collect::<Vec<_>>())});
        if !self.seeded.is_empty() {
            v["runs"] = json!(self.seeded);
        }
        v
    }
}

/// What a `trace -p -j` run seeded: processes, the pass's µs, records lost.
fn seeded(out: &str) -> Value {
    let doc: Option<Value> = out.find('{').and_then(|at| serde_json::from_str(&out[at..]).ok());
    let Some(d) = doc else { return json!({"error": "no JSON report"}) };
    let m = &d["model"];
    json!({"seeded": m["seeded"].as_array().map(Vec::len), "not_seeded": m["not_seeded"].as_object().map(|o| o.len()),
           "seed_pass_us": m["seed_pass_us"], "lost": d["lost_events"]})
}
