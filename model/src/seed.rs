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
use std::collections::{BTreeMap, HashMap};

use crate::eager::anon_vma::{SeedAv, NIL};
use crate::eager::vma::{Mm, Vma, ADDR_LIMIT, LAZY_FOLIOS};
use crate::eager::{EAGER, LAZY};
use crate::event::{vm, Pid, PAGE_SIZE, PGOFF_BITS};
use crate::kernel::Kernel;
use crate::knobs::Knobs;
use crate::lazy::history::bit;
use crate::pair::Pair;
use crate::snapshot::{self, LazyState, SnapshotError};
use crate::topology::{AnonVmaInfo, ProcessTopo, Topology, VmaTopo};

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
pub const VM_FLAGS: [(u64, u8); 7] = [
    (0x1, vm::READ),
    (0x2, vm::WRITE),
    (0x4, vm::EXEC),
    (0x8, vm::SHARED),
    (0x20000, vm::DONTCOPY),
    (0x2000000, vm::WIPEONFORK),
    (0x80000000, vm::MERGEABLE),
];

pub fn model_flags(vm_flags: u64) -> u8 {
    VM_FLAGS.iter().filter(|(k, _)| vm_flags & k != 0).fold(0, |f, (_, m)| f | m)
}

fn kernel_flags(flags: u8) -> u64 {
    VM_FLAGS.iter().filter(|(_, m)| flags & m != 0).fold(0, |f, (k, _)| f | k)
}

/// The eager structure of a topology: anon_vmas by index, and per VMA its chain head and
/// anon_vma (indices).
struct Built {
    eager: Vec<SeedAv>,
    /// Per process, per VMA: (chain head, vma->anon_vma).
    vmas: Vec<Vec<(Option<usize>, Option<usize>)>>,
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
        // The knobs a snapshot's classification supports.
        snapshot::estimate(&Topology::default(), &self.knobs)?;
        let mut states: HashMap<Pid, Vec<LazyState>> =
            topo.processes.iter().map(|p| p.pid).zip(snapshot::classify(topo)).collect();
        let mut topo = topo.clone();
        topo.processes.retain(|p| pids.iter().any(|&(t, _)| t == p.pid));
        topo.anon_vmas = reachable(&topo);
        let mut skipped = Vec::new();
        let built = loop {
            match check_processes(&topo).and_then(|()| build(&topo, self.kernel)) {
                Ok(b) => break b,
                Err(e) => match e.pid().filter(|&pid| self.skip_bad && topo.processes.iter().any(|p| p.pid == pid)) {
                    Some(pid) => {
                        skipped.push((pid, e.to_string()));
                        topo.processes.retain(|p| p.pid != pid);
                        topo.anon_vmas = reachable(&topo);
                    }
                    None => return Err(e),
                },
            }
        };
        let states: Vec<Vec<LazyState>> = topo.processes.iter().map(|p| states.remove(&p.pid).expect("classified")).collect();
        let mut pair = Pair::new(self.kernel, self.knobs);
        let mut report = SeedReport { skipped, ..Default::default() };
        let lazy = lazy_avs(&built, &topo, &states, self.knobs.lazy_enabled);
        report.pinned = built.seen.iter().filter(|s| s.pinned).count() as u64;
        let (eager_m, lazy_m, procs) = pair.parts_mut();
        let eager_ids = eager_m.core.avs.seed(&built.eager);
        let lazy_ids = lazy_m.core.avs.seed(&lazy.avs);
        let (mut avc_e, mut avc_l) = (0u64, 0u64);
        for ((p, vmas), st) in topo.processes.iter().zip(&built.vmas).zip(&states) {
            let mut mms = [Mm::default(), Mm::default()];
            for ((v, &(head, av)), &s) in p.vmas.iter().zip(vmas).zip(st) {
                let s = if self.knobs.lazy_enabled || s == LazyState::None { s } else { LazyState::Tree };
                report.states[s as usize] += 1;
                let plain = Vma::new(v.start, v.end, v.pgoff, model_flags(v.flags));
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
                        let (h, a) = lazy.chain_of(&built, head, av, s);
                        l.chain = h.map_or(NIL, |h| lazy_ids[h]);
                        l.av = a.map_or(NIL, |a| lazy_ids[a]);
                        avc_l += h.map_or(0, |h| lazy.len[h]);
                    }
                }
                mms[EAGER].vmas.push(e);
                mms[LAZY].vmas.push(l);
            }
            report.vmas += p.vmas.len() as u64;
            report.seeded.push(p.pid);
            let model_pid = pids.iter().find(|&&(t, _)| t == p.pid).map_or(p.pid, |&(_, m)| m);
            procs.insert(model_pid, mms);
        }
        for (m, avc) in [(eager_m, avc_e), (lazy_m, avc_l)] {
            m.core.avs.avc.add(avc);
            m.core.vma.add(report.vmas);
        }
        Ok((pair, report))
    }
}

