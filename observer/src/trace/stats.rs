//! `trace --stats`: what each BPF program cost, from the kernel's own run_cnt / run_time_ns,
//! which it only counts while `kernel.bpf_stats_enabled` is 1. The sysctl is global, so it is
//! put back to what it was on every way out: [`Enabled`] restores it on drop.
use anyhow::Context;
use aya::Ebpf;
use serde_json::{json, Map, Value};

const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// `kernel.bpf_stats_enabled` set to 1 until dropped, then back to its previous value.
pub struct Enabled {
    old: String,
}

impl Enabled {
    pub fn enable() -> anyhow::Result<Enabled> {
        let old = std::fs::read_to_string(SYSCTL).with_context(|| format!("--stats: reading {SYSCTL}"))?.trim().to_string();
        std::fs::write(SYSCTL, "1").with_context(|| format!("--stats: enabling BPF run-time stats ({SYSCTL})"))?;
        Ok(Enabled { old })
    }
}

impl Drop for Enabled {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(SYSCTL, &self.old) {
            eprintln!("lazyvma: could not restore kernel.bpf_stats_enabled to {}: {e}", self.old);
        }
    }
}

pub struct ProgStat {
    pub program: String,
    pub runs: u64,
    pub run_ns: u64,
}

impl ProgStat {
    pub fn mean_ns(&self) -> u64 {
        self.run_ns.checked_div(self.runs).unwrap_or(0)
    }
}

/// Every loaded program of the object (one that never loaded has no info: left out).
pub fn read(bpf: &Ebpf) -> Vec<ProgStat> {
    let mut out: Vec<ProgStat> = bpf
        .programs()
        .filter_map(|(name, p)| {
            let i = p.info().ok()?;
            Some(ProgStat { program: name.to_string(), runs: i.run_count(), run_ns: i.run_time().as_nanos() as u64 })
        })
        .collect();
    out.sort_by(|a, b| a.program.cmp(&b.program));
    out
}

pub fn json(stats: &[ProgStat]) -> Value {
    let m: Map<String, Value> = stats.iter().map(|s| (s.program.clone(), json!({ "runs": s.runs, "mean_ns": s.mean_ns() }))).collect();
    Value::Object(m)
}

pub fn text(stats: &[ProgStat], out: &mut impl std::io::Write) -> std::io::Result<()> {
    writeln!(out, "\n{:<28} {:>12} {:>10}", "bpf program (--stats)", "runs", "mean ns")?;
    for s in stats {
        writeln!(out, "{:<28} {:>12} {:>10}", s.program, s.runs, s.mean_ns())?;
    }
    Ok(())
}
