//! Applies events to one set of mms: the eager kernel paths, with hooks where the LAZY
//! model (`crate::lazy`) departs from them.

use super::anon_vma::{AnonVmas, NIL};
use super::fxhash::FxMap;
use super::vma::{Mm, State, Vma, ADDR_LIMIT, LAZY_FOLIOS};
use crate::counts::{Counter, Counts, RmapStat};
use crate::event::{vm, Event, FaultKind, Pid, RmapCaller, PAGE_SIZE};
use crate::kernel::Kernel;
use crate::knobs::Knobs;
use crate::lazy::history::HistoryTally;
use crate::lazy::{History, Rule, RuleCounts};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModelError {
    #[error("no process {0}")]
    NoProcess(Pid),
    #[error("process {0} already exists")]
    ProcessExists(Pid),
    #[error("process {pid} has no VMA at {addr:#x}")]
    NoVma { pid: Pid, addr: u64 },
    #[error("{0}")]
    BadRange(String),
}

/// Everything but the mms, so a method can hold `&mut Mm` and `&mut self` together.
pub(crate) struct Core {
    pub kernel: Kernel,
    /// `Some` for the LAZY model.
    pub knobs: Option<Knobs>,
    pub avs: AnonVmas,
    pub vma: Counter,
    pub rules: RuleCounts,
    /// Lazy-VMA histories settled so far (VMAs still mapped are added when read).
    pub history: HistoryTally,
    /// An mremap is unmapping its source: the history moved with the copy.
    pub moving: bool,
    pub rmap: [RmapStat; RmapCaller::ALL.len()],
    /// This event's `lower_bound` results, in call order.
    pub bounds: Bounds,
    /// The other model's `bounds` for the same event, tried first (lazy gets eager's).
    pub hints: Bounds,
}

/// `(addr, index)` of an event's first `lower_bound` calls. A map, munmap or mprotect
/// searches both models' arrays for the same addresses in the same order, and their
/// layouts rarely differ: lazy checks eager's index (two adjacent probes) instead of
/// a cold binary search of its own.
#[derive(Clone, Copy, Default)]
pub(crate) struct Bounds {
    at: [(u64, u32); 4],
    n: u8,
}

impl Bounds {
    /// `*self = *other`, copying only the recorded calls: a fault or walk records none,
    /// and the whole 72 B copy was ~10 instructions per event.
    #[inline]
    pub fn copy_from(&mut self, other: &Bounds) {
        self.n = other.n;
        for k in 0..other.n as usize {
            self.at[k] = other.at[k];
        }
    }
}

/// A KSM stable-tree rmap_item group: `n` references on `av` for pages of the VMA at `addr`.
#[derive(Clone, Copy, Debug)]
struct KsmItem {
    pid: Pid,
    addr: u64,
    av: u32,
    n: u32,
}

/// A VMA as reports see it; `anon_vma` is a model id, not a kernel address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmaView {
    pub start: u64,
    pub end: u64,
    pub state: State,
    pub chain_len: u32,
    pub anon_vma: Option<u32>,
}

/// Every process's mms, eager's at `[EAGER]` and lazy's at `[LAZY]`: one table for both
/// models, so an event looks its pid up once and finds both mm headers in one cache line.
pub(crate) type Procs = FxMap<Pid, [Mm; 2]>;
pub(crate) const EAGER: usize = 0;
pub(crate) const LAZY: usize = 1;

/// One model (eager, or lazy with its knobs): everything but its mms, which live in the
/// `Procs` table it shares with the other model of its `Pair`.
pub struct Machine {
    pub(crate) core: Core,
    /// `EAGER` or `LAZY`: which mm of each `Procs` entry is this model's.
    side: usize,
    ksm: Vec<KsmItem>,
    /// Index of the VMA the last fault or rmap walk found (`usize::MAX`: none).
    pub(crate) found: usize,
    /// VMA arrays of exited mms, for the next forks: no malloc/free per fork and exit, the
    /// child gets the slack an exited mm had grown (no realloc at its first split), and
    /// the newest one is still warm from its exit.
    pool: Vec<Vec<Vma>>,
}

/// At most this many arrays are kept (a fork-exit imbalance is short in a steady state).
const POOL: usize = 16;

