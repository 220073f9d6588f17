//! Coverage: the rows each model counts per (process, phase), what the model could not
//! take and why (`Coverage`, a row's `not_modelled`), and the cap on the events kept.
//! Apart from the translation: it is the bookkeeping every concern reports into.
use super::Feed;
use crate::trace::counts::slab::{At, Kind, SlabCounts};
use lazyvma_model::counts::Deltas;
use std::collections::BTreeMap;

/// Per (process, phase): what each model allocated and freed there.
#[derive(Clone, Debug)]
pub struct Row {
    pub proc: usize,
    pub tgid: u32,
    pub phase: Option<u32>,
    pub eager: SlabCounts,
    pub lazy: SlabCounts,
    /// Spare objects a thread that lost a prepare race allocated and freed (spec §1.2: the
    /// model, single-threaded, has no such race). Observed = eager + these + `before_seed`.
    pub spares: SlabCounts,
    /// What was observed here before the process was seeded: its effects are in the
    /// snapshot the model started from (`trace/feed/seed.rs`).
    pub before_seed: SlabCounts,
    /// Why part of this row's observed counts is not the model's to match, if so.
    pub not_modelled: Option<String>,
}

/// How much of the traced tree the model saw, and everything it could not use.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Coverage {
    /// Processes fed to the model / traced but not modelled (tgids).
    pub modelled: u64,
    pub not_modelled: Vec<u32>,
    /// Why each process of `not_modelled` is not, by `proc` (tgid, why).
    pub not_modelled_why: BTreeMap<usize, (u32, String)>,
    pub events_fed: u64,
    /// Syscalls that change VMAs in ways the model does not take, by name.
    pub unmodelled: BTreeMap<String, u64>,
    /// Prepares the feed could not turn into a fault on a known VMA.
    pub faults_not_placed: u64,
    /// Of those: prepares outside a page fault's handler (GUP, uprobes), whose VMA the
    /// thread's last fault address does not name (`PrepareVma::found`).
    pub prepares_outside_fault: u64,
    /// Prepares outside a page fault placed on the `__anon_vma_prepare` hook's VMA (kernels
    /// where that hook attaches), not counted in the two above.
    pub prepares_placed_by_hook: u64,
    /// Prepares whose kernel VMA had other bounds than the model's VMA there.
    pub layout_mismatches: u64,
    /// errnos of `bpf_find_vma` that left a prepare without its VMA.
    pub find_vma_errors: Vec<u32>,
    pub model_errors: u64,
    pub first_error: Option<String>,
    /// Processes running before the trace, seeded from a snapshot at its start (tgids), and
    /// those that could not be, with why (`trace/feed/seed.rs`).
    pub seeded: Vec<u32>,
    pub not_seeded: BTreeMap<u32, String>,
    /// µs between the snapshot pass's two markers (what the seeding window took).
    pub seed_pass_us: Option<u64>,
    /// Ring-buffer loss or missing feed tracepoints: the model saw less than happened.
    pub incomplete: Vec<String>,
    /// Syscalls and prepares whose key was older than one already applied to their mm
    /// (`order.rs`): applied where they arrived, and the model is incomplete.
    pub out_of_order: u64,
}

/// `Feed::events_max` by default: a few hundred MB at most.
pub const EVENTS_MAX: usize = 5_000_000;

fn to_counts(d: &lazyvma_model::counts::Delta, e: &mut crate::trace::counts::slab::AllocFree) {
    e.alloc += d.alloc;
    e.free += d.free;
}

impl Feed {
    /// A free from `__anon_vma_prepare`: the spare of a thread that lost the race to
    /// prepare the same VMA (its allocation was counted in the same call).
    pub fn race_spare(&mut self, kind: Kind, at: At) {
        let i = self.row(at);
        for c in [&mut self.rows[i].spares, &mut self.spares] {
            c.add(kind, true);
            c.add(kind, false);
        }
    }

    pub(super) fn row(&mut self, at: At) -> usize {
        let next = self.rows.len();
        let i = *self.row_index.entry((at.proc, at.phase)).or_insert(next);
        if i == next {
            let zero = SlabCounts::default();
            let not_modelled = self.partial.get(&at.proc).cloned();
            self.rows.push(Row { proc: at.proc, tgid: at.tgid, phase: at.phase, eager: zero, lazy: zero, spares: zero, before_seed: zero, not_modelled });
        }
        i
    }

