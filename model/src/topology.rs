//! The anon_vma topology of a set of processes as read by one `iter/task_vma` pass.
//! Kernel addresses identify objects; they are only compared, never dereferenced.

use std::collections::BTreeMap;

/// One `struct anon_vma` as seen during the pass.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AnonVmaInfo {
    pub root: u64,
    pub parent: u64,
    pub refcount: i64,
    /// `num_children`; on kernels before 6.0 the single `degree` field, see `degree`.
    pub num_children: u64,
    pub num_active_vmas: u64,
    /// Pre-6.0 kernels: `degree`, with `num_children`/`num_active_vmas` zero.
    pub degree: Option<u64>,
}

/// One VMA.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VmaTopo {
    pub start: u64,
    pub end: u64,
    pub pgoff: u64,
    pub flags: u64,
    /// `vma->anon_vma`.
    pub anon_vma: Option<u64>,
    /// `vma->anon_vma_chain` as anon_vma addresses, newest first (root last), as far as
    /// the bounded walk went.
    pub chain: Vec<u64>,
    /// True length of the chain; larger than `chain.len()` when the walk was cut short.
    pub chain_len: u32,
}

/// One process (one mm; threads are folded into their leader).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessTopo {
    pub pid: u32,
    pub comm: String,
    pub mm: u64,
    pub cgroup_id: u64,
    pub vmas: Vec<VmaTopo>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Topology {
    pub processes: Vec<ProcessTopo>,
    /// Every anon_vma reached from any chain of `processes`, by address.
    pub anon_vmas: BTreeMap<u64, AnonVmaInfo>,
    /// What is kept of the pass's other processes where only some are seeded (`trace -p`):
    /// empty when `processes` is the whole pass.
    #[serde(default, skip_serializing_if = "Foreign::is_empty")]
    pub foreign: Foreign,
}

/// The processes of a pass outside the ones a seed may take, as far as the seed reads them
/// (`snapshot::classify`: a VMA is TREE when another mm links its anon_vma; `trace -p`'s
/// `others`: a seeded process sharing a tree with one not seeded is flagged), and only where
/// they meet the kept processes (the anon_vmas those reference, their trees' roots): the
/// scope's size, not the machine's (issue 9: 317 MiB of seed beside a 1 M-VMA workload).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Foreign {
    /// anon_vmas their chains link, sorted, deduplicated.
    pub linked: Vec<u64>,
    /// (root, pid), sorted by root, one per root: the root of each anon_vma tree their
    /// chains link (the anon_vma's `root` as the pass read it, itself when unread), with the
    /// first such process in pass order.
    pub roots: Vec<(u64, u32)>,
}

impl Foreign {
    pub fn is_empty(&self) -> bool {
        self.linked.is_empty() && self.roots.is_empty()
    }

    /// A chain of theirs links `av`.
    pub fn links(&self, av: u64) -> bool {
        self.linked.binary_search(&av).is_ok()
    }

    /// The first of them (pass order) linking the tree of `root`.
    pub fn root_pid(&self, root: u64) -> Option<u32> {
        self.roots.binary_search_by_key(&root, |e| e.0).ok().map(|at| self.roots[at].1)
    }
}

/// [`Foreign`] built a VMA at a time while a pass streams: 8 bytes a chain entry linked and
/// 16 a (root, process) pair, where a [`ProcessTopo`] held ~120 bytes a VMA with its chain
/// and the anon_vmas' info beside. Sorted once, by [`ForeignBuilder::finish`], which
/// `trace -p` calls after the pass's end marker: sorting as they grow (~2 M chain entries
/// beside manyvmas' 1 M VMAs) made the window between the markers ~15% longer.
#[derive(Default)]
pub struct ForeignBuilder {
    linked: Vec<u64>,
    /// (root, process ordinal in pass order).
    roots: Vec<(u64, u32)>,
    /// Per ordinal: its pid.
    pids: Vec<u32>,
}

impl ForeignBuilder {
    /// A new process (mm) of the pass, in pass order: its ordinal for [`ForeignBuilder::vma`].
    pub fn process(&mut self, pid: u32) -> u32 {
        self.pids.push(pid);
        (self.pids.len() - 1) as u32
    }

    /// One VMA of process `ord`: its chain as (anon_vma, root).
    pub fn vma(&mut self, ord: u32, chain: impl IntoIterator<Item = (u64, u64)>) {
        for (av, root) in chain {
            self.linked.push(av);
            // A chain's entries share one root, and neighbouring VMAs often do: one pair.
            if self.roots.last() != Some(&(root, ord)) {
                self.roots.push((root, ord));
            }
        }
    }