/// One model of a `Pair` with the mms it owns: what tests and reports read.
#[derive(Clone, Copy)]
pub struct Half<'a> {
    m: &'a Machine,
    procs: &'a Procs,
}

impl Core {
    /// `mm.lower_bound(addr)`, trying the hint for this call first; recorded in `bounds`.
    #[inline]
    pub fn lower_bound(&mut self, mm: &Mm, addr: u64) -> usize {
        let k = self.bounds.n as usize;
        let i = match self.hints.at.get(k) {
            Some(&(a, i)) if k < self.hints.n as usize && a == addr && mm.is_lower_bound(addr, i as usize) => i as usize,
            _ => mm.lower_bound(addr),
        };
        if k < self.bounds.at.len() {
            self.bounds.at[k] = (addr, i as u32);
            self.bounds.n += 1;
        }
        i
    }

    /// The lazy knobs when lazy rules apply (a lazy model with the runtime switch on).
    #[inline]
    pub fn lz(&self) -> Option<Knobs> {
        self.knobs.filter(|k| k.lazy_enabled)
    }
    /// Count a lazy rule (only while lazy rules apply).
    #[inline]
    pub fn fire(&mut self, r: Rule) {
        if self.lz().is_some() {
            self.rules.fire(r);
        }
    }

    /// `__anon_vma_prepare` on `mm.vmas[i]` (spec §1.2); `neighbours` = run
    /// `find_mergeable_anon_vma` (next first, then prev).
    pub fn prepare(&mut self, mm: &mut Mm, i: usize, neighbours: bool) {
        let reuse = if neighbours { self.find_mergeable_anon_vma(mm, i) } else { None };
        let (chain, av) = self.avs.prepare(reuse);
        let v = &mut mm.vmas[i];
        v.chain = chain;
        v.av = av;
    }

    /// The reusable neighbour's chain (one AV).
    fn find_mergeable_anon_vma(&self, mm: &Mm, i: usize) -> Option<u32> {
        let v = &mm.vmas[i];
        let reusable = |old: &Vma, a: &Vma, b: &Vma| {
            let compatible = a.end() == b.start() && (a.merge_flags() ^ b.merge_flags()) & !vm::ACCESS == 0 && b.pgoff() == a.pgoff() + a.pages();
            (compatible && old.av != NIL && self.avs.len(old.chain) == 1).then_some(old.chain)
        };
        if let Some(next) = mm.vmas.get(i + 1) {
            if let Some(x) = reusable(next, v, next) {
                return Some(x);
            }
        }
        if i > 0 {
            let prev = &mm.vmas[i - 1];
            return reusable(prev, prev, v);
        }
        None
    }

    /// `__split_vma(vma, addr, new_below)`: +1 vm_area_struct, +L AVC. The original struct
    /// (and any pins) stays with the piece the kernel keeps.
    pub fn split(&mut self, mm: &mut Mm, i: usize, addr: u64, new_below: bool) {
        self.before_split(mm, i);
        let v = mm.vmas[i];
        debug_assert!(v.start() < addr && addr < v.end());
        let (chain, av) = if v.chain != NIL { self.avs.clone_chain(v.chain, v.av) } else { (NIL, NIL) };
        self.vma.add(1);
        let mut lower = v;
        lower.set_end(addr);
        let mut upper = v;
        upper.set_start(addr);
        upper.set_pgoff(v.pgoff_at(addr));
        let new = if new_below { &mut lower } else { &mut upper };
        new.chain = chain;
        new.av = av;
        new.set_pins(0);
        new.set_owner(false);
        mm.vmas[i] = lower;
        mm.vmas.insert(i + 1, upper);
    }

    /// Free torn-down VMAs (exit, exec, munmap): `unlink_anon_vmas` (−L AVC, AVs per
    /// §1.8) and the structs. Their AVC and struct frees are counted once at the end
    /// (frees move no peak; nothing is allocated in between).
    pub fn teardown(&mut self, vmas: impl Iterator<Item = Vma>) {
        let lz = self.lz().is_some();
        let (mut structs, mut avcs) = (0, 0);
        for v in vmas {
            if lz {
                match v.state() {
                    State::Lazy => self.rules.fire(Rule::L10),
                    State::TreeParent => self.rules.fire(Rule::L10b),
                    _ => {}
                }
                // Only the lazy model sets history bits.
                if v.has_hist() && !self.moving {
                    self.history.settle(v.hist(), false);
                }
            }
            if v.chain != NIL {
                avcs += self.avs.unlink_uncounted(v.chain, v.av) as u64;
            }
            structs += 1 + v.pins() as u64;
        }
        self.avs.avc.sub(avcs);
        self.vma.sub(structs);
    }

