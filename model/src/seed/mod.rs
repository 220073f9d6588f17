//! A [`Pair`] built from a snapshot [`Topology`] instead of an event stream: what the
//! model needs to follow processes that were already running (issue 3; `trace -p`).
//!
//! * EAGER holds every anon_vma and chain exactly as the kernel showed them: the same
//!   chains (newest first, root last), `root`, `parent`, `refcount`, `num_children` and
//!   `num_active_vmas`, so later forks reuse, and exits free, as the kernel would.
//! * LAZY holds the state `snapshot::classify` gives each VMA (NONE, LAZY, TREE,
//!   TREE_PARENT with the chain `snapshot` documents), so its live counts equal
//!   `snapshot::estimate`'s lazy ones. Its anon_vma fields are recomputed over its own
//!   chains; a TREE_PARENT VMA drops its chain head when that is its own anon_vma.
//!
//! Links from outside the topology (a snapshot of some processes of a fork family): an
//! anon_vma whose `num_active_vmas` or `num_children` exceeds what the topology shows is
//! linked from elsewhere, so its chain node is pinned (never emptied by the modelled
//! processes), and `refcount` beyond the topology's holders (other processes' anon_vmas,
//! KSM, transient pins) is kept and never dropped. A link from outside that neither count
//! shows (an outside VMA whose chain passes through an anon_vma it neither uses nor
//! descends from: the ancestor-reuse case of spec §1.4) is not seen: seed whole families.
//!
//! Refused, never guessed ([`SeedError`], naming the pid and VMA): a chain cut short, an
//! anon_vma referenced but missing, a chain whose root is not last or spans two roots, two
//! chains disagreeing on what follows an anon_vma, a VMA whose anon_vma is not in its own
//! chain, counts below what the topology shows, VMAs the model cannot hold.
//!
//! Not knowable from a snapshot, so set by rule: a LAZY VMA owns its folios (lazy folio
//! pins on a later merge of split pieces may differ: vm_area_struct counts only), history
//! bits are SEEN only, and a TREE_PARENT VMA has no lazy folios.
mod eager;
mod export;
mod lazy;

pub use export::to_topology;

use eager::{build, check_processes, SeenCounts};
use lazy::lazy_avs;

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::engine::anon_vma::{SeedAv, NIL};
use crate::engine::vma::{Mm, Vma, LAZY_FOLIOS};
use crate::engine::{EAGER, LAZY};
use crate::event::{vm, Pid};
use crate::kernel::Kernel;
use crate::knobs::Knobs;
use crate::lazy::history::bit;
use crate::pair::Pair;
use crate::snapshot::{self, LazyState, SnapshotError};
use crate::topology::{AnonVmaInfo, ProcessTopo, Topology};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SeedError {
    #[error("pid {pid} VMA {start:#x}: {what}")]
    Vma { pid: Pid, start: u64, what: String },
    #[error("pid {pid}: {what}")]
    Process { pid: Pid, what: String },
    #[error("anon_vma {av:#x} (first linked by pid {pid}): {what}")]
    AnonVma { pid: Pid, av: u64, what: String },
    #[error(transparent)]
    Knob(#[from] SnapshotError),
}

impl SeedError {
    /// The process the error is about.
    pub fn pid(&self) -> Option<Pid> {
        match self {
            SeedError::Vma { pid, .. } | SeedError::Process { pid, .. } | SeedError::AnonVma { pid, .. } => Some(*pid),
            SeedError::Knob(_) => None,
        }
    }
}

/// What a seed built, and what it left out.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SeedReport {
    /// Processes seeded, in topology order.
    pub seeded: Vec<Pid>,
    /// Processes left out (only with [`Seed::skip_bad`]) and why.
    pub skipped: Vec<(Pid, String)>,
    pub vmas: u64,
    /// anon_vmas whose chain node is pinned by links from outside the topology.
    pub pinned: u64,
    /// VMAs per lazy state: none, lazy, tree, tree_parent.
    pub states: [u64; 4],
}

/// How to seed: the kernel's rules, the lazy knobs, and whether a process the seed must
/// refuse fails the whole seed or is left out.
#[derive(Clone, Copy, Debug)]
pub struct Seed {
    pub kernel: Kernel,
    pub knobs: Knobs,
    pub skip_bad: bool,
}