    pub(super) fn count(&mut self, e: &Deltas, l: &Deltas, at: At) {
        if e.anon_vma.alloc
            + e.anon_vma.free
            + e.anon_vma_chain.alloc
            + e.anon_vma_chain.free
            + l.anon_vma.alloc
            + l.anon_vma.free
            + l.anon_vma_chain.alloc
            + l.anon_vma_chain.free
            == 0
        {
            return;
        }
        let i = self.row(at);
        let row = &mut self.rows[i];
        for (d, c, t) in [(e, &mut row.eager, &mut self.eager), (l, &mut row.lazy, &mut self.lazy)] {
            to_counts(&d.anon_vma, &mut c.anon_vma);
            to_counts(&d.anon_vma_chain, &mut c.anon_vma_chain);
            to_counts(&d.anon_vma, &mut t.anon_vma);
            to_counts(&d.anon_vma_chain, &mut t.anon_vma_chain);
        }
    }

    pub fn unmodelled(&mut self, what: impl Into<String>) {
        *self.coverage.unmodelled.entry(what.into()).or_default() += 1;
    }

    /// `unmodelled` in mm `mm`, by the process at `at`: their rows are not exact by construction.
    pub(super) fn unmodelled_at(&mut self, mm: usize, at: At, what: impl Into<String>) {
        let what = what.into();
        self.inexact(mm, at, &format!("{what} not modelled (vm state the model has no field for)"));
        self.unmodelled(what);
    }

    /// `proc` did something across the trace's end marker (`Tracer::after_the_end`): its
    /// rows say so, since only the part before the end is counted, observed and modelled.
    pub fn across_the_end(&mut self, proc: usize, at: At, what: &str) {
        let mm = self.borrowed.get(&proc).copied().unwrap_or(proc);
        self.inexact(mm, at, &format!("{what} across the trace's end (counted up to the end marker only)"));
    }

    /// What the model holds for `mm` (changed by the process at `at`) is no longer known
    /// exact: every row of both says why, and so do the later ones and the forks' (until
    /// an exec starts the process afresh).
    pub(super) fn inexact(&mut self, mm: usize, at: At, why: &str) {
        self.row(at);
        for r in self.rows.iter_mut().filter(|r| r.proc == mm || r.proc == at.proc) {
            match &mut r.not_modelled {
                None => r.not_modelled = Some(why.to_string()),
                // Each kind of reason once, and a bound: a row's flag names what it has.
                Some(w) if !w.contains(why) && w.len() < 400 => *w = format!("{w}; {why}"),
                Some(_) => {}
            }
        }
        for p in [mm, at.proc] {
            self.partial.entry(p).or_insert_with(|| why.to_string());
        }
    }