    /// munmap of `[s, e)`: split the ends, then unlink every VMA inside (spec §1.8).
    pub fn munmap(&mut self, mm: &mut Mm, s: u64, e: u64) {
        let mut i = self.lower_bound(mm, s);
        if i >= mm.vmas.len() || mm.vmas[i].start() >= e {
            return;
        }
        if mm.vmas[i].start() < s {
            self.split(mm, i, s, true);
            i += 1;
        }
        let mut j = i;
        while j < mm.vmas.len() && mm.vmas[j].start() < e {
            if mm.vmas[j].end() > e {
                self.split(mm, j, e, false);
            }
            j += 1;
        }
        self.teardown(mm.vmas.drain(i..j));
    }

    /// Remove `mm.vmas[r]` merged into `mm.vmas[t]` (`anon_vma_merge` → `unlink_anon_vmas`).
    pub fn remove_merged(&mut self, mm: &mut Mm, t: usize, r: usize) {
        let gone = mm.vmas[r];
        if gone.chain != NIL {
            self.avs.unlink(gone.chain, gone.av);
        }
        let pinned = self.lz().is_some_and(|k| k.lazy_folio_pins_vma) && gone.owner();
        let keep = gone.pins() as u64 + pinned as u64;
        let t = &mut mm.vmas[t];
        t.set_pins(t.pins().saturating_add(keep as u16));
        if gone.has_hist() {
            t.add_hist(gone.hist());
        }
        self.vma.sub(1 + gone.pins() as u64 - keep);
        mm.vmas.remove(r);
    }

    /// `dup_anon_vma(dst, src)`: a target without an anon_vma takes the source's (+L AVC).
    pub fn dup_anon_vma(&mut self, mm: &mut Mm, dst: usize, src: &Vma) {
        if mm.vmas[dst].chain == NIL && src.chain != NIL {
            let (chain, av) = self.avs.clone_chain(src.chain, src.av);
            mm.vmas[dst].chain = chain;
            mm.vmas[dst].av = av;
        }
        mm.vmas[dst].add_flags(src.flags() & LAZY_FOLIOS);
        if src.has_hist() {
            mm.vmas[dst].add_hist(src.hist());
        }
    }

    pub(crate) fn walk(&mut self, caller: RmapCaller, v: &Vma) {
        let s = &mut self.rmap[caller.index()];
        if v.flags() & vm::SHARED != 0 {
            s.no_folio += 1;
            return;
        }
        match ((), v.state()) {
            (_, State::None) => s.no_folio += 1,
            (_, State::Lazy) => {
                s.walks += 1;
                s.lock_avoided += 1;
                let r = if caller == RmapCaller::Migrate { Rule::L14 } else { Rule::L13 };
                self.fire(r);
            }
            (_, _) => {
                s.walks += 1;
                s.locked += 1;
                self.fire(Rule::L13b);
            }
        }
    }
}

fn range(start: u64, pages: u64) -> Result<(u64, u64), ModelError> {
    if !start.is_multiple_of(PAGE_SIZE) {
        return Err(ModelError::BadRange(format!("address {start:#x} is not page-aligned")));
    }
    if pages == 0 {
        return Err(ModelError::BadRange("a range of 0 pages".into()));
    }
    let end = pages.checked_mul(PAGE_SIZE).and_then(|l| start.checked_add(l));
    match end {
        Some(e) if e <= ADDR_LIMIT => Ok((start, e)),
        Some(e) => Err(ModelError::BadRange(format!("range {start:#x}..{e:#x} ends above the 57-bit user address space"))),
        None => Err(ModelError::BadRange(format!("{pages} pages at {start:#x} overflow"))),
    }
}

