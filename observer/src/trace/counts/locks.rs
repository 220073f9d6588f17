//! anon_vma root rwsem contention (observer-ebpf `lock.rs`): setting the lock programs up
//! (offsets, the set's size, attach, the start-up seeding pass) and pairing each task's
//! `contention_begin` with its `contention_end` into wait times, by process.
//!
//! Attribution: a wait counts for the waiting process when it is traced and not a kernel
//! thread; otherwise (kswapd, khugepaged, an untraced process) for the process that owns
//! the anon_vma (allocated it, or was first seen using it at start) if that one is traced,
//! as `via_owner`; otherwise, in system scope, under "other", else it is out of scope.
use crate::report::hist;
use crate::report::trace_doc as doc;
use crate::trace::{ingest::format::Format, tree::pids::Tree};
use aya::{
    maps::{MapData, PerCpuArray},
    programs::{Iter, TracePoint},
    Ebpf,
};
use hdrhistogram::Histogram;
use lazyvma_model::trace_abi::{Contention, LockOffsets, LCB_F_READ, LCB_F_WRITE, LOCK_CTR_LOST, LOCK_CTR_SEEDED, LOCK_CTR_SET_FULL};
use std::collections::{BTreeMap, HashMap};

/// What `trace::bpf::load` injects for the lock programs.
#[derive(Clone, Copy)]
pub struct Setup {
    pub offsets: LockOffsets,
    /// `LOCK_ANON_VMAS` entries.
    pub set_entries: u32,
}

/// `rwsem`: `offsetof(struct anon_vma, rwsem)` from BTF; `av_size`: its object_size;
/// `live`: anon_vmas the slab holds now (the set gets room for them and as many new ones).
pub fn setup(rwsem: Result<u64, String>, av_size: u64, live: Option<u64>) -> Result<Setup, String> {
    let rwsem = rwsem.map_err(|e| format!("offset of anon_vma.rwsem: {e}"))?;
    let begin = Format::read("lock:contention_begin").map_err(|e| format!("{e:#}"))?;
    let end = Format::read("lock:contention_end").map_err(|e| format!("{e:#}"))?;
    let need = |f: &Format, n: &str| f.need(n).map_err(|e| format!("{e:#}"));
    let offsets = LockOffsets {
        begin_lock: need(&begin, "lock_addr")?,
        begin_flags: need(&begin, "flags")?,
        end_lock: need(&end, "lock_addr")?,
        end_ret: need(&end, "ret")?,
        av_rwsem: rwsem,
        av_size,
    };
    // A bound, not an allocation (the map is not preallocated).
    let set_entries = (2 * live.unwrap_or(0)).clamp(1 << 16, 1 << 24) as u32;
    Ok(Setup { offsets, set_entries })
}

const PROGRAMS: [(&str, &str); 2] = [("trace_lock_begin", "contention_begin"), ("trace_lock_end", "contention_end")];
pub const TRACEPOINTS: [&str; 2] = ["lock:contention_begin", "lock:contention_end"];

/// Attach both lock tracepoints, then seed the set with the anon_vmas that exist now (the
/// slab programs already add new ones, so none falls between). A contention that began
/// before the seeding reached its anon_vma is missed: start-up only.
pub fn attach(bpf: &mut Ebpf, btf: Option<&aya::Btf>) -> Result<(), String> {
    let btf = btf.ok_or("the seeding pass (iter/task_vma) needs kernel BTF")?;
    for (prog, name) in PROGRAMS {
        let p: &mut TracePoint = bpf.program_mut(prog).ok_or(format!("program {prog} missing"))?.try_into().map_err(|e| format!("{prog}: {e}"))?;
        p.load().map_err(|e| format!("loading {prog}: {}", crate::load::probe::chain(&e)))?;
        p.attach("lock", name).map_err(|e| format!("attaching {prog}: {}", crate::load::probe::chain(&e)))?;
    }
    let it: &mut Iter = bpf.program_mut("lock_seed_task_vma").ok_or("program lock_seed_task_vma missing")?.try_into().map_err(|e| format!("{e}"))?;
    it.load("task_vma", btf).map_err(|e| format!("loading the anon_vma seeding pass: {}", crate::load::probe::chain(&e)))?;
    let link = it.attach().map_err(|e| format!("attaching the seeding pass: {e}"))?;
    let link = it.take_link(link).map_err(|e| format!("{e}"))?;
    let mut file = link.into_file().map_err(|e| format!("creating the seeding iterator: {e}"))?;
    let mut sink = [0u8; 4096];
    while crate::sys::read_iter(&mut file, &mut sink).map_err(|e| format!("running the seeding pass: {e}"))? > 0 {}
    Ok(())
}