    /// `complete` means exact by construction: whatever the model took but could not
    /// apply, or did not take, is a reason it is not (each listed).
    pub(super) fn inexact_reasons(&mut self) {
        let c = &mut self.coverage;
        if c.model_errors > 0 {
            c.incomplete.push(format!("{} model errors (first: {})", c.model_errors, c.first_error.as_deref().unwrap_or("")));
        }
        for (what, n) in &c.unmodelled {
            c.incomplete.push(format!("{n} unmodelled: {what}"));
        }
        if c.faults_not_placed > 0 {
            let outside = c.prepares_outside_fault;
            c.incomplete.push(format!(
                "{} prepares not placed on a VMA ({outside} outside a page fault: GUP such as MADV_POPULATE_WRITE, mlock, /proc/PID/mem, or uprobes)",
                c.faults_not_placed
            ));
        }
        if c.layout_mismatches > 0 {
            c.incomplete.push(format!("{} prepares whose kernel VMA had other bounds than the model's", c.layout_mismatches));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::super::{
        flags::{VM_READ, VM_WRITE},
        syscalls::PR_SET_VMA,
    };
    use super::*;
    use crate::trace::tree::pids::Tree;
    use lazyvma_model::{
        event::{Event, PAGE_SIZE},
        kernel::Kernel,
        knobs::Knobs,
        trace_abi::*,
    };

    #[test]
    fn what_the_model_cannot_take_is_counted_not_guessed() {
        let mut tree = Tree::command(100);
        let mut f = Feed::new("6.1.0", Knobs::default());
        assert_eq!(f.kernel(), Kernel::V6_1);
        tree.exec(100);
        f.exec(&tree, 100, 0);
        // Growing in place a range the model has no VMA for is a model error.
        f.syscall(&tree, &sys(100, SYS_MREMAP, [0x1000, 0x1000, 0x3000, 1, 0, 0], 0x1000));
        // A failed syscall changes nothing; a fault with no VMA found is not placed.
        f.syscall(&tree, &sys(100, SYS_MUNMAP, [0x1000, 0x1000, 0, 0, 0, 0], -22));
        prepare(&mut f, &tree, &PrepareVma { found: 11 << 8, ..prep(100, 0x7000, None) });
        // A prepare outside a fault (MADV_POPULATE_WRITE): no address, never a stale one.
        prepare(&mut f, &tree, &PrepareVma { found: FOUND_NOT_IN_FAULT, ..prep(100, 0, None) });
        f.syscall(&tree, &sys(100, SYS_MUNMAP, [0x1000, 0x1000, 0, 0, 0, 0], 0));
        let c = &f.coverage;
        assert_eq!((c.faults_not_placed, c.prepares_outside_fault, c.find_vma_errors.as_slice()), (2, 1, &[11][..]));
        assert!(matches!(f.events.last(), Some(Event::Munmap { .. })));
        // vm_flags the model has no field for (mlockall's future mappings, an anon name); a
        // prctl other than PR_SET_VMA changes no VMA.
        f.syscall(&tree, &sys(100, SYS_MSEAL, [0x1000, 0x1000, 0, 0, 0, 0], 0));
        f.syscall(&tree, &sys(100, SYS_PRCTL, [15, 0, 0, 0, 0, 0], 0));
        f.syscall(&tree, &sys(100, SYS_PRCTL, [PR_SET_VMA, 0, 0x1000, 0x1000, 0, 0], 0));
        // A move of a range the model has no VMA for is a model error.
        f.syscall(&tree, &sys(100, SYS_MREMAP, [0x9000, 0x1000, 0x1000, 3, 0x20000, 0], 0x20000));
        f.finish(&tree, 0, &[]);
        // None of it may look exact.
        let why = f.coverage.incomplete.join("; ");
        for part in [
            "2 model errors (first: MremapResize",
            "1 unmodelled: mseal",
            "1 unmodelled: prctl PR_SET_VMA",
            "2 prepares not placed on a VMA (1 outside a page fault",
        ] {
            assert!(why.contains(part), "{part}: {why}");
        }
    }

    /// An unmodelled syscall flags its process's rows, the ones before and after it, and
    /// its later forks' rows; an exec starts the process's rows afresh.
    #[test]
    fn what_the_model_cannot_take_flags_the_rows_it_may_change() {
        let (mut tree, mut f) = execed();
        f.syscall(&tree, &sys(100, SYS_MMAP, [0, 4 * PAGE_SIZE, 3, MAP_PRIVATE_ANON, u64::MAX, 0], 0x1_0000_0000));
        prepare(&mut f, &tree, &prep(100, 0x1_0000_0000, Some((0x1_0000_0000, 0x1_0000_4000, VM_READ | VM_WRITE))));
        f.syscall(&tree, &sys(100, SYS_MSEAL, [0x1_0000_0000, PAGE_SIZE, 0, 0, 0, 0], 0));
        f.syscall(&tree, &sys(100, SYS_PRCTL, [PR_SET_VMA, 0, 0x1_0000_0000, PAGE_SIZE, 0, 0], 0));
        tree.marker(100, 2);
        tree.fork(100, 101);
        f.fork(&tree, 1, 0);
        let flag = |f: &Feed, proc: usize, phase: Option<u32>| f.rows.iter().find(|r| (r.proc, r.phase) == (proc, phase)).and_then(|r| r.not_modelled.clone());
        assert_eq!(
            flag(&f, 0, None).as_deref(),
            Some("mseal not modelled (vm state the model has no field for); prctl PR_SET_VMA not modelled (vm state the model has no field for)")
        );
        assert!(flag(&f, 0, Some(2)).is_some_and(|w| w.starts_with("mseal")), "the fork's row, in the next phase");
        tree.exit(101, 101, 1);
        f.exit(&tree, 1, 0);
        assert!(flag(&f, 1, Some(2)).is_some_and(|w| w.starts_with("forked by tgid 100 whose model was inexact: mseal")));
        // A new image: what follows is exact again.
        tree.marker(100, 3);
        f.syscall(&tree, &with_enter(sys(100, SYS_EXECVE, [0; 6], 0)));
        tree.exec(100);
        f.exec(&tree, 100, 0);
        tree.marker(100, 4);
        f.syscall(&tree, &sys(100, SYS_MMAP, [0, 4 * PAGE_SIZE, 3, MAP_PRIVATE_ANON, u64::MAX, 0], 0x1_0000_0000));
        prepare(&mut f, &tree, &prep(100, 0x1_0000_0000, Some((0x1_0000_0000, 0x1_0000_4000, VM_READ | VM_WRITE))));
        assert_eq!(flag(&f, 0, Some(4)), None);
    }
}