impl Machine {
    pub(crate) fn eager(kernel: Kernel) -> Machine {
        Machine::new(kernel, None, EAGER)
    }
    pub(crate) fn lazy(kernel: Kernel, knobs: Knobs) -> Machine {
        Machine::new(kernel, Some(knobs), LAZY)
    }
    fn new(kernel: Kernel, knobs: Option<Knobs>, side: usize) -> Machine {
        Machine {
            core: Core {
                kernel,
                knobs,
                avs: AnonVmas::default(),
                vma: Counter::default(),
                rules: RuleCounts::default(),
                history: HistoryTally::default(),
                moving: false,
                rmap: [RmapStat::default(); RmapCaller::ALL.len()],
                bounds: Bounds::default(),
                hints: Bounds::default(),
            },
            side,
            ksm: Vec::new(),
            found: usize::MAX,
            pool: Vec::new(),
        }
    }

    pub(crate) fn counts(&self) -> Counts {
        Counts { anon_vma: self.core.avs.av, anon_vma_chain: self.core.avs.avc, vm_area_struct: self.core.vma }
    }

    pub(crate) fn half<'a>(&'a self, procs: &'a Procs) -> Half<'a> {
        Half { m: self, procs }
    }

    /// `fork` of `pmm` (this model's mm of the parent): the child's mm.
    pub(crate) fn fork(&mut self, pmm: &mut Mm) -> Mm {
        let buf = self.pool.pop().unwrap_or_default();
        self.core.fork(pmm, buf)
    }

    /// exit: every VMA of this model's mm of the process torn down.
    pub(crate) fn exit(&mut self, mut mm: Mm) {
        self.core.teardown(mm.vmas.drain(..));
        if self.pool.len() < POOL {
            self.pool.push(mm.vmas);
        }
    }

