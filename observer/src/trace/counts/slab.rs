//! Attribution of slab events to anon_vma / anon_vma_chain, to a function, a reason and the
//! (process, phase) they happened in. At alloc the kind is `bytes_req`, the caches'
//! object_size (`lazyvma_model::sizes`; bytes are priced at slab_size); at free it is what the same pointer was allocated as,
//! or, for objects allocated before the trace began, what the freeing function frees.
use lazyvma_model::trace_abi::{AggSlot, SlabFn, TallyKey, Why, FN_COUNT};
use std::collections::{BTreeMap, HashMap};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    AnonVma,
    AnonVmaChain,
    /// Neither size, or freed from a function that frees both (lost race, error path) with
    /// the allocation unseen. Counted, never dropped.
    Unclassified,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct AllocFree {
    pub alloc: u64,
    pub free: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SlabCounts {
    pub anon_vma: AllocFree,
    pub anon_vma_chain: AllocFree,
    pub unclassified: AllocFree,
}

impl From<AllocFree> for crate::report::schema::Flow {
    fn from(a: AllocFree) -> Self {
        crate::report::schema::Flow { alloc: a.alloc, free: a.free }
    }
}

/// As the report's JSON has it: anon_vma and anon_vma_chain, unclassified only where
/// something was.
impl From<&SlabCounts> for crate::report::trace_doc::KindFlows {
    fn from(c: &SlabCounts) -> Self {
        let u = c.unclassified;
        crate::report::trace_doc::KindFlows {
            anon_vma: c.anon_vma.into(),
            anon_vma_chain: c.anon_vma_chain.into(),
            unclassified: (u.alloc + u.free > 0).then(|| u.into()),
        }
    }
}

impl SlabCounts {
    pub fn add(&mut self, kind: Kind, alloc: bool) {
        self.add_n(kind, alloc, 1);
    }

    pub fn add_n(&mut self, kind: Kind, alloc: bool, n: u64) {
        let af = match kind {
            Kind::AnonVma => &mut self.anon_vma,
            Kind::AnonVmaChain => &mut self.anon_vma_chain,
            Kind::Unclassified => &mut self.unclassified,
        };
        if alloc {
            af.alloc += n;
        } else {
            af.free += n;
        }
    }
}

pub use lazyvma_model::sizes::Sizes;

/// The objects allocated during the trace and not yet freed: pointer → (kind, process).
#[derive(Default)]
pub struct Live(HashMap<u64, (Kind, usize)>);

impl Live {
    /// By `object_size` (what `bytes_req` is), never slab_size: 96 and 104 differ for anon_vma.
    pub fn alloc_kind(sizes: &Sizes, bytes_req: u64) -> Kind {
        match bytes_req {
            b if b == sizes.anon_vma.object_size => Kind::AnonVma,
            b if b == sizes.anon_vma_chain.object_size => Kind::AnonVmaChain,
            _ => Kind::Unclassified,
        }
    }

    pub fn alloc(&mut self, ptr: u64, kind: Kind, proc: usize) {
        self.0.insert(ptr, (kind, proc));
    }

    /// The kind of a freed object and, if its allocation was seen, the allocating process.
    pub fn free(&mut self, ptr: u64, function: SlabFn) -> (Kind, Option<usize>) {
        if let Some((kind, proc)) = self.0.remove(&ptr) {
            return (kind, Some(proc));
        }
        let kind = match function {
            SlabFn::PutAnonVma => Kind::AnonVma,
            SlabFn::UnlinkAnonVmas => Kind::AnonVmaChain,
            SlabFn::AnonVmaPrepare | SlabFn::AnonVmaClone | SlabFn::AnonVmaFork => Kind::Unclassified,
        };
        (kind, None)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One row of the per-phase table.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PhaseRow {
    pub proc: usize,
    pub tgid: u32,
    pub phase: Option<u32>,
    pub counts: SlabCounts,
}

/// Where an event happened: the traced process and its phase then.
#[derive(Clone, Copy, Debug)]
pub struct At {
    pub proc: usize,
    pub tgid: u32,
    pub phase: Option<u32>,
}

#[derive(Default)]
pub struct SlabTally {
    pub total: SlabCounts,
    /// Per function, at its `SlabFn::index`.
    pub by_function: [SlabCounts; FN_COUNT],
    pub by_reason: BTreeMap<String, SlabCounts>,
    /// In order of first event.
    pub phases: Vec<PhaseRow>,
    phase_index: HashMap<(usize, Option<u32>), usize>,
}

impl SlabTally {
    pub fn add(&mut self, kind: Kind, alloc: bool, function: SlabFn, reason: String, at: At) {
        self.add_n(kind, alloc, function, reason, at, 1);
    }

    pub fn add_n(&mut self, kind: Kind, alloc: bool, function: SlabFn, reason: String, at: At, n: u64) {
        let At { proc, tgid, phase } = at;
        self.total.add_n(kind, alloc, n);
        self.by_function[function.index()].add_n(kind, alloc, n);
        self.by_reason.entry(reason).or_default().add_n(kind, alloc, n);
        let next = self.phases.len();
        let i = *self.phase_index.entry((proc, phase)).or_insert(next);
        if i == next {
            self.phases.push(PhaseRow { proc, tgid, phase, counts: SlabCounts::default() });
        }
        self.phases[i].counts.add_n(kind, alloc, n);
    }
}

/// What the kernel counted (`TRACE_TALLY`), turned into the tally as it grows: each key's
/// process is the one its tgid names now, its phase the one that process had in the key's
/// marker generation (`PhaseLog`).
#[derive(Default)]
pub struct KernelCounts {
    /// Per key, what is already in the tally.
    counted: HashMap<TallyKey, u64>,
    pub log: PhaseLog,
    /// Counts of a tgid the tree never knew (seen at the end).
    pub unattributed: u64,
    /// When the map was last read, and how long that read took.
    pub last_walk: Option<std::time::Instant>,
    pub walk_cost: std::time::Duration,
    /// Forks of a recycled tgid not preceded by a read (too soon after the last): the old
    /// and new process's counts in one phase generation may have merged.
    pub recycled_unsynced: u64,
    /// Keys of exited processes wholly in the tally, with the count and when it was first
    /// seen so (`retirable`).
    idle: HashMap<TallyKey, (u64, std::time::Instant)>,
    /// Keys deleted from the map so far.
    pub retired: u64,
    /// Why a delete failed (no more are tried).
    pub retire_error: Option<String>,
    /// Keys in `counted` per tgid, and the walks so far with, per exited tgid, the walk
    /// count its exit was read at: a recycled tgid's fork needs no walk of its own when the
    /// old process's keys are all retired (`clean`).
    keys_of: HashMap<u32, u32>,
    walks: u64,
    exit_walk: HashMap<u32, u64>,
}

/// How long an exited process's key stays unchanged before it is deleted: its exit's
/// teardown (which 6.16+ runs after the exit record) is over long before.
pub const RETIRE_AFTER: std::time::Duration = std::time::Duration::from_millis(200);

/// Per process, the phase from each of its markers on: (generation, phase).
#[derive(Default)]
pub struct PhaseLog(HashMap<usize, Vec<(u64, Option<u32>)>>);

impl PhaseLog {
    /// Process `proc`, in `before` until now, marked phase `phase` at generation `gen`.
    pub fn marker(&mut self, proc: usize, before: Option<u32>, gen: u64, phase: u32) {
        self.0.entry(proc).or_insert_with(|| vec![(0, before)]).push((gen, Some(phase)));
    }

    /// The phase of `proc` in generation `gen`; `now` if it never marked one.
    pub fn at(&self, proc: usize, gen: u64, now: Option<u32>) -> Option<u32> {
        match self.0.get(&proc) {
            None => now,
            Some(log) => log.iter().rev().find(|(g, _)| *g <= gen).map_or(log[0].1, |(_, p)| *p),
        }
    }
}

/// One kernel count to add: (kind, alloc, function, why, where, how many).
pub type Grown = (Kind, bool, SlabFn, Why, TallyKey, u64);

impl KernelCounts {
    /// Whether an optional read (a marker's, a recycled tgid's fork's) may walk the map now:
    /// 10 ms after the last, and never more than a tenth of the reader's time.
    pub fn walk_due(&self) -> bool {
        self.last_walk.is_none_or(|t| t.elapsed() >= (self.walk_cost * 10).max(std::time::Duration::from_millis(10)))
    }

    /// Whether to read the map between live rows, to retire the exited processes' keys
    /// before the map fills: every `RETIRE_AFTER`, within `walk_due`'s bound.
    pub fn retire_due(&self) -> bool {
        self.retire_error.is_none() && self.walk_due() && self.last_walk.is_some_and(|t| t.elapsed() >= RETIRE_AFTER)
    }

    /// What grew since the last call among `keys` whose generation is below `below`:
    /// the caller attributes each (`Tracer::sync`).
    pub fn grown(&mut self, keys: &[(TallyKey, u64)], below: u64) -> Vec<Grown> {
        let mut out = Vec::new();
        for &(key, now) in keys {
            if key.gen >= below {
                continue;
            }
            let was = self.counted.get(&key).copied().unwrap_or(0);
            if now <= was {
                continue;
            }
            // The programs count under `agg_slot`s only: a slot past them is no count of ours.
            let Some(AggSlot { function, alloc, anon_vma_chain, why }) = AggSlot::of(key.slot) else { continue };
            let kind = if anon_vma_chain { Kind::AnonVmaChain } else { Kind::AnonVma };
            out.push((kind, alloc, function, why, key, now - was));
        }
        out
    }

    /// `n` more of `key` are in the tally.
    pub fn taken(&mut self, key: TallyKey, n: u64) {
        let c = self.counted.entry(key).or_insert_with(|| {
            *self.keys_of.entry(key.tgid).or_default() += 1;
            0
        });
        *c += n;
    }

    /// The map was just read (its time and cost).
    pub fn walked(&mut self, started: std::time::Instant) {
        self.last_walk = Some(std::time::Instant::now());
        self.walk_cost = started.elapsed();
        self.walks += 1;
    }

    /// The process `tgid` exited (its last thread's exit was read).
    pub fn exited(&mut self, tgid: u32) {
        self.exit_walk.insert(tgid, self.walks);
    }

    /// Whether the map holds nothing of the exited process `tgid`, about to be reused: a
    /// walk came after its exit and its keys are all retired since.
    pub fn clean(&mut self, tgid: u32) -> bool {
        let walked = self.exit_walk.remove(&tgid).is_some_and(|w| self.walks > w);
        walked && !self.keys_of.contains_key(&tgid)
    }

    /// The keys to delete from the map: an exited process's, wholly in the tally and
    /// unchanged for `RETIRE_AFTER`. Keys are never deleted otherwise, so without this a
    /// long system-wide trace fills the map with the dead (a CI fork storm did: 25k
    /// processes, 3 M events then streamed, 235k records lost). A count after the delete
    /// (a late free charged to its owner) makes the key anew, from 0 (`retired`).
    pub fn retirable(&mut self, keys: &[(TallyKey, u64)], below: u64, exited: impl Fn(u32) -> bool, now: std::time::Instant) -> Vec<(TallyKey, u64)> {
        let mut idle = HashMap::with_capacity(self.idle.len());
        let mut out = Vec::new();
        for &(key, n) in keys {
            if key.gen >= below || self.counted.get(&key) != Some(&n) || !exited(key.tgid) {
                continue;
            }
            let since = match self.idle.get(&key) {
                Some(&(was, since)) if was == n => since,
                _ => now,
            };
            if now.duration_since(since) >= RETIRE_AFTER {
                out.push((key, n));
            } else {
                idle.insert(key, (n, since));
            }
        }
        self.idle = idle;
        out
    }

    /// `key` is gone from the map: a count under it again starts from 0.
    pub fn retired(&mut self, key: TallyKey) {
        if self.counted.remove(&key).is_some() {
            if let Some(n) = self.keys_of.get_mut(&key.tgid) {
                *n -= 1;
                if *n == 0 {
                    self.keys_of.remove(&key.tgid);
                }
            }
        }
        self.retired += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lazyvma_model::trace_abi::{FN_PUT, WHY_EXIT};
    use SlabFn::{AnonVmaClone, AnonVmaPrepare, PutAnonVma, UnlinkAnonVmas};

    /// Spec §4.3's x86_64 sizes: object_size 96/64, slab_size 104/64.
    fn s() -> Sizes {
        Sizes::spec_x86_64()
    }

    #[test]
    fn kinds_by_size_then_by_pointer_then_by_function() {
        let mut live = Live::default();
        assert_eq!(Live::alloc_kind(&s(), 96), Kind::AnonVma);
        assert_eq!(Live::alloc_kind(&s(), 64), Kind::AnonVmaChain);
        assert_eq!(Live::alloc_kind(&s(), 128), Kind::Unclassified);
        live.alloc(0x10, Kind::AnonVmaChain, 2);
        // A free in __anon_vma_prepare (lost race) of a seen object keeps its kind.
        assert_eq!(live.free(0x10, AnonVmaPrepare), (Kind::AnonVmaChain, Some(2)));
        assert_eq!(live.free(0x10, AnonVmaPrepare), (Kind::Unclassified, None));
        assert_eq!(live.free(0x20, PutAnonVma), (Kind::AnonVma, None));
        assert_eq!(live.free(0x30, UnlinkAnonVmas), (Kind::AnonVmaChain, None));
        assert_eq!(live.len(), 0);
    }

    #[test]
    fn a_kernel_count_takes_the_phase_of_its_generation() {
        let mut log = PhaseLog::default();
        assert_eq!(log.at(0, 5, Some(1)), Some(1));
        log.marker(0, None, 3, 2);
        log.marker(0, Some(2), 7, 4);
        assert_eq!([0, 2, 3, 6, 7, 9].map(|g| log.at(0, g, Some(4))), [None, None, Some(2), Some(2), Some(4), Some(4)]);
        let mut k = KernelCounts::default();
        let key = |gen| TallyKey { tgid: 10, slot: lazyvma_model::trace_abi::agg_slot(FN_PUT, false, 0, WHY_EXIT), gen };
        let got = k.grown(&[(key(1), 5), (key(4), 2)], 4);
        assert_eq!(got, [(Kind::AnonVma, false, PutAnonVma, Why::Exit, key(1), 5)]);
        // A slot past the programs' (a map not of this build's) is no count.
        assert!(k.grown(&[(TallyKey { slot: lazyvma_model::trace_abi::AGG_SLOTS, ..key(1) }, 5)], 4).is_empty());
        k.taken(key(1), 5);
        assert!(k.grown(&[(key(1), 5)], 9).is_empty());
        assert_eq!(k.grown(&[(key(1), 8)], 9)[0].5, 3);
    }

    #[test]
    fn an_exited_processs_keys_retire_once_wholly_counted_and_unchanged() {
        use std::time::Instant;
        let mut k = KernelCounts::default();
        let key = |tgid, gen| TallyKey { tgid, slot: lazyvma_model::trace_abi::agg_slot(FN_PUT, false, 0, WHY_EXIT), gen };
        let (dead, alive, later) = (key(10, 1), key(11, 1), key(10, 5));
        let exited = |tgid| tgid == 10;
        let t0 = Instant::now();
        let map = [(dead, 5), (alive, 3), (later, 1)];
        for (key, n) in k.grown(&map, 4).into_iter().map(|g| (g.4, g.5)) {
            k.taken(key, n);
        }
        // First seen idle: not yet. A live process's key and one above `below` never.
        assert!(k.retirable(&map, 4, exited, t0).is_empty());
        assert!(k.retirable(&map, 4, exited, t0 + RETIRE_AFTER / 2).is_empty());
        assert_eq!(k.retirable(&map, 4, exited, t0 + RETIRE_AFTER), [(dead, 5)]);
        // A count since the last walk starts the wait again, as does one not yet taken.
        let mut k2 = KernelCounts::default();
        k2.taken(dead, 5);
        assert!(k2.retirable(&[(dead, 5)], 4, exited, t0).is_empty());
        assert!(k2.retirable(&[(dead, 6)], 4, exited, t0 + RETIRE_AFTER).is_empty());
        k2.taken(dead, 1);
        assert!(k2.retirable(&[(dead, 6)], 4, exited, t0 + RETIRE_AFTER).is_empty());
        assert_eq!(k2.retirable(&[(dead, 6)], 4, exited, t0 + RETIRE_AFTER * 2), [(dead, 6)]);
        // A recycled tgid 10 needs a walk of its own until every key of it is retired,
        // and a walk came after the exit.
        k2.exited(10);
        assert!(!k2.clean(10));
        k2.exited(10);
        k2.walked(t0);
        assert!(!k2.clean(10), "its key is still counted");
        // Deleted: a late count makes the key anew, from 0, and is counted once.
        k2.retired(dead);
        k2.exited(10);
        assert!(!k2.clean(10), "no walk since the exit");
        k2.exited(10);
        k2.walked(t0);
        assert!(k2.clean(10));
        assert_eq!(k2.grown(&[(dead, 1)], 4)[0].5, 1);
        assert_eq!(k2.retired, 1);
    }

    #[test]
    fn phases_are_rows_in_order_of_first_event() {
        let mut t = SlabTally::default();
        let at = |phase| At { proc: 0, tgid: 10, phase: Some(phase) };
        t.add(Kind::AnonVma, true, AnonVmaPrepare, "prepare".into(), at(2));
        t.add(Kind::AnonVmaChain, true, AnonVmaClone, "fork".into(), at(3));
        t.add(Kind::AnonVmaChain, true, AnonVmaPrepare, "prepare".into(), at(2));
        assert_eq!(t.phases.len(), 2);
        assert_eq!(t.phases[0].phase, Some(2));
        assert_eq!(t.phases[0].counts.anon_vma, AllocFree { alloc: 1, free: 0 });
        assert_eq!(t.phases[0].counts.anon_vma_chain, AllocFree { alloc: 1, free: 0 });
        assert_eq!(t.by_reason["fork"].anon_vma_chain.alloc, 1);
        assert_eq!(t.total.anon_vma_chain.alloc, 2);
    }
}