impl Pair {
    /// Both halves' state from `topo` (strict: any refusal fails the seed).
    pub fn from_topology(topo: &Topology, kernel: Kernel, knobs: Knobs) -> Result<(Pair, SeedReport), SeedError> {
        Seed { kernel, knobs, skip_bad: false }.run(topo)
    }
}

/// kernel vm_flags → the model's flags (include/linux/mm.h, the same on 6.1 and 6.18).
pub const VM_FLAGS: [(u64, u16); 14] = [
    (0x1, vm::READ),
    (0x2, vm::WRITE),
    (0x4, vm::EXEC),
    (0x8, vm::SHARED),
    (0x2000, vm::LOCKED),
    (0x8000, vm::SEQ_READ),
    (0x10000, vm::RAND_READ),
    (0x20000, vm::DONTCOPY),
    (0x80000, vm::LOCKONFAULT),
    (0x2000000, vm::WIPEONFORK),
    (0x4000000, vm::DONTDUMP),
    (0x20000000, vm::HUGEPAGE),
    (0x40000000, vm::NOHUGEPAGE),
    (0x80000000, vm::MERGEABLE),
];

pub fn model_flags(vm_flags: u64) -> u16 {
    VM_FLAGS.iter().filter(|(k, _)| vm_flags & k != 0).fold(0, |f, (_, m)| f | m)
}

/// A VMA's (chain head, anon_vma) as anon_vma indices, both or neither: 8 bytes, not a
/// pair of `Option<usize>`'s 32 (held per VMA of the seed until the trace ends).
#[derive(Clone, Copy)]
struct Link(u32, u32);

impl Link {
    const NONE: Link = Link(u32::MAX, u32::MAX);

    fn new(head: usize, av: usize) -> Link {
        let ix = |i: usize| u32::try_from(i).ok().filter(|&i| i != u32::MAX).expect("fewer than 2^32 - 1 anon_vmas");
        Link(ix(head), ix(av))
    }

    fn get(self) -> (Option<usize>, Option<usize>) {
        let ix = |i: u32| (i != u32::MAX).then_some(i as usize);
        (ix(self.0), ix(self.1))
    }
}

/// The eager structure of a topology: anon_vmas by index, and per VMA its chain head and
/// anon_vma (indices).
struct Built {
    eager: Vec<SeedAv>,
    /// Per anon_vma: its address.
    addrs: Vec<u64>,
    /// Per process, per VMA: (chain head, vma->anon_vma).
    vmas: Vec<Vec<Link>>,
    /// Per anon_vma: what the topology itself shows of it.
    seen: Vec<SeenCounts>,
}

impl Seed {
    /// Seed every process of `topo`.
    pub fn run(&self, topo: &Topology) -> Result<(Pair, SeedReport), SeedError> {
        self.run_some(topo, None)
    }

    /// Seed the processes `pids` (all when `None`) of `topo`. Lazy states are read off the
    /// whole topology, as `snapshot` does: a parent whose child is not seeded is still TREE.
    pub fn run_some(&self, topo: &Topology, pids: Option<&[Pid]>) -> Result<(Pair, SeedReport), SeedError> {
        let all: Vec<(Pid, Pid)> = match pids {
            Some(p) => p.iter().map(|&p| (p, p)).collect(),
            None => topo.processes.iter().map(|p| (p.pid, p.pid)).collect(),
        };
        self.run_mapped(topo, &all)
    }

    /// `run_some` with each process renamed in the model: `(topology pid, model pid)`
    /// (`trace` names processes by its own index). Reports and errors name topology pids.
    pub fn run_mapped(&self, topo: &Topology, pids: &[(Pid, Pid)]) -> Result<(Pair, SeedReport), SeedError> {
        let mut pair = Pair::new(self.kernel, self.knobs);
        let report = self.run_into(&mut pair, topo, pids)?;
        Ok((pair, report))
    }

    /// `run_mapped` into a model that may already hold other processes (`trace -p`: some
    /// exec'd before the snapshot). Their model pids must not be among `pids`' and their
    /// anon_vmas are not shared with the seeded ones (processes modelled from their exec or
    /// from the fork of one are never in the snapshot's candidates); on an error `pair` is
    /// unchanged.
    pub fn run_into(&self, pair: &mut Pair, topo: &Topology, pids: &[(Pid, Pid)]) -> Result<SeedReport, SeedError> {
        self.check_into(pair, pids)?;
        Ok(self.prepare(topo, pids)?.apply(pair, self.knobs.lazy_enabled))
    }