/// Every anon_vma the topology's chains still reach.
fn reachable(topo: &Topology) -> BTreeMap<u64, AnonVmaInfo> {
    let mut out = BTreeMap::new();
    for v in topo.processes.iter().flat_map(|p| &p.vmas) {
        for a in &v.chain {
            if let Some(i) = topo.anon_vmas.get(a) {
                out.insert(*a, i.clone());
            }
        }
    }
    out
}

/// What each process alone must satisfy: VMAs the model can hold, chains seen whole,
/// anon_vmas present, root last.
fn check_processes(topo: &Topology) -> Result<(), SeedError> {
    let mut pids = std::collections::HashSet::new();
    for p in &topo.processes {
        if !pids.insert(p.pid) {
            return Err(SeedError::Process { pid: p.pid, what: "listed twice".into() });
        }
        let mut last_end = 0;
        for v in &p.vmas {
            let err = |what: String| SeedError::Vma { pid: p.pid, start: v.start, what };
            if v.start % PAGE_SIZE != 0 || v.end % PAGE_SIZE != 0 || v.start >= v.end || v.end > ADDR_LIMIT {
                return Err(err(format!("bounds {:#x}..{:#x} the model cannot hold", v.start, v.end)));
            }
            if v.start < last_end {
                return Err(err("overlaps or precedes the VMA before it".into()));
            }
            last_end = v.end;
            if v.pgoff + (v.end - v.start) / PAGE_SIZE > 1 << PGOFF_BITS {
                return Err(err(format!("pgoff {:#x} is above the model's 2^{PGOFF_BITS}", v.pgoff)));
            }
            if v.chain.len() < v.chain_len as usize {
                return Err(err(format!("chain cut short: {} of {} entries seen", v.chain.len(), v.chain_len)));
            }
            if v.chain.len() > v.chain_len as usize {
                return Err(err(format!("{} chain entries but chain_len {}", v.chain.len(), v.chain_len)));
            }
            let Some(&root) = v.chain.last() else {
                if let Some(av) = v.anon_vma {
                    return Err(err(format!("anon_vma {av:#x} but an empty chain")));
                }
                continue;
            };
            let Some(av) = v.anon_vma else {
                return Err(err("a chain but no anon_vma".into()));
            };
            if !v.chain.contains(&av) {
                return Err(err(format!("anon_vma {av:#x} is not in its own chain")));
            }
            for (i, a) in v.chain.iter().enumerate() {
                let info = topo.anon_vmas.get(a).ok_or_else(|| err(format!("anon_vma {a:#x} of its chain is missing from the topology")))?;
                if info.root != root {
                    return Err(err(format!("anon_vma {a:#x} has root {:#x}, its chain ends at {root:#x}", info.root)));
                }
                if v.chain[..i].contains(a) {
                    return Err(err(format!("anon_vma {a:#x} twice in its chain")));
                }
            }
            if topo.anon_vmas[&root].parent != root {
                return Err(err(format!("root {root:#x} has a parent")));
            }
        }
    }
    Ok(())
}

/// anon_vma index by address, with the pid that first linked it.
struct Index {
    of: HashMap<u64, usize>,
    addrs: Vec<u64>,
    first_pid: Vec<Pid>,
}

