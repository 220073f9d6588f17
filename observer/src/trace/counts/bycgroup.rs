//! `trace --by-cgroup`: each traced process's cgroup, read from /proc at first sight, and
//! the final counts grouped by it. Keyed by the tracer's process index (`Proc::proc`), so
//! any per-process column (the model's eager/lazy) groups the same way as the observed one.
use crate::cgroup::{self, Membership};
use crate::report::cgroup::{GONE, OTHER};
use crate::report::trace_doc::CgroupRow;
use crate::trace::{
    counts::slab::{Sizes, SlabCounts, SlabTally},
    tree::pids::Tree,
};
use std::collections::HashMap;

pub struct ByCgroup {
    mounts: cgroup::Mounts,
    cap: usize,
    /// Process index → index into `cgroups`.
    of_proc: Vec<usize>,
    cgroups: Vec<Membership>,
    by_path: HashMap<String, usize>,
}

/// One cgroup's share of the trace.
pub struct Row {
    pub path: String,
    pub id: u64,
    /// The traced processes in it (process indices); `other` holds every folded one.
    pub procs: Vec<usize>,
    pub observed: SlabCounts,
}

fn add(to: &mut SlabCounts, c: &SlabCounts) {
    for (a, b) in [(&mut to.anon_vma, c.anon_vma), (&mut to.anon_vma_chain, c.anon_vma_chain), (&mut to.unclassified, c.unclassified)] {
        a.alloc += b.alloc;
        a.free += b.free;
    }
}

impl ByCgroup {
    pub fn new(cap: usize) -> ByCgroup {
        ByCgroup { mounts: cgroup::mounts(), cap, of_proc: vec![], cgroups: vec![], by_path: HashMap::new() }
    }

    /// Reads the cgroup of every process the tree gained since the last call. A child that
    /// is gone already started in its parent's cgroup (fork puts it there).
    pub fn catch_up(&mut self, tree: &Tree) {
        for p in &tree.procs[self.of_proc.len()..] {
            let m = cgroup::of_pid(p.tgid, &self.mounts)
                .or_else(|| p.parent.map(|pp| self.cgroups[self.of_proc[pp]].clone()))
                .unwrap_or_else(|| Membership { path: GONE.into(), id: 0 });
            let next = self.cgroups.len();
            let i = *self.by_path.entry(m.path.clone()).or_insert(next);
            if i == next {
                self.cgroups.push(m);
            }
            self.of_proc.push(i);
        }
    }

    /// Rows by bytes allocated, largest first; past the cap summed into `other`. Every
    /// counted event is in one (process, phase) row, so the rows sum to the totals.
    pub fn rows(&self, tally: &SlabTally, sizes: &Sizes) -> Vec<Row> {
        let mut rows: Vec<Row> = self.cgroups.iter().map(|m| Row { path: m.path.clone(), id: m.id, procs: vec![], observed: SlabCounts::default() }).collect();
        for (proc, &i) in self.of_proc.iter().enumerate() {
            rows[i].procs.push(proc);
        }
        for ph in &tally.phases {
            add(&mut rows[self.of_proc[ph.proc]].observed, &ph.counts);
        }
        let bytes = |r: &Row| sizes.rmap_bytes(r.observed.anon_vma.alloc, r.observed.anon_vma_chain.alloc);
        rows.sort_by(|a, b| bytes(b).cmp(&bytes(a)).then_with(|| a.path.cmp(&b.path)));
        let other = Row { path: OTHER.into(), id: 0, procs: vec![], observed: SlabCounts::default() };
        cgroup::fold_other(rows, self.cap, other, |o, r| {
            o.procs.extend(r.procs);
            add(&mut o.observed, &r.observed);
        })
    }
}

/// The report's `by_cgroup` (observed counts only: the model is not split by cgroup).
pub fn doc(rows: &[Row]) -> Vec<CgroupRow> {
    rows.iter()
        .map(|r| CgroupRow { path: r.path.clone(), id: r.id, processes: r.procs.len() as u64, observed: (&r.observed).into(), eager: None, lazy: None })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::counts::slab::{At, Kind};
    use lazyvma_model::trace_abi::SlabFn;

    #[test]
    fn rows_sum_to_the_totals_and_fold_past_the_cap() {
        let mut by = ByCgroup::new(1);
        // Three cgroups by hand (no /proc read): procs 0 and 2 in /a, 1 in /b, 3 in /c.
        for (path, procs) in [("/a", [0, 2].as_slice()), ("/b", &[1]), ("/c", &[3])] {
            by.cgroups.push(Membership { path: path.into(), id: 0 });
            for &p in procs {
                if by.of_proc.len() <= p {
                    by.of_proc.resize(p + 1, 0);
                }
                by.of_proc[p] = by.cgroups.len() - 1;
            }
        }
        let mut t = SlabTally::default();
        for (proc, n) in [(0, 2), (1, 1), (2, 1), (3, 1)] {
            for _ in 0..n {
                t.add(Kind::AnonVma, true, SlabFn::AnonVmaPrepare, "prepare".into(), At { proc, tgid: 10 + proc as u32, phase: None });
            }
        }
        let rows = by.rows(&t, &Sizes::spec_x86_64());
        let v: Vec<(&str, usize, u64)> = rows.iter().map(|r| (r.path.as_str(), r.procs.len(), r.observed.anon_vma.alloc)).collect();
        assert_eq!(v, [("/a", 2, 3), ("other", 2, 2)]);
        assert_eq!(rows.iter().map(|r| r.observed.anon_vma.alloc).sum::<u64>(), t.total.anon_vma.alloc);
    }
}
