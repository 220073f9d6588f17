//! The model's input in the order the kernel serialised it, per mm. A VMA syscall's record
//! is reserved at its exit, after `mmap_write_unlock`, so another thread's fault or syscall
//! that ran after the unlock can reach the ring buffer first. Each record carries a key
//! (the syscall's first mmap_lock write acquisition, a prepare's allocation inside its
//! fault's read section: `SyscallEvent::key`, `PrepareVma::key`); records wait here until
//! every record that could still precede them has arrived: a key older than the newest
//! seen minus [`WINDOW_NS`]. Each mm has its own queue and its own floor: a record is late
//! only against its own mm.
//!
//! What leaves here for several mms at once ([`Order::ready`], [`Order::before`],
//! [`Order::drain`]) leaves in (key, arrival) order across them: the key is when the kernel
//! took that mm's lock, so this is the best order of the kernel's own there is, it keeps
//! each mm's order (the same sort), and it makes a replay deterministic. mms share
//! anon_vmas after a fork, so which of two mms' munmaps the model applies first decides
//! which one frees a shared anon_vma; the queues' (hash) order changed that, and the
//! model's events with it, from one run of the same recording to the next.
use crate::trace::ingest::format::Format;
use lazyvma_model::trace_abi::NO_FIELD;
use std::collections::{BTreeMap, HashMap};

/// How long (ktime) a record may trail the newest one and still be placed: the time from a
/// syscall's lock acquisition to its exit record, preemption included. Live rows lag by it.
pub const WINDOW_NS: u64 = 500_000_000;

/// `mmap_lock:mmap_lock_acquire_returned`'s `write` and `success` offsets for the BPF side
/// ([`NO_FIELD`] when absent: then its program is not attached).
pub fn lock_fields() -> [u64; 2] {
    let f = Format::read("mmap_lock:mmap_lock_acquire_returned").ok();
    ["write", "success"].map(|n| f.as_ref().and_then(|f| f.get(n)).unwrap_or(NO_FIELD))
}

/// One mm's order so far.
#[derive(Default)]
struct Mark {
    /// Every record at or below it was applied (or a barrier passed it): an item keyed
    /// below it arrived too late to be placed.
    floor: u64,
    /// Arrival number of the last item applied.
    last: u64,
}

impl Mark {
    /// 1 if the item that arrived `arrival`-th overtakes one applied before it.
    fn applied(&mut self, arrival: u64) -> u64 {
        let overtook = (arrival < self.last) as u64;
        self.last = self.last.max(arrival);
        overtook
    }
}

/// (key, arrival) → item: equal keys keep ring-buffer order.
type Queue<T> = BTreeMap<(u64, u64), T>;

pub struct Order<T> {
    /// Never iterated: its hash order reaches nothing.
    marks: HashMap<usize, Mark>,
    /// Only mms with records waiting: `ready` runs on every record and looks at these alone.
    /// Iterated in hash order, so what leaves for several mms is sorted (`by_key`).
    queues: HashMap<usize, Queue<T>>,
    newest: u64,
    arrivals: u64,
    /// Records that arrived after a later one of their mm was applied.
    pub out_of_order: u64,
    /// Records applied before one of their mm that reached the ring buffer earlier: what
    /// the keys changed against ring-buffer order.
    pub reordered: u64,
}

impl<T> Default for Order<T> {
    fn default() -> Self {
        Order { marks: HashMap::new(), queues: HashMap::new(), newest: 0, arrivals: 0, out_of_order: 0, reordered: 0 }
    }
}

impl<T> Order<T> {
    /// Queue `item` of mm `mm`. `Err(item)`: it cannot be placed (key 0, a record without
    /// one, or one older than what was applied), the caller applies it now; out-of-order
    /// ones are counted.
    pub fn push(&mut self, mm: usize, key: u64, item: T) -> Result<(), T> {
        self.arrivals += 1;
        if key == 0 {
            return Err(item);
        }
        if key < self.marks.get(&mm).map_or(0, |m| m.floor) {
            self.out_of_order += 1;
            return Err(item);
        }
        self.newest = self.newest.max(key);
        self.queues.entry(mm).or_default().insert((key, self.arrivals), item);
        Ok(())
    }

    /// Items no record still to come can precede, in key order, every mm.
    pub fn ready(&mut self) -> Vec<(usize, T)> {
        let limit = self.newest.saturating_sub(WINDOW_NS);
        let mut out = Vec::new();
        self.queues.retain(|&mm, q| {
            let mark = self.marks.entry(mm).or_default();
            while q.first_key_value().is_some_and(|(k, _)| k.0 <= limit) {
                let ((key, arrival), item) = q.pop_first().expect("non-empty");
                mark.floor = mark.floor.max(key);
                self.reordered += mark.applied(arrival);
                out.push(((key, arrival), mm, item));
            }
            !q.is_empty()
        });
        by_key(out)
    }