/// The BPF side's own counts, summed over CPUs (kept in a recording's trailer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    /// anon_vmas put in the set by the start-up pass.
    pub seeded: u64,
    /// anon_vmas the full set refused.
    pub set_full: u64,
    /// Lock records the full ring buffer refused.
    pub lost: u64,
}

pub fn counters(bpf: &Ebpf) -> Option<Counters> {
    let m: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(bpf.map("LOCK_COUNTERS")?).ok()?;
    let get = |slot| m.get(&slot, 0).map(|v| v.iter().sum::<u64>()).ok();
    Some(Counters { seeded: get(LOCK_CTR_SEEDED)?, set_full: get(LOCK_CTR_SET_FULL)?, lost: get(LOCK_CTR_LOST)? })
}

/// Waits of one attribution key.
pub struct Waits {
    pub contentions: u64,
    pub read: u64,
    pub write: u64,
    /// `ret != 0`: the wait ended without the lock (a killable down_read interrupted).
    pub failed: u64,
    pub ns: Histogram<u64>,
}

impl Default for Waits {
    fn default() -> Self {
        Waits { contentions: 0, read: 0, write: 0, failed: 0, ns: hist::new() }
    }
}

impl Waits {
    fn add(&mut self, flags: u32, ret: u32, ns: u64) {
        self.contentions += 1;
        self.read += u64::from(flags & LCB_F_READ != 0);
        self.write += u64::from(flags & LCB_F_WRITE != 0);
        self.failed += u64::from(ret != 0);
        self.ns.saturating_record(ns.max(1));
    }

