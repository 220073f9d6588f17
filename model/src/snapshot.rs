//! The estimate a `snapshot` can make: objects held now (EAGER, what the kernel shows)
//! and what ANON_VMA_LAZY would hold for the same topology (default knobs, spec §3).
//!
//! The lazy state of a VMA is read off the **whole-system** topology, because whether a
//! VMA's anon_vma family is shared depends on other processes (those a `trace -p` seed does
//! not take are in `Topology::foreign`, as far as they link the kept ones' anon_vmas):
//!
//! * no `vma->anon_vma` → NONE: 0 AV / 0 AVC.
//! * chain length L == 1 and no VMA of another mm links that anon_vma → LAZY: 0 / 0
//!   (never forked-from with children alive; split pieces and neighbour-reuse siblings
//!   of the same mm stay LAZY too).
//! * the anon_vma is linked from VMAs of other mms (forked from, descendants alive) →
//!   TREE: exactly as eager (upgraded at fork; `fork_of_tree_parent=upgrade_first` keeps
//!   intermediate generations identical to eager).
//! * L > 1 and nobody else links its anon_vma (a leaf of a fork tree) → TREE_PARENT: no
//!   own anon_vma; chain = L − 1 when `vma->anon_vma` is the chain head (the AV eager
//!   allocated for it at fork), or L when eager reused an ancestor (`anon_vma != head`).
//!
//! Lazy totals are the distinct anon_vmas still linked from any lazy chain and the sum of
//! lazy chain lengths. vm_area_struct counts are equal in both (lazy folio pins may defer
//! some frees, which a snapshot cannot see).
//!
//! Limits: a snapshot cannot see a parent whose children already exited. Lazy has no
//! downgrade, so such a VMA would still be TREE, while the snapshot calls it LAZY: for
//! those the lazy estimate is an upper bound on the savings (`trace` measures them).
//! In the ancestor-reuse case (spec §1.4) the totals are right but the reused anon_vma
//! is attributed to the process that holds it as `vma->anon_vma`.
use std::collections::{BTreeSet, HashMap};

use crate::knobs::{CowInTreeParent, ForkOfTreeParent, Knobs};
use crate::topology::{Topology, VmaTopo};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LazyState {
    None,
    Lazy,
    Tree,
    TreeParent,
}