fn build(topo: &Topology, kernel: Kernel) -> Result<Built, SeedError> {
    let mut ix = Index { of: HashMap::new(), addrs: Vec::new(), first_pid: Vec::new() };
    for p in &topo.processes {
        for v in &p.vmas {
            for &a in &v.chain {
                ix.of.entry(a).or_insert_with(|| {
                    ix.addrs.push(a);
                    ix.first_pid.push(p.pid);
                    ix.addrs.len() - 1
                });
            }
        }
    }
    let n = ix.addrs.len();
    let info: Vec<&AnonVmaInfo> = ix.addrs.iter().map(|a| &topo.anon_vmas[a]).collect();
    let av_err = |i: usize, what: String| SeedError::AnonVma { pid: ix.first_pid[i], av: ix.addrs[i], what };
    // The chain after each anon_vma is the same in every chain through it (the kernel
    // builds chains by cloning whole chains and putting one new anon_vma in front).
    let mut next: Vec<Option<Option<usize>>> = vec![None; n];
    let mut heads = vec![0u32; n];
    let mut active = vec![0u32; n];
    let mut vmas = Vec::with_capacity(topo.processes.len());
    let mut chain_of_av: HashMap<usize, &[u64]> = HashMap::new();
    for p in &topo.processes {
        let mut pv = Vec::with_capacity(p.vmas.len());
        for v in &p.vmas {
            if v.chain.is_empty() {
                pv.push((None, None));
                continue;
            }
            let idx: Vec<usize> = v.chain.iter().map(|a| ix.of[a]).collect();
            for (k, &x) in idx.iter().enumerate() {
                let after = idx.get(k + 1).copied();
                match next[x] {
                    None => next[x] = Some(after),
                    Some(seen) if seen != after => {
                        let what = format!("chain continues with {:#x} here but {:#x} elsewhere", v.chain.get(k + 1).copied().unwrap_or(0), seen.map_or(0, |s| ix.addrs[s]));
                        return Err(SeedError::Vma { pid: p.pid, start: v.start, what });
                    }
                    Some(_) => {}
                }
            }
            let av = ix.of[&v.anon_vma.expect("checked")];
            match chain_of_av.get(&av) {
                Some(c) if *c != v.chain.as_slice() => {
                    let what = format!("shares anon_vma {:#x} with a VMA of another chain", ix.addrs[av]);
                    return Err(SeedError::Vma { pid: p.pid, start: v.start, what });
                }
                _ => {
                    chain_of_av.insert(av, &v.chain);
                }
            }
            heads[idx[0]] += 1;
            active[av] += 1;
            pv.push((Some(idx[0]), Some(av)));
        }
        vmas.push(pv);
    }
    let mut nexts = vec![0u32; n];
    let mut children = vec![0u32; n];
    let mut rooted = vec![0u32; n];
    let mut parent = vec![0usize; n];
    for x in 0..n {
        if let Some(Some(y)) = next[x] {
            nexts[y] += 1;
        }
        let i = info[x];
        let p = *ix.of.get(&i.parent).ok_or_else(|| av_err(x, format!("parent {:#x} is missing from the topology", i.parent)))?;
        // anon_vma_fork clones the parent VMA's chain, which holds the parent, behind the
        // child: every chain through an anon_vma holds its parent after it.
        if !std::iter::successors(Some(x), |&y| next[y].flatten()).any(|y| y == p) {
            return Err(av_err(x, format!("parent {:#x} is not on its chain", i.parent)));
        }
        parent[x] = p;
        if p != x {
            children[p] += 1;
            rooted[ix.of[&i.root]] += 1;
        }
    }
    let mut eager = Vec::with_capacity(n);
    let mut seen = Vec::with_capacity(n);
    for x in 0..n {
        let i = info[x];
        let root = ix.of[&i.root];
        // The root's self-parent link counts once in its num_children.
        let seen_children = children[x] + u32::from(root == x);
        let (nc, na) = match i.degree {
            Some(d) if kernel == Kernel::Pre6_0 => {
                let d = u32::try_from(d).map_err(|_| av_err(x, format!("degree {d} out of range")))?;
                let seen = seen_children + active[x];
                if d < seen {
                    return Err(av_err(x, format!("degree {d} but {seen} holders in the topology")));
                }
                // Outside holders cannot be told apart: the reuse test reads only the sum.
                (seen_children, active[x] + (d - seen))
            }
            Some(_) => return Err(av_err(x, format!("a pre-6.0 `degree` field, but kernel rules {}", kernel.name()))),
            None => {
                let c = u32::try_from(i.num_children).map_err(|_| av_err(x, "num_children out of range".into()))?;
                let a = u32::try_from(i.num_active_vmas).map_err(|_| av_err(x, "num_active_vmas out of range".into()))?;
                if c < seen_children || a < active[x] {
                    let what = format!("num_children {c} / num_active_vmas {a}, but the topology shows {seen_children} / {}", active[x]);
                    return Err(av_err(x, what));
                }
                (c, a)
            }
        };
        let outside = nc > seen_children || na > active[x];
        let holders = 1 + rooted[x];
        let refcount = u32::try_from(i.refcount).ok().filter(|&r| r >= holders);
        let refcount = refcount.ok_or_else(|| av_err(x, format!("refcount {} below its {holders} holders in the topology", i.refcount)))?;
        seen.push(SeenCounts { children: seen_children.min(nc), active: active[x].min(na), holders, pinned: outside });
        eager.push(SeedAv {
            root,
            parent: parent[x],
            next: next[x].flatten(),
            refcount,
            num_children: nc,
            num_active_vmas: na,
            refs: heads[x] + nexts[x] + u32::from(outside),
        });
    }
    Ok(Built { eager, vmas, seen })
}