    /// Everything queued for `mm`, in key order; later records of `mm` keyed before `at`
    /// (a fork, exec or exit applied now, at ktime `at`) come too late.
    pub fn barrier(&mut self, mm: usize, at: u64) -> Vec<T> {
        self.take(mm, at).into_values().collect()
    }

    /// [`Order::barrier`], keys kept.
    fn take(&mut self, mm: usize, at: u64) -> Queue<T> {
        let items = self.queues.remove(&mm).unwrap_or_default();
        let mark = self.marks.entry(mm).or_default();
        let last = items.keys().next_back().map_or(0, |k| k.0);
        mark.floor = mark.floor.max(last).max(at);
        for &(_, arrival) in items.keys() {
            self.reordered += mark.applied(arrival);
        }
        items
    }

    /// Every mm's records keyed before `at`, for an event that reaches across mms (an exit
    /// drops anon_vmas its relatives share): each already arrived, so its syscall ended
    /// before that event was recorded. A record of such an mm keyed below what this applies
    /// and arriving later is counted out of order, as any other.
    pub fn before(&mut self, at: u64) -> Vec<(usize, T)> {
        let mut out = Vec::new();
        for (&mm, q) in self.queues.iter_mut() {
            let due: Vec<(u64, u64)> = q.range(..(at, 0)).map(|(k, _)| *k).collect();
            let mark = self.marks.entry(mm).or_default();
            for k in due {
                mark.floor = mark.floor.max(k.0);
                self.reordered += mark.applied(k.1);
                out.push((k, mm, q.remove(&k).unwrap()));
            }
        }
        self.queues.retain(|_, q| !q.is_empty());
        by_key(out)
    }

    /// Every mm, at the end.
    pub fn drain(&mut self) -> Vec<(usize, T)> {
        let mms: Vec<usize> = self.queues.keys().copied().collect();
        let mut out = Vec::new();
        for mm in mms {
            out.extend(self.take(mm, 0).into_iter().map(|(k, t)| (k, mm, t)));
        }
        by_key(out)
    }
}

/// Several mms' items in (key, arrival) order, not the queues' hash order (module doc).
/// Arrivals are unique, so the order is total and each mm's own order is kept.
fn by_key<T>(mut items: Vec<((u64, u64), usize, T)>) -> Vec<(usize, T)> {
    if items.len() > 1 {
        items.sort_unstable_by_key(|(k, _, _)| *k);
    }
    items.into_iter().map(|(_, mm, t)| (mm, t)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn an_exit_takes_every_mms_records_keyed_before_it() {
        let mut o = Order::<&str>::default();
        assert!(o.push(1, 10 * MS, "a munmap").is_ok());
        assert!(o.push(2, 30 * MS, "b mprotect").is_ok());
        assert_eq!(o.before(20 * MS), [(1, "a munmap")]);
        // A record of mm 1 keyed before what was applied is late, and counted.
        assert!(o.push(1, 5 * MS, "a fault").is_err());
        assert_eq!(o.out_of_order, 1);
        assert_eq!(o.drain(), [(2, "b mprotect")]);
    }

    #[test]
    fn records_come_out_in_key_order_once_the_window_has_passed() {
        let mut o = Order::default();
        // Thread B's munmap took the lock first (10 ms) but its record came after A's (12 ms).
        o.push(1, 12 * MS, "a").unwrap();
        o.push(1, 10 * MS, "b").unwrap();
        o.push(2, 11 * MS, "other mm").unwrap();
        assert!(o.ready().is_empty());
        o.push(1, 12 * MS + WINDOW_NS, "c").unwrap();
        // Across mms too, in key order (not the queues' hash order): 10, 11, 12 ms.
        assert_eq!(o.ready(), [(1, "b"), (2, "other mm"), (1, "a")]);
        assert_eq!(o.reordered, 1, "a, the first to arrive, was applied after b");
        // A record older than one applied is not placed: counted, handed back.
        assert_eq!(o.push(1, 11 * MS, "late"), Err("late"));
        assert_eq!(o.out_of_order, 1);
        // A barrier sets the floor of an mm with nothing queued too.
        assert!(o.barrier(4, 20 * MS).is_empty());
        assert_eq!(o.push(4, 19 * MS, "before"), Err("before"));
        assert_eq!(o.out_of_order, 2);
        // Another mm's floor is its own.
        assert_eq!(o.push(3, 1, "early"), Ok(()));
        assert_eq!(o.drain().len(), 2);
    }

    #[test]
    fn a_barrier_applies_the_mm_and_refuses_what_it_passed() {
        let mut o = Order::default();
        o.push(1, 5, "x").unwrap();
        o.push(1, 3, "w").unwrap();
        o.push(1, 3, "w2").unwrap();
        assert_eq!(o.barrier(1, 100), ["w", "w2", "x"]);
        assert_eq!(o.push(1, 50, "before the fork"), Err("before the fork"));
        assert_eq!(o.push(1, 0, "no key"), Err("no key"));
        assert_eq!(o.out_of_order, 1);
        assert_eq!(o.push(1, 101, "after"), Ok(()));
    }
}