    /// What meets `kept`: the anon_vmas its VMAs and chains reference, the roots of their
    /// trees (`kept.anon_vmas`' `root`, the anon_vma itself when unread). Allocates for the
    /// others only (a few bytes each), not for `kept`, which may be the 1 M VMAs.
    pub fn finish(mut self, kept: &Topology) -> Foreign {
        self.linked.sort_unstable();
        self.linked.dedup();
        compact_roots(&mut self.roots);
        let (mut met_linked, mut met_roots) = (vec![false; self.linked.len()], vec![false; self.roots.len()]);
        for v in kept.processes.iter().flat_map(|p| &p.vmas) {
            if !self.linked.is_empty() {
                for a in v.anon_vma.iter().chain(&v.chain) {
                    if let Ok(i) = self.linked.binary_search(a) {
                        met_linked[i] = true;
                    }
                }
            }
            if !self.roots.is_empty() {
                for a in &v.chain {
                    let r = kept.anon_vmas.get(a).map_or(*a, |i| i.root);
                    if let Ok(i) = self.roots.binary_search_by_key(&r, |e| e.0) {
                        met_roots[i] = true;
                    }
                }
            }
        }
        let mut met = met_linked.into_iter();
        self.linked.retain(|_| met.next() == Some(true));
        self.linked.shrink_to_fit();
        let mut met = met_roots.into_iter();
        self.roots.retain(|_| met.next() == Some(true));
        let pids = self.pids;
        Foreign { linked: self.linked, roots: self.roots.into_iter().map(|(r, ord)| (r, pids[ord as usize])).collect() }
    }
}

/// Sorted by root, one per root: the lowest ordinal (the first process in pass order).
fn compact_roots(roots: &mut Vec<(u64, u32)>) {
    roots.sort_unstable();
    roots.dedup_by_key(|e| e.0);
}

impl Topology {
    /// Keeps whole only the processes `keep` takes; the others go into [`Topology::foreign`]
    /// (as far as they meet the kept ones), and the anon_vmas only they reached go. A seed of
    /// the kept processes reads the same off either form. (A topology already reduced keeps
    /// its foreign part; a process moved now comes after those in pass order.)
    pub fn reduce(&mut self, keep: impl Fn(u32) -> bool) {
        let mut b = ForeignBuilder::default();
        let (kept, gone): (Vec<ProcessTopo>, Vec<ProcessTopo>) = std::mem::take(&mut self.processes).into_iter().partition(|p| keep(p.pid));
        self.processes = kept;
        let prior = std::mem::take(&mut self.foreign);
        for p in &gone {
            let ord = b.process(p.pid);
            for v in &p.vmas {
                b.vma(ord, v.chain.iter().map(|a| (*a, self.anon_vmas.get(a).map_or(*a, |i| i.root))));
            }
        }
        drop(gone);
        let mut f = b.finish(self);
        // Kept processes reference only what they did: the earlier part is filtered already.
        f.linked.extend(prior.linked);
        f.linked.sort_unstable();
        f.linked.dedup();
        // The earlier part first: a stable sort keeps its pid where both have a root.
        let mut roots = prior.roots;
        roots.extend(f.roots);
        roots.sort_by_key(|e| e.0);
        roots.dedup_by_key(|e| e.0);
        f.roots = roots;
        self.foreign = f;
        let mut reached: Vec<u64> = self.processes.iter().flat_map(|p| &p.vmas).flat_map(|v| v.chain.iter().copied()).collect();
        reached.sort_unstable();
        reached.dedup();
        self.anon_vmas.retain(|a, _| reached.binary_search(a).is_ok());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first process per root and the links are what a plain pass over everything gives.
    #[test]
    fn the_builder_keeps_the_first_process_of_each_root() {
        let mut kept = Topology::default();
        let vmas = (0..40u64).map(|i| VmaTopo { anon_vma: Some(i * 7), chain: vec![i * 7, i * 3], chain_len: 2, ..Default::default() }).collect();
        kept.processes.push(ProcessTopo { pid: 1, vmas, ..Default::default() });
        let (mut b, mut plain) = (ForeignBuilder::default(), Vec::new());
        for pid in 100..120u32 {
            let ord = b.process(pid);
            for i in 0..1000u64 {
                let (av, root) = ((i * 13 + u64::from(pid)) % 300, (i * 5 + u64::from(pid) * 11) % 120);
                b.vma(ord, [(av, root)]);
                plain.push((av, root, pid));
            }
        }
        let f = b.finish(&kept);
        let refs: Vec<u64> = kept.processes[0].vmas.iter().flat_map(|v| v.chain.clone()).collect();
        let mut linked: Vec<u64> = plain.iter().map(|e| e.0).filter(|a| refs.contains(a)).collect();
        linked.sort_unstable();
        linked.dedup();
        assert_eq!(f.linked, linked);
        let mut roots: Vec<(u64, u32)> = Vec::new();
        for &(_, r, pid) in &plain {
            if refs.contains(&r) && !roots.iter().any(|e| e.0 == r) {
                roots.push((r, pid));
            }
        }
        roots.sort_unstable();
        assert_eq!(f.roots, roots);
        assert!(!f.roots.is_empty() && f.roots.iter().any(|e| e.1 != 100));
    }
}