    /// `run_into` from what [`Seed::prepare_owned`] (or `prepare`) read.
    pub fn apply_into(&self, pair: &mut Pair, prep: &Prepared) -> Result<SeedReport, SeedError> {
        self.check_into(pair, &prep.pids)?;
        Ok(prep.apply(pair, self.knobs.lazy_enabled))
    }

    fn check_into(&self, pair: &mut Pair, pids: &[(Pid, Pid)]) -> Result<(), SeedError> {
        self.check_knobs()?;
        if let Some(&(pid, m)) = pids.iter().find(|(_, m)| pair.parts_mut().2.contains_key(m)) {
            return Err(SeedError::Process { pid, what: format!("model pid {m} is already in the model") });
        }
        Ok(())
    }

    /// The knobs a snapshot's classification supports.
    pub fn check_knobs(&self) -> Result<(), SeedError> {
        Ok(snapshot::check_knobs(&self.knobs)?)
    }

    /// What a seed of `pids` reads off `topo` whatever the knobs (checks, the eager
    /// structure, the lazy states): a knob sweep does it once, not once per knob value.
    /// Copies the processes seeded and the anon_vmas they reach ([`Seed::prepare_owned`]
    /// copies nothing).
    pub fn prepare(&self, topo: &Topology, pids: &[(Pid, Pid)]) -> Result<Prepared, SeedError> {
        let states = classified(topo, pids);
        let processes: Vec<ProcessTopo> = topo.processes.iter().filter(|p| seeds(pids, p.pid)).cloned().collect();
        let mut anon_vmas = BTreeMap::new();
        for a in processes.iter().flat_map(|p| &p.vmas).flat_map(|v| &v.chain) {
            if let Some(i) = topo.anon_vmas.get(a) {
                anon_vmas.entry(*a).or_insert_with(|| i.clone());
            }
        }
        self.prepare_some(Topology { processes, anon_vmas, ..Default::default() }, states, pids)
    }

    /// [`Seed::prepare`] from a pass the caller no longer needs (`trace -p`: ≥ 1 M VMAs):
    /// the processes not seeded and the anon_vmas only they reach are dropped in place.
    pub fn prepare_owned(&self, mut topo: Topology, pids: &[(Pid, Pid)]) -> Result<Prepared, SeedError> {
        let states = classified(&topo, pids);
        topo.processes.retain(|p| seeds(pids, p.pid));
        retain_reachable(&mut topo);
        self.prepare_some(topo, states, pids)
    }

    /// `topo`: the processes of `pids` and the anon_vmas they reach; `states`: theirs,
    /// classified over the whole pass.
    fn prepare_some(&self, mut topo: Topology, mut states: HashMap<Pid, Vec<LazyState>>, pids: &[(Pid, Pid)]) -> Result<Prepared, SeedError> {
        let mut skipped = Vec::new();
        let mut refused = Topology::default();
        // What the model takes of each VMA, made by `build` one process at a time once none
        // can be refused: each process's `VmaTopo`s and chains go as its copy is made.
        let mut procs: Vec<(Pid, Vec<SeedVma>)> = Vec::new();
        let mut take = |ps: Vec<ProcessTopo>| {
            procs.reserve_exact(ps.len());
            let mut vmas = 0;
            for p in ps {
                vmas += p.vmas.len();
                procs.push((p.pid, p.vmas.iter().map(SeedVma::from).collect()));
            }
            if vmas > 1 << 16 {
                // They were read on another thread (`trace -p`'s seeding thread), into its
                // malloc arena: their pages go back only so, before the arrays that follow.
                trim();
            }
        };
        let built = loop {
            let avs = Avs::of(&topo.anon_vmas);
            match check_processes(&topo.processes, &avs).and_then(|()| build(&mut topo.processes, &avs, self.kernel, &mut take)) {
                Ok(b) => break b,
                Err(e) => match e.pid().filter(|&pid| self.skip_bad && topo.processes.iter().any(|p| p.pid == pid)) {
                    Some(pid) => {
                        skipped.push((pid, e.to_string()));
                        // Kept with what it links, for the caller to tell who shares with it.
                        while let Some(at) = topo.processes.iter().position(|p| p.pid == pid) {
                            let p = topo.processes.remove(at);
                            for a in p.vmas.iter().flat_map(|v| &v.chain) {
                                if let Some(i) = topo.anon_vmas.get(a) {
                                    refused.anon_vmas.entry(*a).or_insert_with(|| i.clone());
                                }
                            }
                            refused.processes.push(p);
                        }
                        drop(avs);
                        retain_reachable(&mut topo);
                    }
                    None => return Err(e),
                },
            }
        };
        if built.eager.len() > 1 << 16 {
            // build's own arrays went (~44 bytes an anon_vma, beside the whole pass): their
            // pages back before the VMAs' copy is made.
            trim();
        }
        let states: Vec<Vec<LazyState>> = procs.iter().map(|p| states.remove(&p.0).expect("classified")).collect();
        // The anon_vma map goes before the model is built.
        drop(topo);
        Ok(Prepared { procs, pids: pids.to_vec(), states, built, skipped, refused })
    }

