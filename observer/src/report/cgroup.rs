//! Snapshot attribution per cgroup: pid → its cgroup ([`crate::cgroup::of_pid`]: the v2
//! path and id, the directory's inode, which is the kernel's cgroup id), with a cap on
//! distinct cgroups.
use lazyvma_model::snapshot::ProcessEstimate;
use std::collections::BTreeMap;

use super::schema::{Cgroup, ObjectCounts};
use crate::cgroup::{self, Membership};
use crate::snapshot::{savings, Sizes};

pub const OTHER: &str = "other";
/// A process that exited between the pass and the /proc read.
pub const GONE: &str = "(exited)";

pub fn pair(c: &lazyvma_model::snapshot::LiveObjects) -> ObjectCounts {
    ObjectCounts { anon_vma: c.anon_vma, anon_vma_chain: c.anon_vma_chain }
}

fn add(to: &mut Cgroup, p: &ProcessEstimate, sizes: &Sizes) {
    to.processes += 1;
    let eager = to.eager.get_or_insert_with(ObjectCounts::default);
    eager.anon_vma += p.eager.anon_vma;
    eager.anon_vma_chain += p.eager.anon_vma_chain;
    let lazy = to.lazy.get_or_insert_with(ObjectCounts::default);
    lazy.anon_vma += p.lazy.anon_vma;
    lazy.anon_vma_chain += p.lazy.anon_vma_chain;
    to.saved_kb += savings(p, sizes) as f64 / 1024.0;
}

fn empty(id: u64, path: &str) -> Cgroup {
    Cgroup { host: None, id, path: path.into(), processes: 0, eager: None, lazy: None, saved_kb: 0.0, observed: None }
}

fn fold(other: &mut Cgroup, r: Cgroup) {
    other.processes += r.processes;
    let (eo, er) = (other.eager.get_or_insert_with(ObjectCounts::default), r.eager.unwrap_or_default());
    eo.anon_vma += er.anon_vma;
    eo.anon_vma_chain += er.anon_vma_chain;
    let (lo, lr) = (other.lazy.get_or_insert_with(ObjectCounts::default), r.lazy.unwrap_or_default());
    lo.anon_vma += lr.anon_vma;
    lo.anon_vma_chain += lr.anon_vma_chain;
    other.saved_kb += r.saved_kb;
}

/// Every process in a cgroup row; the `cap` cgroups with the largest savings keep their
/// own row, the rest are summed into one `other` row (never dropped).
pub fn attribute(processes: &[ProcessEstimate], sizes: &Sizes, cap: usize) -> Vec<Cgroup> {
    let mounts = cgroup::mounts();
    let mut by_path: BTreeMap<String, Cgroup> = BTreeMap::new();
    for p in processes {
        let m = cgroup::of_pid(p.pid, &mounts).unwrap_or_else(|| Membership { path: GONE.into(), id: 0 });
        add(by_path.entry(m.path.clone()).or_insert_with(|| empty(m.id, &m.path)), p, sizes);
    }
    let mut rows: Vec<Cgroup> = by_path.into_values().collect();
    rows.sort_by(|a, b| b.saved_kb.total_cmp(&a.saved_kb).then_with(|| a.path.cmp(&b.path)));
    cgroup::fold_other(rows, cap, empty(0, OTHER), fold)
}