/// The lazy side's anon_vmas: those its chains still link, renumbered.
struct LazyAvs {
    avs: Vec<SeedAv>,
    /// eager index → lazy index.
    of: Vec<Option<usize>>,
    /// Chain length per lazy index.
    len: Vec<u64>,
}

impl LazyAvs {
    /// (lazy chain head, lazy anon_vma) of a TREE or TREE_PARENT VMA.
    fn chain_of(&self, b: &Built, head: Option<usize>, av: Option<usize>, s: LazyState) -> (Option<usize>, Option<usize>) {
        let (h, a) = (head.expect("a TREE VMA has a chain"), av.expect("and an anon_vma"));
        match s {
            LazyState::Tree => (self.of[h], self.of[a]),
            // snapshot::lazy_chain: the head goes when it is the VMA's own anon_vma.
            _ if h == a => (b.eager[h].next.and_then(|n| self.of[n]), None),
            _ => (self.of[h], None),
        }
    }
}

fn lazy_avs(b: &Built, topo: &Topology, states: &[Vec<LazyState>], enabled: bool) -> LazyAvs {
    let n = b.eager.len();
    let mut heads = vec![0u32; n];
    let mut active = vec![0u32; n];
    for ((vmas, st), p) in b.vmas.iter().zip(states).zip(&topo.processes) {
        for ((&(h, a), &s), _) in vmas.iter().zip(st).zip(&p.vmas) {
            let s = if enabled || s == LazyState::None { s } else { LazyState::Tree };
            match (s, h, a) {
                (LazyState::Tree, Some(h), Some(a)) => {
                    heads[h] += 1;
                    active[a] += 1;
                }
                (LazyState::TreeParent, Some(h), Some(a)) if h == a => {
                    if let Some(nx) = b.eager[h].next {
                        heads[nx] += 1;
                    }
                }
                (LazyState::TreeParent, Some(h), _) => heads[h] += 1,
                _ => {}
            }
        }
    }
    // Linked: reached from a lazy chain head by `next`.
    let mut linked = vec![false; n];
    for x in (0..n).filter(|&x| heads[x] > 0) {
        let mut y = Some(x);
        while let Some(z) = y.filter(|&z| !linked[z]) {
            linked[z] = true;
            y = b.eager[z].next;
        }
    }
    let mut of = vec![None; n];
    let mut order = Vec::new();
    for x in (0..n).filter(|&x| linked[x]) {
        of[x] = Some(order.len());
        order.push(x);
    }
    let mut nexts = vec![0u32; n];
    let mut children = vec![0u32; n];
    let mut rooted = vec![0u32; n];
    for &x in &order {
        let e = &b.eager[x];
        if let Some(nx) = e.next {
            nexts[nx] += 1;
        }
        if e.parent != x {
            children[e.parent] += 1;
            rooted[e.root] += 1;
        }
    }
    let mut avs = Vec::with_capacity(order.len());
    let mut len = Vec::with_capacity(order.len());
    for &x in &order {
        let e = &b.eager[x];
        let seen_e = &b.seen[x];
        // What the kernel showed beyond the topology stays beyond it in lazy too.
        let ext_children = e.num_children - seen_e.children;
        let ext_active = e.num_active_vmas - seen_e.active;
        let ext_refs = e.refcount - seen_e.holders;
        let pin = u32::from(seen_e.pinned);
        let map = |i: usize| of[i].expect("a lazy chain's parent and root are in lazy chains");
        avs.push(SeedAv {
            root: map(e.root),
            parent: map(e.parent),
            next: e.next.map(map),
            refcount: 1 + rooted[x] + ext_refs,
            num_children: children[x] + u32::from(e.root == x) + ext_children,
            num_active_vmas: active[x] + ext_active,
            refs: heads[x] + nexts[x] + pin,
        });
        len.push(std::iter::successors(Some(x), |&y| b.eager[y].next).count() as u64);
    }
    LazyAvs { avs, of, len }
}

