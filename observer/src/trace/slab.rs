//! Attribution of slab events to anon_vma / anon_vma_chain, to a function, a reason and the
//! (process, phase) they happened in. At alloc the kind is the object size (the caches'
//! object_size from /sys/kernel/slab); at free it is what the same pointer was allocated as,
//! or, for objects allocated before the trace began, what the freeing function frees.
use lazyvma_model::trace_abi::{FN_COUNT, FN_PUT, FN_UNLINK};
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
pub struct Counts {
    pub anon_vma: AllocFree,
    pub anon_vma_chain: AllocFree,
    pub unclassified: AllocFree,
}

impl Counts {
    pub fn add(&mut self, kind: Kind, alloc: bool) {
        let af = match kind {
            Kind::AnonVma => &mut self.anon_vma,
            Kind::AnonVmaChain => &mut self.anon_vma_chain,
            Kind::Unclassified => &mut self.unclassified,
        };
        if alloc {
            af.alloc += 1;
        } else {
            af.free += 1;
        }
    }
}

/// `object_size` of the two caches (96 and 64 on x86_64 and arm64).
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Sizes {
    pub anon_vma: u64,
    pub anon_vma_chain: u64,
}

/// The objects allocated during the trace and not yet freed: pointer → (kind, process).
#[derive(Default)]
pub struct Live(HashMap<u64, (Kind, usize)>);

impl Live {
    pub fn alloc_kind(sizes: Sizes, bytes_req: u64) -> Kind {
        match bytes_req {
            b if b == sizes.anon_vma => Kind::AnonVma,
            b if b == sizes.anon_vma_chain => Kind::AnonVmaChain,
            _ => Kind::Unclassified,
        }
    }

    pub fn alloc(&mut self, ptr: u64, kind: Kind, proc: usize) {
        self.0.insert(ptr, (kind, proc));
    }

    /// The kind of a freed object and, if its allocation was seen, the allocating process.
    pub fn free(&mut self, ptr: u64, func: u32) -> (Kind, Option<usize>) {
        if let Some((kind, proc)) = self.0.remove(&ptr) {
            return (kind, Some(proc));
        }
        let kind = match func {
            FN_PUT => Kind::AnonVma,
            FN_UNLINK => Kind::AnonVmaChain,
            _ => Kind::Unclassified,
        };
        (kind, None)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// One row of the per-phase table.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PhaseRow {
    pub proc: usize,
    pub tgid: u32,
    pub phase: Option<u32>,
    pub counts: Counts,
}

/// Where an event happened: the traced process and its phase then.
#[derive(Clone, Copy, Debug)]
pub struct At {
    pub proc: usize,
    pub tgid: u32,
    pub phase: Option<u32>,
}

#[derive(Default)]
pub struct Tally {
    pub total: Counts,
    pub by_function: [Counts; FN_COUNT],
    pub by_reason: BTreeMap<String, Counts>,
    /// In order of first event.
    pub phases: Vec<PhaseRow>,
    phase_index: HashMap<(usize, Option<u32>), usize>,
}

impl Tally {
    pub fn add(&mut self, kind: Kind, alloc: bool, func: u32, reason: String, at: At) {
        let At { proc, tgid, phase } = at;
        self.total.add(kind, alloc);
        self.by_function[func as usize].add(kind, alloc);
        self.by_reason.entry(reason).or_default().add(kind, alloc);
        let next = self.phases.len();
        let i = *self.phase_index.entry((proc, phase)).or_insert(next);
        if i == next {
            self.phases.push(PhaseRow { proc, tgid, phase, counts: Counts::default() });
        }
        self.phases[i].counts.add(kind, alloc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lazyvma_model::trace_abi::{FN_CLONE, FN_PREPARE};

    const S: Sizes = Sizes { anon_vma: 96, anon_vma_chain: 64 };

    #[test]
    fn kinds_by_size_then_by_pointer_then_by_function() {
        let mut live = Live::default();
        assert_eq!(Live::alloc_kind(S, 96), Kind::AnonVma);
        assert_eq!(Live::alloc_kind(S, 64), Kind::AnonVmaChain);
        assert_eq!(Live::alloc_kind(S, 128), Kind::Unclassified);
        live.alloc(0x10, Kind::AnonVmaChain, 2);
        // A free in __anon_vma_prepare (lost race) of a seen object keeps its kind.
        assert_eq!(live.free(0x10, FN_PREPARE), (Kind::AnonVmaChain, Some(2)));
        assert_eq!(live.free(0x10, FN_PREPARE), (Kind::Unclassified, None));
        assert_eq!(live.free(0x20, FN_PUT), (Kind::AnonVma, None));
        assert_eq!(live.free(0x30, FN_UNLINK), (Kind::AnonVmaChain, None));
        assert_eq!(live.len(), 0);
    }

    #[test]
    fn phases_are_rows_in_order_of_first_event() {
        let mut t = Tally::default();
        let at = |phase| At { proc: 0, tgid: 10, phase: Some(phase) };
        t.add(Kind::AnonVma, true, FN_PREPARE, "prepare".into(), at(2));
        t.add(Kind::AnonVmaChain, true, FN_CLONE, "fork".into(), at(3));
        t.add(Kind::AnonVmaChain, true, FN_PREPARE, "prepare".into(), at(2));
        assert_eq!(t.phases.len(), 2);
        assert_eq!(t.phases[0].phase, Some(2));
        assert_eq!(t.phases[0].counts.anon_vma, AllocFree { alloc: 1, free: 0 });
        assert_eq!(t.phases[0].counts.anon_vma_chain, AllocFree { alloc: 1, free: 0 });
        assert_eq!(t.by_reason["fork"].anon_vma_chain.alloc, 1);
        assert_eq!(t.total.anon_vma_chain.alloc, 2);
    }
}