    /// A new model seeded from `prep` under these knobs: `run_mapped` without redoing
    /// what does not depend on them.
    pub fn run_prepared(&self, prep: &Prepared) -> Result<(Pair, SeedReport), SeedError> {
        self.check_knobs()?;
        let mut pair = Pair::new(self.kernel, self.knobs);
        let report = prep.apply(&mut pair, self.knobs.lazy_enabled);
        Ok((pair, report))
    }
}

/// What the model takes of a [`VmaTopo`](crate::topology::VmaTopo): 32 bytes, not ~120
/// (its chain is in [`Built`]).
struct SeedVma {
    start: u64,
    end: u64,
    pgoff: u64,
    chain_len: u32,
    flags: u16,
}

impl From<&crate::topology::VmaTopo> for SeedVma {
    fn from(v: &crate::topology::VmaTopo) -> SeedVma {
        SeedVma { start: v.start, end: v.end, pgoff: v.pgoff, chain_len: v.chain_len, flags: model_flags(v.flags) }
    }
}

/// A seed's knob-independent part ([`Seed::prepare`]).
pub struct Prepared {
    /// The processes seeded, in topology order: pid, VMAs.
    procs: Vec<(Pid, Vec<SeedVma>)>,
    pids: Vec<(Pid, Pid)>,
    states: Vec<Vec<LazyState>>,
    built: Built,
    skipped: Vec<(Pid, String)>,
    /// The processes `skipped`, with the anon_vmas they link.
    refused: Topology,
}

impl Prepared {
    /// The roots of the anon_vma trees seeded process `pid` links (addresses).
    pub fn roots(&self, pid: Pid) -> Option<HashSet<u64>> {
        let at = self.procs.iter().position(|p| p.0 == pid)?;
        let b = &self.built;
        // Checked: every anon_vma of a chain has the chain's root.
        Some(b.vmas[at].iter().filter_map(|l| l.get().0).map(|h| b.addrs[b.eager[h].root()]).collect())
    }

    /// The processes the seed refused ([`Seed::skip_bad`]), and the anon_vmas they link.
    pub fn refused(&self) -> &Topology {
        &self.refused
    }

    /// (topology pid, model pid) of every process asked for, seeded or refused.
    pub fn pids(&self) -> &[(Pid, Pid)] {
        &self.pids
    }