    /// An event on one process: `mm` is this model's mm of `pid`, and a fault's or rmap
    /// walk's VMA is looked for at index `near` first. `Ok(true)`: VMAs were torn down
    /// (`after_teardown` is due once the table is free again).
    // Inlined into `Pair::apply` (its two callers): −22 instructions per event, the call's
    // register saves and stack traffic (callgrind), +2.4 % per alternated round.
    #[inline(always)]
    pub(crate) fn apply_mm(&mut self, pid: Pid, mm: &mut Mm, ev: &Event, near: usize) -> Result<bool, ModelError> {
        self.found = usize::MAX;
        self.core.bounds.n = 0;
        match *ev {
            Event::Map { start, pages, flags, .. } => {
                let (s, e) = range(start, pages)?;
                self.core.munmap(mm, s, e);
                self.core.map_new(mm, s, e, s / PAGE_SIZE, flags & vm::USER, None);
                return Ok(true);
            }
            Event::MapPgoff { start, pages, flags, pgoff, .. } => {
                let (s, e) = range(start, pages)?;
                if pgoff.checked_add(pages).is_none_or(|end| end > 1 << crate::event::PGOFF_BITS) {
                    return Err(ModelError::BadRange(format!("pgoff {pgoff:#x} + {pages} pages is above 2^{}", crate::event::PGOFF_BITS)));
                }
                self.core.munmap(mm, s, e);
                self.core.map_new(mm, s, e, pgoff, flags & vm::USER, None);
                return Ok(true);
            }
            Event::Fault { addr, kind, .. } => {
                let i = mm.find_near(addr, near).ok_or(ModelError::NoVma { pid, addr })?;
                self.found = i;
                self.core.fault(mm, i, kind);
            }
            Event::Exec { stack, .. } => {
                let stack = stack.map(|s| range(s, 1)).transpose()?;
                self.core.teardown(mm.vmas.drain(..));
                self.core.fire(Rule::L11);
                if let Some((s, e)) = stack {
                    self.core.map_new(mm, s, e, s / PAGE_SIZE, vm::READ | vm::WRITE, None);
                    let i = mm.find(s).expect("just mapped");
                    // copy_strings() writes argv/envp into the new stack.
                    self.core.fault(mm, i, FaultKind::Write);
                }
                return Ok(true);
            }
            Event::Mprotect { start, pages, prot, .. } => {
                let (s, e) = range(start, pages)?;
                self.core.modify_range(mm, s, e, |f| (f & !vm::ACCESS) | (prot & vm::ACCESS));
            }
            Event::Madvise { start, pages, advice, .. } => {
                let (s, e) = range(start, pages)?;
                let Some((set, clear)) = advice.flags() else {
                    self.core.guard_install(mm, s, e);
                    return Ok(false);
                };
                self.core.modify_range(mm, s, e, |f| (f | set) & !clear);
            }
            Event::Mlock { start, pages, flags, .. } => {
                let (s, e) = range(start, pages)?;
                let lock = vm::LOCKED | vm::LOCKONFAULT;
                if flags & !lock != 0 || flags == vm::LOCKONFAULT {
                    return Err(ModelError::BadRange(format!("mlock flags {flags:#x} are not LOCKED[|LOCKONFAULT] or 0")));
                }
                self.core.modify_range(mm, s, e, |f| (f & !lock) | flags);
            }
            Event::Munmap { start, pages, .. } => {
                let (s, e) = range(start, pages)?;
                self.core.munmap(mm, s, e);
                return Ok(true);
            }
            Event::Mremap { old, pages, new, dontunmap, .. } => {
                let (os, oe) = range(old, pages)?;
                let (ns, ne) = range(new, pages)?;
                Self::check_mremap(pid, mm, os, oe, ns, ne)?;
                self.core.mremap(mm, os, oe, ns, ne, dontunmap);
                return Ok(true);
            }
            Event::MremapResize { old, pages, new, new_pages, .. } => {
                let (os, oe) = range(old, pages)?;
                let (ns, ne) = range(new, new_pages)?;
                if ns == os {
                    let i = Self::mremap_source(pid, mm, os, oe)?;
                    if ne < oe {
                        self.core.munmap(mm, ne, oe);
                    } else if ne > oe {
                        if mm.vmas[i].end() != oe || mm.vmas.get(i + 1).is_some_and(|n| n.start() < ne) {
                            return Err(ModelError::BadRange(format!("mremap {os:#x}..{oe:#x} cannot grow in place to {ne:#x}")));
                        }
                        self.core.expand(mm, i, ne);
                    }
                    return Ok(true);
                }
                // A shrinking move unmaps the tail first, then moves what is left.
                let kept = oe.min(os + (ne - ns));
                Self::check_mremap(pid, mm, os, oe, ns, ne)?;
                if kept < oe {
                    self.core.munmap(mm, kept, oe);
                }
                self.core.mremap(mm, os, kept, ns, ne, false);
                return Ok(true);
            }
            Event::KsmMerge { addr, pages, .. } => {
                let i = mm.find(addr).ok_or(ModelError::NoVma { pid, addr })?;
                if let Some(av) = self.core.ksm_merge(mm, i) {
                    if !self.core.avs.ksm_get(av, pages.max(1)) {
                        return Err(ModelError::BadRange(format!("ksm merge of {pages} pages at {addr:#x}: the anon_vma's refcount would pass {}", i32::MAX)));
                    }
                    self.ksm.push(KsmItem { pid, addr, av, n: pages.max(1) });
                }
            }
            Event::ThpCollapse { addr, .. } => {
                let i = mm.find(addr).ok_or(ModelError::NoVma { pid, addr })?;
                self.core.collapse(mm, i);
            }
            Event::RmapWalk { addr, caller, .. } => {
                let i = mm.find_near(addr, near).ok_or(ModelError::NoVma { pid, addr })?;
                self.found = i;
                let v = mm.vmas[i];
                self.core.walk(caller, &v);
            }
            Event::Spawn { .. } | Event::Fork { .. } | Event::Exit { .. } | Event::KsmCleanup | Event::SetKernel(_) | Event::Phase(_) => {
                unreachable!("not an event on one mm: {ev:?}")
            }
        }
        Ok(false)
    }

    /// A move's source is inside one VMA and does not overlap its target.
    fn check_mremap(pid: Pid, mm: &Mm, os: u64, oe: u64, ns: u64, ne: u64) -> Result<(), ModelError> {
        if ns < oe && os < ne {
            return Err(ModelError::BadRange(format!("mremap {os:#x}..{oe:#x} overlaps its target {ns:#x}..{ne:#x}")));
        }
        Self::mremap_source(pid, mm, os, oe).map(|_| ())
    }

    /// The index of the one VMA holding an mremap's source `[os, oe)`.
    fn mremap_source(pid: Pid, mm: &Mm, os: u64, oe: u64) -> Result<usize, ModelError> {
        let i = mm.find(os).ok_or(ModelError::NoVma { pid, addr: os })?;
        if mm.vmas[i].end() < oe {
            return Err(ModelError::BadRange(format!("mremap range {os:#x}..{oe:#x} is not inside one VMA")));
        }
        Ok(i)
    }

