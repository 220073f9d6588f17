//! Snapshot attribution per cgroup v2: pid → `/proc/PID/cgroup` path → id (the cgroup
//! directory's inode, which is the kernel's cgroup id), with a cap on distinct cgroups.
//! A process with no cgroup v2 line (v1-only host) is attributed to `/`.
use lazyvma_model::snapshot::ProcessEstimate;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;

use super::schema::{Cgroup, Pair};
use crate::snapshot::{savings, Sizes};

pub const OTHER: &str = "other";
/// A process that exited between the pass and the /proc read.
pub const GONE: &str = "(exited)";

/// The cgroup v2 path of `pid` (the `0::` line), or `None` if it is gone.
fn path_of(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    Some(text.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or("/").to_string())
}

/// Where cgroup2 is mounted: /sys/fs/cgroup on unified hosts, /sys/fs/cgroup/unified on
/// hybrid ones (this machine).
pub fn mount() -> Option<std::path::PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        (right.split_ascii_whitespace().next()? == "cgroup2").then(|| left.split_ascii_whitespace().nth(4).map(Into::into))?
    })
}

fn id_of(mount: Option<&std::path::Path>, path: &str) -> u64 {
    mount.and_then(|m| std::fs::metadata(m.join(path.trim_start_matches('/'))).ok()).map_or(0, |m| m.ino())
}

pub fn pair(c: &lazyvma_model::snapshot::Counts) -> Pair {
    Pair { anon_vma: c.anon_vma, anon_vma_chain: c.anon_vma_chain }
}

fn add(to: &mut Cgroup, p: &ProcessEstimate, sizes: &Sizes) {
    to.processes += 1;
    to.eager.anon_vma += p.eager.anon_vma;
    to.eager.anon_vma_chain += p.eager.anon_vma_chain;
    let lazy = to.lazy.get_or_insert_with(Pair::default);
    lazy.anon_vma += p.lazy.anon_vma;
    lazy.anon_vma_chain += p.lazy.anon_vma_chain;
    to.saved_kb += savings(p, sizes) as f64 / 1024.0;
}

fn empty(id: u64, path: &str) -> Cgroup {
    Cgroup { host: None, id, path: path.into(), processes: 0, eager: Pair::default(), lazy: None, saved_kb: 0.0 }
}

/// Every process in a cgroup row; the `cap` cgroups with the largest savings keep their
/// own row, the rest are summed into one `other` row (never dropped).
pub fn attribute(processes: &[ProcessEstimate], sizes: &Sizes, cap: usize) -> Vec<Cgroup> {
    let mount = mount();
    let mut by_path: BTreeMap<String, Cgroup> = BTreeMap::new();
    for p in processes {
        let path = path_of(p.pid).unwrap_or_else(|| GONE.into());
        let row = by_path.entry(path.clone()).or_insert_with(|| empty(if path == GONE { 0 } else { id_of(mount.as_deref(), &path) }, &path));
        add(row, p, sizes);
    }
    let mut rows: Vec<Cgroup> = by_path.into_values().collect();
    rows.sort_by(|a, b| b.saved_kb.total_cmp(&a.saved_kb).then_with(|| a.path.cmp(&b.path)));
    if rows.len() > cap {
        let mut other = empty(0, OTHER);
        for r in rows.drain(cap..) {
            other.processes += r.processes;
            other.eager.anon_vma += r.eager.anon_vma;
            other.eager.anon_vma_chain += r.eager.anon_vma_chain;
            let (lo, lr) = (other.lazy.get_or_insert_with(Pair::default), r.lazy.unwrap_or_default());
            lo.anon_vma += lr.anon_vma;
            lo.anon_vma_chain += lr.anon_vma_chain;
            other.saved_kb += r.saved_kb;
        }
        rows.push(other);
    }
    rows
}