    fn doc(&self) -> doc::Waits {
        let h = &self.ns;
        doc::Waits {
            contentions: self.contentions,
            read: self.read,
            write: self.write,
            failed: self.failed,
            wait_ns: doc::WaitQuantiles { count: h.len(), p50: h.value_at_quantile(0.5), p99: h.value_at_quantile(0.99), max: h.max() },
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Who {
    Proc(usize),
    Other,
}

struct Begin {
    ktime: u64,
    anon_vma: u64,
    flags: u32,
}

#[derive(Default)]
pub struct Locks {
    /// Set by trace: why the lock programs are not there.
    pub unavailable: Option<String>,
    /// System scope: untraced waiters fall under "other" instead of out of scope.
    pub system: bool,
    pending: HashMap<u32, Begin>,
    pub begins: u64,
    pub ends: u64,
    pub paired: u64,
    /// An end without its begin (the wait began before attach or seeding).
    pub unpaired_ends: u64,
    /// A begin whose end never came (trace ended mid-wait, or the end was lost).
    pub unpaired_begins: u64,
    /// Paired waits of no traced process (command / pid scope).
    pub out_of_scope: u64,
    /// Waits counted for the anon_vma's owner, not the waiter.
    pub via_owner: u64,
    pub total: Waits,
    pub by: BTreeMap<Who, Waits>,
    /// Wait times since the last live row.
    pub interval: Option<Histogram<u64>>,
    kthreads: HashMap<u32, bool>,
}

impl Locks {
    /// `lock:contention_begin`: `flags` the `LCB_F_*` bits.
    pub fn begin(&mut self, ev: &Contention, flags: u32) {
        self.begins += 1;
        let b = Begin { ktime: ev.ktime, anon_vma: ev.anon_vma, flags };
        if self.pending.insert(ev.pid, b).is_some() {
            self.unpaired_begins += 1;
        }
    }

    /// `lock:contention_end`: `ret` 0 acquired, else a negative errno.
    pub fn end(&mut self, ev: &Contention, ret: u32, tree: &mut Tree) {
        self.ends += 1;
        let b = match self.pending.remove(&ev.pid) {
            Some(b) if b.anon_vma == ev.anon_vma => b,
            other => {
                self.unpaired_begins += u64::from(other.is_some());
                self.unpaired_ends += 1;
                return;
            }
        };
        self.paired += 1;
        let ns = ev.ktime.saturating_sub(b.ktime);
        let Some(who) = self.who(ev.tgid, ev.owner_tgid, tree) else {
            self.out_of_scope += 1;
            return;
        };
        self.total.add(b.flags, ret, ns);
        self.by.entry(who).or_default().add(b.flags, ret, ns);
        self.interval.get_or_insert_with(hist::new).saturating_record(ns.max(1));
    }

    fn who(&mut self, waiter: u32, owner: u32, tree: &mut Tree) -> Option<Who> {
        let kthread = self.system && *self.kthreads.entry(waiter).or_insert_with(|| is_kthread(waiter));
        if !kthread {
            if let Some(p) = tree.traced(waiter) {
                return Some(Who::Proc(p));
            }
        }
        if owner != 0 {
            if let Some(p) = tree.traced(owner) {
                self.via_owner += 1;
                return Some(Who::Proc(p));
            }
        }
        self.system.then_some(Who::Other)
    }

    /// After the final drain: begins still waiting for their end.
    pub fn finish(&mut self) {
        self.unpaired_begins += self.pending.len() as u64;
        self.pending.clear();
    }

    /// The report's `locks`: every wait and who waited, or why they were not traced.
    pub fn doc(&self, tree: &Tree, counters: Option<Counters>) -> doc::Locks {
        if let Some(why) = &self.unavailable {
            return doc::Locks::Unavailable { available: false, reason: why.clone() };
        }
        let by = self
            .by
            .iter()
            .map(|(who, w)| {
                let (proc, other) = match who {
                    Who::Proc(p) => (Some(*p), None),
                    Who::Other => (None, Some(true)),
                };
                doc::LockRow { waits: w.doc(), proc, tgid: proc.map(|p| tree.get(p).tgid), other }
            })
            .collect();
        doc::Locks::Traced(Box::new(doc::LockCounts {
            available: true,
            total: self.total.doc(),
            anon_vmas_seeded: counters.map(|c| c.seeded),
            set_full: counters.map(|c| c.set_full),
            lost: counters.map(|c| c.lost),
            begins: self.begins,
            ends: self.ends,
            paired: self.paired,
            unpaired_begins: self.unpaired_begins,
            unpaired_ends: self.unpaired_ends,
            out_of_scope: self.out_of_scope,
            via_owner: self.via_owner,
            wait_hist: Some(hist::encode(&self.total.ns, "ns")),
            by_process: by,
        }))
    }
}

/// PF_KTHREAD in `/proc/PID/stat`'s flags; a task already gone counts as a user task.
fn is_kthread(pid: u32) -> bool {
    const PF_KTHREAD: u64 = 0x0020_0000;
    let Ok(stat) = crate::sys::proc_text(format!("/proc/{pid}/stat")) else { return false };
    let flags = stat.rsplit_once(')').and_then(|(_, r)| r.split_ascii_whitespace().nth(6)?.parse::<u64>().ok());
    flags.is_some_and(|f| f & PF_KTHREAD != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(pid: u32, ktime: u64, anon_vma: u64) -> Contention {
        Contention { pid, tgid: pid, ktime, anon_vma, owner_tgid: 0 }
    }

    #[test]
    fn begins_pair_with_their_task_end_and_strays_are_counted() {
        let mut t = Tree::roots(&[7]);
        let mut l = Locks::default();
        l.end(&ev(7, 5, 0xa0), 0, &mut t); // began before attach
        l.begin(&ev(7, 10, 0xa0), LCB_F_WRITE);
        l.begin(&ev(8, 12, 0xa0), LCB_F_READ); // untraced waiter
        l.end(&ev(7, 1010, 0xa0), 0, &mut t);
        l.end(&ev(8, 2012, 0xa0), 0, &mut t);
        l.begin(&ev(7, 3000, 0xa0), LCB_F_READ);
        l.finish();
        assert_eq!((l.begins, l.ends, l.paired, l.unpaired_ends, l.unpaired_begins, l.out_of_scope), (3, 3, 2, 1, 1, 1));
        assert_eq!((l.total.contentions, l.total.write, l.total.read), (1, 1, 0));
        assert_eq!(l.total.ns.max(), l.total.ns.highest_equivalent(1000));
    }
}