/// Objects live at one instant (a snapshot sees no allocations or frees, unlike
/// `counts::Counts`' counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LiveObjects {
    pub anon_vma: u64,
    pub anon_vma_chain: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ProcessEstimate {
    pub pid: u32,
    pub comm: String,
    pub vmas: u64,
    pub eager: LiveObjects,
    pub lazy: LiveObjects,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Estimate {
    /// In topology order.
    pub processes: Vec<ProcessEstimate>,
    /// Distinct objects system-wide.
    pub eager: LiveObjects,
    pub lazy: LiveObjects,
    pub vmas: u64,
    /// VMAs per lazy state: none, lazy, tree, tree_parent.
    pub states: [u64; 4],
    /// VMAs whose chain walk was cut short (their chain entries are partly unseen).
    pub truncated_vmas: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotError {
    #[error("a snapshot estimate supports only {0} at its default; history-dependent knobs need `lazyvma trace`")]
    Knob(&'static str),
}

/// Which knobs change what a snapshot can infer; the others act on history it cannot see.
pub(crate) fn check_knobs(k: &Knobs) -> Result<(), SnapshotError> {
    if k.fork_of_tree_parent != ForkOfTreeParent::UpgradeFirst {
        return Err(SnapshotError::Knob("fork_of_tree_parent"));
    }
    if k.cow_in_tree_parent == CowInTreeParent::Upgrade {
        return Err(SnapshotError::Knob("cow_in_tree_parent"));
    }
    Ok(())
}

/// Which mms' chains link each anon_vma: (first mm index, linked by more than one mm).
/// By position in the topology's own map (sorted) where the anon_vma is there: 8 bytes an
/// anon_vma, where a hash map took ~50 (`trace -p`'s seed of 1 M anon_vmas classifies with
/// the whole pass held); a chain entry the map lacks goes to a hash map.
/// Processes kept out of the topology (`Topology::foreign`, `trace -p`) are other mms to
/// every process in it: their links are read off that form.
struct Links<'a> {
    keys: Vec<u64>,
    at: Vec<(u32, bool)>,
    rest: HashMap<u64, (usize, bool)>,
    foreign: &'a crate::topology::Foreign,
}

impl<'a> Links<'a> {
    fn new(topo: &'a Topology) -> Links<'a> {
        let keys: Vec<u64> = topo.anon_vmas.keys().copied().collect();
        let mut l = Links { at: vec![(u32::MAX, false); keys.len()], keys, rest: HashMap::new(), foreign: &topo.foreign };
        for (i, p) in topo.processes.iter().enumerate() {
            for v in &p.vmas {
                for &av in &v.chain {
                    match (l.keys.binary_search(&av), u32::try_from(i).ok().filter(|&i| i != u32::MAX)) {
                        (Ok(at), Some(i)) => {
                            let e = &mut l.at[at];
                            if e.0 == u32::MAX {
                                e.0 = i;
                            }
                            e.1 |= e.0 != i;
                        }
                        _ => {
                            let e = l.rest.entry(av).or_insert((i, false));
                            e.1 |= e.0 != i;
                        }
                    }
                }
            }
        }
        l
    }

    /// Chains of an mm other than `mm_idx` link `av`.
    fn shared(&self, av: u64, mm_idx: usize) -> bool {
        if self.foreign.links(av) {
            return true;
        }
        let at = self.keys.binary_search(&av).ok().map(|at| self.at[at]).filter(|e| e.0 != u32::MAX);
        match at {
            Some((first, many)) => many || first as usize != mm_idx,
            None => self.rest.get(&av).is_some_and(|&(first, many)| many || first != mm_idx),
        }
    }
}

fn state(v: &VmaTopo, mm_idx: usize, links: &Links) -> LazyState {
    let Some(av) = v.anon_vma else { return LazyState::None };
    state_of(links.shared(av, mm_idx), v.chain_len)
}

/// The state of a VMA with an anon_vma: `shared` when chains of another mm link it.
pub fn state_of(shared: bool, chain_len: u32) -> LazyState {
    if shared {
        LazyState::Tree
    } else if chain_len <= 1 {
        LazyState::Lazy
    } else {
        LazyState::TreeParent
    }
}

/// The lazy chain of `v` in `state`: the anon_vmas it still links, and its length.
fn lazy_chain(v: &VmaTopo, state: LazyState) -> (&[u64], u64) {
    let len = u64::from(v.chain_len);
    match state {
        LazyState::None | LazyState::Lazy => (&[], 0),
        LazyState::Tree => (&v.chain, len),
        LazyState::TreeParent if v.chain.first() == v.anon_vma.as_ref() => (v.chain.get(1..).unwrap_or(&[]), len - 1),
        LazyState::TreeParent => (&v.chain, len),
    }
}

/// Per-VMA lazy state, indexed like `topo.processes[i].vmas[j]`.
pub fn classify(topo: &Topology) -> Vec<Vec<LazyState>> {
    let links = Links::new(topo);
    topo.processes.iter().enumerate().map(|(i, p)| p.vmas.iter().map(|v| state(v, i, &links)).collect()).collect()
}

pub fn estimate(topo: &Topology, knobs: &Knobs) -> Result<Estimate, SnapshotError> {
    check_knobs(knobs)?;
    let states = classify(topo);
    let mut est = Estimate::default();
    let (mut eager_avs, mut lazy_avs) = (BTreeSet::new(), BTreeSet::new());
    for (p, states) in topo.processes.iter().zip(&states) {
        let (mut own_eager, mut own_lazy) = (BTreeSet::new(), BTreeSet::new());
        let mut pe =
            ProcessEstimate { pid: p.pid, comm: p.comm.clone(), vmas: p.vmas.len() as u64, eager: LiveObjects::default(), lazy: LiveObjects::default() };
        for (v, &s) in p.vmas.iter().zip(states) {
            let s = if knobs.lazy_enabled || s == LazyState::None { s } else { LazyState::Tree };
            est.states[s as usize] += 1;
            est.truncated_vmas += u64::from(v.chain.len() < v.chain_len as usize);
            eager_avs.extend(v.chain.iter().copied());
            pe.eager.anon_vma_chain += u64::from(v.chain_len);
            own_eager.extend(v.anon_vma);
            let (chain, len) = lazy_chain(v, s);
            lazy_avs.extend(chain.iter().copied());
            pe.lazy.anon_vma_chain += len;
            if s == LazyState::Tree {
                own_lazy.extend(v.anon_vma);
            }
        }
        pe.eager.anon_vma = own_eager.len() as u64;
        pe.lazy.anon_vma = own_lazy.len() as u64;
        est.eager.anon_vma_chain += pe.eager.anon_vma_chain;
        est.lazy.anon_vma_chain += pe.lazy.anon_vma_chain;
        est.vmas += pe.vmas;
        est.processes.push(pe);
    }
    est.eager.anon_vma = eager_avs.len() as u64;
    est.lazy.anon_vma = lazy_avs.len() as u64;
    Ok(est)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::ProcessTopo;

    /// A VMA whose chain is `chain` (newest first) and whose `anon_vma` is `av`.
    fn vma(av: u64, chain: &[u64]) -> VmaTopo {
        VmaTopo { anon_vma: Some(av), chain: chain.to_vec(), chain_len: chain.len() as u32, ..Default::default() }
    }

    fn proc(pid: u32, vmas: Vec<VmaTopo>) -> ProcessTopo {
        ProcessTopo { pid, comm: format!("p{pid}"), mm: u64::from(pid) << 20, vmas, ..Default::default() }
    }

    /// Three test VMAs per process; `gens[g]` = the chain template for generation g,
    /// with `k` added to every address to make the three VMAs' families distinct.
    fn three(pid: u32, av: u64, chain: &[u64]) -> ProcessTopo {
        proc(pid, (0..3).map(|k| vma(av + k, &chain.iter().map(|a| a + k).collect::<Vec<_>>())).collect())
    }

    fn counts(anon_vma: u64, anon_vma_chain: u64) -> LiveObjects {
        LiveObjects { anon_vma, anon_vma_chain }
    }

    fn run(processes: Vec<ProcessTopo>) -> Estimate {
        estimate(&Topology { processes, ..Default::default() }, &Knobs::default()).unwrap()
    }

    #[test]
    fn a_one_process_touches_three() {
        let e = run(vec![three(1, 0xa0, &[0xa0])]);
        assert_eq!((e.eager, e.lazy), (counts(3, 3), counts(0, 0)));
        assert_eq!(e.states, [0, 3, 0, 0]);
    }

    #[test]
    fn b_fork_once_both_alive() {
        let e = run(vec![three(1, 0xa0, &[0xa0]), three(2, 0xb0, &[0xb0, 0xa0])]);
        assert_eq!((e.eager, e.lazy), (counts(6, 9), counts(3, 6)));
        assert_eq!((e.processes[0].eager, e.processes[0].lazy), (counts(3, 3), counts(3, 3)));
        assert_eq!((e.processes[1].eager, e.processes[1].lazy), (counts(3, 6), counts(0, 3)));
    }

    #[test]
    fn c_fork_then_exec_is_an_upper_bound() {
        // The child exec'd: its old mm is gone, the parent's VMAs look never-forked.
        let e = run(vec![three(1, 0xa0, &[0xa0]), proc(2, vec![vma(0xf0, &[0xf0])])]);
        assert_eq!((e.eager, e.lazy), (counts(4, 4), counts(0, 0)));
    }

    #[test]
    fn d_fork_chain_depth_three() {
        let e =
            run(vec![three(1, 0xa0, &[0xa0]), three(2, 0xb0, &[0xb0, 0xa0]), three(3, 0xc0, &[0xc0, 0xb0, 0xa0]), three(4, 0xd0, &[0xd0, 0xc0, 0xb0, 0xa0])]);
        assert_eq!((e.eager, e.lazy), (counts(12, 30), counts(9, 27)));
        assert_eq!(e.processes[3].lazy, counts(0, 9));
        assert_eq!(e.states, [0, 0, 9, 3]);
    }

    #[test]
    fn e_split_pieces_stay_lazy() {
        // mprotect of the middle page: three VMAs of one mm share one anon_vma, L = 1.
        let e = run(vec![proc(1, vec![vma(0xa0, &[0xa0]), vma(0xa0, &[0xa0]), vma(0xa0, &[0xa0])])]);
        assert_eq!((e.eager, e.lazy), (counts(1, 3), counts(0, 0)));
        // The same in a forked child (L = 2): eager 4 AVC more than the parent's.
        let e = run(vec![proc(1, vec![vma(0xa0, &[0xa0])]), proc(2, vec![vma(0xb0, &[0xb0, 0xa0]); 3])]);
        assert_eq!(e.processes[1].eager, counts(1, 6));
        assert_eq!(e.processes[1].lazy, counts(0, 3));
    }

    #[test]
    fn ancestor_reuse_keeps_totals() {
        // P(A) → C(B) → G(D); C exited; G forked H, which reused B (spec §1.4).
        let e = run(vec![proc(1, vec![vma(0xa, &[0xa])]), proc(3, vec![vma(0xd, &[0xd, 0xb, 0xa])]), proc(4, vec![vma(0xb, &[0xd, 0xb, 0xa])])]);
        assert_eq!((e.eager, e.lazy), (counts(3, 7), counts(3, 7)));
    }

    #[test]
    fn reused_ancestor_leaf_keeps_its_whole_chain() {
        // A leaf whose anon_vma is an ancestor's that no other live mm links.
        let e = run(vec![proc(1, vec![vma(0xa, &[0xa])]), proc(4, vec![vma(0xa, &[0xb, 0xa])])]);
        // P's A is linked by the leaf's mm → TREE; the leaf is TREE too (A shared).
        assert_eq!(e.lazy, counts(2, 3));
        let leaf = VmaTopo { anon_vma: Some(0xa), chain: vec![0xb, 0xa], chain_len: 2, ..Default::default() };
        assert_eq!(lazy_chain(&leaf, LazyState::TreeParent).1, 2);
    }

    #[test]
    fn unsupported_knobs_are_named() {
        let mut k = Knobs::default();
        k.set("fork_of_tree_parent=share").unwrap();
        let err = estimate(&Topology::default(), &k).unwrap_err();
        assert!(err.to_string().contains("fork_of_tree_parent"));
        let mut k = Knobs::default();
        k.set("lazy_enabled=false").unwrap();
        let e = estimate(&Topology { processes: vec![three(1, 0xa0, &[0xa0])], ..Default::default() }, &k).unwrap();
        assert_eq!(e.lazy, e.eager);
    }
}