    /// ksmd drops the rmap_items whose VMA is gone or no longer VM_MERGEABLE; only now
    /// can their anon_vmas be freed (spec §1.10).
    pub(crate) fn ksm_cleanup(&mut self, procs: &Procs) {
        let side = self.side;
        let mut items = std::mem::take(&mut self.ksm);
        items.retain(|it| {
            let mm = procs.get(&it.pid).map(|p| &p[side]);
            let alive = mm.and_then(|mm| mm.find(it.addr).map(|i| mm.vmas[i])).is_some_and(|v| v.av == it.av && v.flags() & vm::MERGEABLE != 0);
            if !alive {
                self.core.avs.ksm_put(it.av, it.n);
            }
            alive
        });
        self.ksm = items;
    }

    pub(crate) fn after_teardown(&mut self, procs: &mut Procs) {
        if self.core.lz().is_some_and(|k| k.downgrade) {
            for p in procs.values_mut() {
                self.core.downgrade(&mut p[self.side]);
            }
        }
    }
}

impl<'a> Half<'a> {
    fn mms(&self) -> impl Iterator<Item = (&'a Pid, &'a Mm)> + 'a {
        let side = self.m.side;
        self.procs.iter().map(move |(pid, p)| (pid, &p[side]))
    }

    pub fn is_lazy(&self) -> bool {
        self.m.core.knobs.is_some()
    }
    pub fn kernel(&self) -> Kernel {
        self.m.core.kernel
    }
    pub fn counts(&self) -> Counts {
        self.m.counts()
    }
    /// Rule fire counts (all zero for the eager model).
    pub fn rules(&self) -> &'a RuleCounts {
        &self.m.core.rules
    }
    /// Lazy-VMA histories, VMAs still mapped counted as never shared (all zero for eager).
    pub fn history(&self) -> History {
        let mut h = self.m.core.history.history();
        for (_, mm) in self.mms() {
            for v in mm.vmas.iter().filter(|v| v.has_hist()) {
                h.settle(v.hist(), false);
            }
        }
        h
    }
    pub fn rmap(&self) -> impl Iterator<Item = (RmapCaller, RmapStat)> + 'a {
        let m = self.m;
        RmapCaller::ALL.iter().map(move |&c| (c, m.core.rmap[c.index()]))
    }
    pub fn processes(&self) -> usize {
        self.procs.len()
    }
    /// VMAs in every mm (not counting structs kept alive only by lazy folios).
    pub fn mapped_vmas(&self) -> usize {
        self.mms().map(|(_, m)| m.vmas.len()).sum()
    }
    /// Heap bytes this model holds (capacities, not lengths); half the shared table each.
    pub fn heap_bytes(&self) -> usize {
        self.m.core.avs.heap_bytes()
            + self.procs.capacity() * (std::mem::size_of::<(Pid, [Mm; 2])>() + 1) / 2
            + self.mms().map(|(_, m)| m.vmas.capacity() * std::mem::size_of::<Vma>()).sum::<usize>()
            + self.m.ksm.capacity() * std::mem::size_of::<KsmItem>()
            + self.m.pool.capacity() * std::mem::size_of::<Vec<Vma>>()
            + self.m.pool.iter().map(|v| v.capacity() * std::mem::size_of::<Vma>()).sum::<usize>()
    }

    /// The VMAs of a process (tests and reports).
    pub fn vmas(&self, pid: Pid) -> Option<Vec<VmaView>> {
        let mm = &self.procs.get(&pid)?[self.m.side];
        let avs = &self.m.core.avs;
        Some(
            mm.vmas
                .iter()
                .map(|v| VmaView { start: v.start(), end: v.end(), state: v.state(), chain_len: avs.len(v.chain), anon_vma: (v.av != NIL).then_some(v.av) })
                .collect(),
        )
    }

    /// Spec §0's invariants, checked over every object. `Err` names the first violation.
    pub fn check_invariants(&self) -> Result<(), String> {
        let avs = &self.m.core.avs;
        let live = avs.live_ids();
        let mut tree = std::collections::HashMap::<u32, u32>::new();
        let node_of = avs.check_nodes(self.mms().flat_map(|(_, mm)| mm.vmas.iter().map(|v| v.chain)))?;
        let mut active = std::collections::HashMap::<u32, u32>::new();
        let mut by_av = std::collections::HashMap::<u32, Vec<u32>>::new();
        let mut avc = 0u64;
        let mut vmas = 0u64;
        for (pid, mm) in self.mms() {
            for w in mm.vmas.windows(2) {
                if w[0].end() > w[1].start() || w[0].start() >= w[0].end() {
                    return Err(format!("pid {pid}: VMAs overlap or are empty at {:#x}", w[0].start()));
                }
            }
            for v in &mm.vmas {
                vmas += 1 + v.pins() as u64;
                if v.hist() != 0 && (!self.is_lazy() || v.hist() & crate::lazy::history::bit::SEEN == 0) {
                    return Err(format!("pid {pid} {:#x}: history bits {:#x} on a VMA that was never LAZY", v.start(), v.hist()));
                }
                let chain = avs.chain_vec(v.chain);
                avc += chain.len() as u64;
                for &x in &chain {
                    *tree.entry(x).or_default() += 1;
                    if !live.contains(&x) {
                        return Err(format!("pid {pid} {:#x}: chain links freed anon_vma {x}", v.start()));
                    }
                }
                if let Some(&last) = chain.last() {
                    if avs.get(last).root != last {
                        return Err(format!("pid {pid} {:#x}: root is not last in the chain", v.start()));
                    }
                    if chain.iter().any(|&x| avs.get(x).root != last) {
                        return Err(format!("pid {pid} {:#x}: chain spans two roots", v.start()));
                    }
                }
                if v.av != NIL {
                    if !chain.contains(&v.av) {
                        return Err(format!("pid {pid} {:#x}: anon_vma not in its own chain", v.start()));
                    }
                    *active.entry(v.av).or_default() += 1;
                    match by_av.get(&v.av) {
                        Some(c) if *c != chain => return Err(format!("pid {pid} {:#x}: VMAs sharing anon_vma {} have different chains", v.start(), v.av)),
                        _ => {
                            by_av.insert(v.av, chain);
                        }
                    }
                } else if !self.is_lazy() && !chain.is_empty() {
                    return Err(format!("pid {pid} {:#x}: eager VMA with a chain but no anon_vma", v.start()));
                }
            }
        }
        let c = self.m.counts();
        for k in [c.anon_vma, c.anon_vma_chain, c.vm_area_struct] {
            if k.live != k.alloc - k.free || k.free > k.alloc || k.peak < k.live {
                return Err(format!("counter out of balance: {k:?}"));
            }
        }
        if c.anon_vma_chain.live != avc {
            return Err(format!("{} AVCs counted live, {avc} in chains", c.anon_vma_chain.live));
        }
        if c.vm_area_struct.live != vmas {
            return Err(format!("{} vm_area_structs counted live, {vmas} held", c.vm_area_struct.live));
        }
        if c.anon_vma.live != live.len() as u64 {
            return Err(format!("{} AVs counted live, {} in the arena", c.anon_vma.live, live.len()));
        }
        let mut children = std::collections::HashMap::<u32, u32>::new();
        let mut root_refs = std::collections::HashMap::<u32, u32>::new();
        for &x in &live {
            let a = avs.get(x);
            if tree.contains_key(&x) {
                *children.entry(a.parent).or_default() += 1;
            }
            if a.root != x {
                *root_refs.entry(a.root).or_default() += 1;
            }
        }
        for &x in &live {
            let a = avs.get(x);
            let t = tree.get(&x).copied().unwrap_or(0);
            if (t > 0) != node_of.contains_key(&x) {
                return Err(format!("anon_vma {x}: {t} AVCs link it but its chain node is {:?}", node_of.get(&x)));
            }
            let n = active.get(&x).copied().unwrap_or(0);
            if a.num_active_vmas != n {
                return Err(format!("anon_vma {x}: num_active_vmas {} but {n} VMAs use it", a.num_active_vmas));
            }
            let ch = children.get(&x).copied().unwrap_or(0);
            if a.num_children != ch {
                return Err(format!("anon_vma {x}: num_children {} but {ch} linked children", a.num_children));
            }
            let want = (t > 0) as u32 + root_refs.get(&x).copied().unwrap_or(0) + avs.ksm_refs(x);
            if a.refcount != want {
                return Err(format!("anon_vma {x}: refcount {} but {want} holders", a.refcount));
            }
        }
        Ok(())
    }
}