/// What the topology itself shows of one eager anon_vma.
struct SeenCounts {
    /// `num_children` the topology accounts for (the root's self link included).
    children: u32,
    /// `num_active_vmas` it accounts for (pre-6.0: outside holders went to the kernel's
    /// count, see `build`).
    active: u32,
    /// References it accounts for: the initial one, and one per non-root anon_vma rooted here.
    holders: u32,
    /// Linked from outside the topology: its chain node never empties here.
    pinned: bool,
}

/// The eager half of `pair` as a snapshot would read it: anon_vma "addresses" are made up
/// from the model's ids (kernel-like, distinct), processes in pid order.
pub fn to_topology(pair: &Pair) -> Topology {
    let (m, procs) = pair.eager_parts();
    let avs = &m.core.avs;
    let addr = |x: u32| 0xffff_8880_0000_0000 + u64::from(x) * 0x80;
    let mut pids: Vec<Pid> = procs.keys().copied().collect();
    pids.sort_unstable();
    let mut topo = Topology::default();
    for pid in pids {
        let mm = &procs[&pid][EAGER];
        let vmas = mm
            .vmas
            .iter()
            .map(|v| {
                let chain: Vec<u64> = avs.chain(v.chain).map(addr).collect();
                for x in avs.chain(v.chain) {
                    let (root, parent, refcount, num_children, num_active_vmas) = avs.fields(x);
                    let info = AnonVmaInfo {
                        root: addr(root),
                        parent: addr(parent),
                        refcount: i64::from(refcount),
                        num_children: u64::from(num_children),
                        num_active_vmas: u64::from(num_active_vmas),
                        degree: m.core.kernel.uses_degree().then(|| u64::from(num_children + num_active_vmas)),
                    };
                    topo.anon_vmas.insert(addr(x), info);
                }
                VmaTopo {
                    start: v.start(),
                    end: v.end,
                    pgoff: v.pgoff(),
                    flags: kernel_flags(v.merge_flags()),
                    anon_vma: (v.av != NIL).then(|| addr(v.av)),
                    chain_len: chain.len() as u32,
                    chain,
                }
            })
            .collect();
        topo.processes.push(ProcessTopo { pid, comm: format!("p{pid}"), mm: u64::from(pid) << 20, cgroup_id: 0, vmas });
    }
    topo
}