    /// Both halves' objects and VMAs into `pair`, whose model pids `pids` must be free.
    fn apply(&self, pair: &mut Pair, lazy_enabled: bool) -> SeedReport {
        let (built, states, pids) = (&self.built, &self.states, &self.pids);
        let mut report = SeedReport { skipped: self.skipped.clone(), ..Default::default() };
        let mut lazy = lazy_avs(built, states, lazy_enabled);
        report.pinned = built.seen.iter().filter(|s| s.pinned).count() as u64;
        let (eager_m, lazy_m, procs) = pair.parts_mut();
        let eager_ids = eager_m.core.avs.seed(&built.eager);
        // Gone once in the model, before the VMAs are (the peak of a 1 M-VMA seed).
        let lazy_ids = lazy_m.core.avs.seed(&std::mem::take(&mut lazy.avs));
        let (mut avc_e, mut avc_l) = (0u64, 0u64);
        for (((pid, pvmas), vmas), st) in self.procs.iter().zip(&built.vmas).zip(states) {
            // Exact: the model's arrays are most of what a seed of ≥ 1 M VMAs holds.
            let mut mms = [(); 2].map(|()| Mm { vmas: Vec::with_capacity(pvmas.len()) });
            for ((v, link), &s) in pvmas.iter().zip(vmas).zip(st) {
                let (head, av) = link.get();
                let s = if lazy_enabled || s == LazyState::None { s } else { LazyState::Tree };
                report.states[s as usize] += 1;
                let plain = Vma::new(v.start, v.end, v.pgoff, v.flags);
                let mut e = plain;
                if let (Some(h), Some(a)) = (head, av) {
                    e.chain = eager_ids[h];
                    e.av = eager_ids[a];
                    avc_e += u64::from(v.chain_len);
                }
                let mut l = plain;
                match s {
                    LazyState::None => {}
                    LazyState::Lazy => {
                        l.add_flags(LAZY_FOLIOS);
                        l.set_hist(bit::SEEN);
                        l.set_owner(true);
                    }
                    LazyState::Tree | LazyState::TreeParent => {
                        let (h, a) = lazy.chain_of(built, head, av, s);
                        l.chain = h.map_or(NIL, |h| lazy_ids[h]);
                        l.av = a.map_or(NIL, |a| lazy_ids[a]);
                        avc_l += h.map_or(0, |h| u64::from(lazy.len[h]));
                    }
                }
                mms[EAGER].vmas.push(e);
                mms[LAZY].vmas.push(l);
            }
            report.vmas += pvmas.len() as u64;
            report.seeded.push(*pid);
            let model_pid = pids.iter().find(|&&(t, _)| t == *pid).map_or(*pid, |&(_, m)| m);
            procs.insert(model_pid, mms);
        }
        for (m, avc) in [(eager_m, avc_e), (lazy_m, avc_l)] {
            m.core.avs.avc.add(avc);
            m.core.vma.add(report.vmas);
        }
        report
    }
}

fn seeds(pids: &[(Pid, Pid)], pid: Pid) -> bool {
    pids.iter().any(|&(t, _)| t == pid)
}

/// The lazy states of the processes of `pids`, read off the whole topology, as `snapshot`
/// does: a parent whose child is not seeded is still TREE.
fn classified(topo: &Topology, pids: &[(Pid, Pid)]) -> HashMap<Pid, Vec<LazyState>> {
    topo.processes.iter().map(|p| p.pid).zip(snapshot::classify(topo)).filter(|(p, _)| seeds(pids, *p)).collect()
}

/// A topology's anon_vmas in address order, by position: what the seed's arrays are
/// indexed by, found by binary search (16 bytes an anon_vma beside the map, where a hash
/// map from address to index took ~36: 1 M anon_vmas at `trace -p`'s peak).
pub(super) struct Avs<'a> {
    keys: Vec<u64>,
    pub(super) info: Vec<&'a AnonVmaInfo>,
}

impl<'a> Avs<'a> {
    fn of(map: &'a BTreeMap<u64, AnonVmaInfo>) -> Avs<'a> {
        let mut avs = Avs { keys: Vec::with_capacity(map.len()), info: Vec::with_capacity(map.len()) };
        for (k, i) in map {
            avs.keys.push(*k);
            avs.info.push(i);
        }
        avs
    }

    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Where anon_vma `a` is.
    pub(super) fn pos(&self, a: u64) -> Option<usize> {
        self.keys.binary_search(&a).ok()
    }

    pub(super) fn get(&self, a: u64) -> Option<&'a AnonVmaInfo> {
        self.pos(a).map(|p| self.info[p])
    }
}

/// Hands the pages of freed memory back to the kernel (glibc keeps them, per arena).
fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: no argument but the pad to keep; glibc walks its own arenas under their locks.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// Drops every anon_vma the topology's chains no longer reach.
fn retain_reachable(topo: &mut Topology) {
    let mut reached: Vec<u64> = topo.processes.iter().flat_map(|p| &p.vmas).flat_map(|v| v.chain.iter().copied()).collect();
    reached.sort_unstable();
    reached.dedup();
    topo.anon_vmas.retain(|a, _| reached.binary_search(a).is_ok());
}
