//! Snapshot at scale: `lazyvma snapshot -j` of a machine holding ≥ 1 M VMAs
//! (`lazyvma-workload manyvmas --hold`: one process of 60,000 written VMAs, 16 children),
//! its wall time and peak RSS (wait4's ru_maxrss), with the machine's VMA count then.
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
}

/// Starts manyvmas and waits until its 17 processes hold.
pub fn hold(workload: &Path, vmas: usize) -> Result<Held> {
    let mut c = Command::new(workload);
    c.args(["manyvmas", "-n", "0", "--loops", &vmas.to_string(), "--hold"]);
    // stdin must stay open (a pipe we close at the end): Bg gives null stdin, so use a pipe here.
    let mut bg = Bg::spawn_with_stdin(&mut c, Stream::Out)?;
    let mut ready = 0;
    bg.wait_line(Duration::from_secs(300), |l| {
        if l.starts_with("ready ") {
            ready += 1;
        }
        ready == 17
    })?;
    Ok(Held { bg })
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
    let mut per: Vec<(String, Vec<f64>, Vec<u64>)> = builds.iter().map(|(l, _)| (l.clone(), vec![], vec![])).collect();
    let mut err = None;
    'rounds: for _ in 0..rounds {
        for ((_, bin), row) in builds.iter().zip(per.iter_mut()) {
            let d = proc::run_peak(bin, &["snapshot", "-j"])?;
            if d.code != Some(0) {
                err = Some(format!("{} snapshot -j failed ({:?}): {}", bin.display(), d.code, d.err.trim()));
                break 'rounds;
            }
            row.1.push(d.wall.as_secs_f64());
            row.2.push(d.maxrss_kib);
        }
    }
    held.release()?;
    ensure!(err.is_none(), "{}", err.unwrap_or_default());
    let rows: Vec<Value> = per
        .iter()
        .map(|(l, secs, rss)| {
            json!({"build": l, "wall_s": secs, "median_wall_s": super::median_f(secs), "peak_rss_kib": rss,
                   "median_peak_rss_kib": super::median_f(&rss.iter().map(|&r| r as f64).collect::<Vec<_>>())})
        })
        .collect();
    Ok(json!({"machine_vmas": count, "workload": format!("manyvmas --loops {vmas} (1 process + 16 children)"), "rounds": rounds, "builds": rows}))
}
