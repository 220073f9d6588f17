//! `trace --stats`: what each BPF program cost, from the kernel's own run_cnt / run_time_ns,
//! which it only counts while run-time stats are on. They are turned on with the bpf syscall's
//! BPF_ENABLE_STATS, not the global sysctl: the kernel keeps them on while any such fd is
//! open and turns them off when the last one closes, even if this process is SIGKILLed, and
//! concurrent runs (or a sysctl someone set) do not turn each other's counting off.
//! Kernels before 5.8 lack it: then the sysctl, put back on drop (not on SIGKILL).
use crate::report::schema::BpfProg;
use anyhow::Context;
use aya::Ebpf;
use std::collections::BTreeMap;
use std::os::fd::{FromRawFd, OwnedFd};

const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";
/// enum bpf_cmd's BPF_ENABLE_STATS, and enum bpf_stats_type's BPF_STATS_RUN_TIME.
const BPF_ENABLE_STATS: libc::c_long = 32;
const BPF_STATS_RUN_TIME: u32 = 0;

/// Run-time stats on until dropped.
pub enum Enabled {
    /// The kernel's refcount: closing the fd is the whole restore.
    Fd(#[allow(dead_code)] OwnedFd),
    /// The sysctl's previous value, written back on drop.
    Sysctl(String),
}

impl Enabled {
    pub fn enable() -> anyhow::Result<Enabled> {
        // union bpf_attr's enable_stats: one u32, the rest of the union zero.
        let mut attr = [0u8; 16];
        attr[..4].copy_from_slice(&BPF_STATS_RUN_TIME.to_ne_bytes());
        // SAFETY: `attr` is readable for the 4 bytes passed as its size.
        let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_ENABLE_STATS, attr.as_ptr(), 4u32) };
        if fd >= 0 {
            // SAFETY: a fresh fd the kernel just returned, owned by nothing else.
            return Ok(Enabled::Fd(unsafe { OwnedFd::from_raw_fd(fd as i32) }));
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINVAL) {
            return Err(e).context("--stats: bpf(BPF_ENABLE_STATS)");
        }
        let old = std::fs::read_to_string(SYSCTL).with_context(|| format!("--stats: reading {SYSCTL}"))?.trim().to_string();
        std::fs::write(SYSCTL, "1").with_context(|| format!("--stats: enabling BPF run-time stats ({SYSCTL})"))?;
        Ok(Enabled::Sysctl(old))
    }
}

impl Drop for Enabled {
    fn drop(&mut self) {
        if let Enabled::Sysctl(old) = self {
            if let Err(e) = std::fs::write(SYSCTL, &old) {
                eprintln!("lazyvma: could not restore kernel.bpf_stats_enabled to {old}: {e}");
            }
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

/// The report's `bpf_stats`: program → runs and mean run time.
pub fn doc(stats: &[ProgStat]) -> BTreeMap<String, BpfProg> {
    stats.iter().map(|s| (s.program.clone(), BpfProg { runs: s.runs, mean_ns: s.mean_ns() })).collect()
}
