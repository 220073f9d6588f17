//! The model's feed: what the kernel reports about the traced processes, translated into
//! `lazyvma_model::event::Event`s and applied to an eager + lazy `Pair`: VMA syscalls and
//! prepares in the order each mm serialised them (`order.rs`), the rest in ring-buffer
//! order. Eager then answers "does the model match the slab?" and lazy "what would the
//! series save?", both per (process, phase) like the observed tally.
//!
//! A process is modelled once its whole address space has been seen built: from its fork
//! by a modelled parent, or from its exec, or seeded from the snapshot taken at the start
//! (-p, --cgroup: `trace/feed/seed.rs`). A child sharing its parent's mm (vfork, CLONE_VM)
//! acts on the parent's model until it execs.
//! The exec image's VMAs (no syscall made them) are learnt from the kernel's own bounds
//! when a prepare first touches one (`PrepareVma`); nothing here reads /proc, so replaying
//! the same records gives the same events.
//!
//! The translation's parts, each in a file of its own: `flags.rs` (vm_flags, mmap flags,
//! the pgoff tags), `syscalls.rs` (a syscall record to events), `prepares.rs` (a prepare's
//! records paired and placed), `queue.rs` (the per-mm order), `coverage.rs` (rows, what
//! the model could not take, the event cap), `seeded.rs` (processes seeded from a
//! snapshot). Here: the `Feed`, the model it drives, and each process's fork, exec, exit.
mod coverage;
mod flags;
pub mod order;
mod prepares;
mod queue;
pub mod seed;
mod seeded;
mod syscalls;

pub use coverage::{Coverage, Row, EVENTS_MAX};

use crate::trace::{
    counts::slab::{At, SlabCounts},
    tree::pids::Tree,
};
use lazyvma_model::{
    event::{Event, Pid, PAGE_SIZE},
    kernel::Kernel,
    knobs::Knobs,
    pair::Pair,
    trace_abi::*,
};
use order::Order;
use prepares::Pairing;
use queue::Queued;
use seed::Pending;
use std::collections::{HashMap, HashSet};

/// The exec'd stack's place in the model: above every user address, so no syscall range
/// ever meets it. Its bounds do not matter (only fork and exit touch it); its cost does.
const EXEC_STACK: u64 = (1 << 56) - PAGE_SIZE;

#[derive(Default)]
struct Proc {
    /// `mm->brk`, page-aligned, once a brk call told it.
    brk: Option<u64>,
    /// `mm->def_flags`' lock bits (mlockall MCL_FUTURE): every later mmap and brk has them.
    /// A fork's or exec's new mm starts without (`VM_INIT_DEF_MASK`).
    locked: u16,
    /// The exec whose image this mm was forked from (a count of the trace's execs; 0:
    /// unknown, seeded): processes with the same one may share anon_vmas.
    image: u64,
    /// (end, pgoff tag) of each anonymous VMA of the exec image learnt from a prepare: the
    /// ELF loader's .bss tails, which `vm_brk_flags` made with the heap's vm_flags.
    image_anon: Vec<(u64, u64)>,
    /// The arch tag of the heap's VMAs: `do_brk_flags` adds `VM_DATA_DEFAULT_FLAGS`, which
    /// on arm64 holds `VM_MTE_ALLOWED` (bit 33), so before 6.1 an extension merges into the
    /// .bss tail it follows (`brk_merges_below`). Taken from that tail when the first
    /// extension meets it; 0 (untagged) otherwise, which on arm64 6.1+ keeps them apart.
    brk_tag: u64,
}

pub struct Feed {
    pair: Pair,
    kernel: Kernel,
    /// Kernel 6.7+: MAP_STACK sets VM_NOHUGEPAGE.
    stack_nohuge: bool,
    /// Kernel 6.17+: mremap moves a range spanning several VMAs.
    multi_vma_mremap: bool,
    /// Before 6.1, brk's `do_brk_flags` merged an extension into whatever VMA ended at the
    /// old brk (`vma_merge` with prev: the .bss tail); since the maple tree (6.1) it only
    /// expands a VMA at or above `mm->start_brk`.
    brk_merges_below: bool,
    /// `--model-events`: print each event fed on stderr.
    pub print: bool,
    /// Prepares come from the `__anon_vma_prepare` hook, not the fault tracepoints (a
    /// kernel without `exceptions:page_fault_user`, e.g. arm64).
    pub from_hooks: bool,
    /// Prepares come from the fault tracepoints, and the `__anon_vma_prepare` hook's exit
    /// follows each one's records (fentry or kprobes attached): a prepare with no fault
    /// address waits for it, by thread, and takes its VMA.
    pub prepare_hooked: bool,
    awaiting_hook: HashMap<u32, (PrepareVma, Option<At>)>,
    /// The events fed, in order: what `replay --knob` and a knob sweep re-run.
    pub events: Vec<Event>,
    /// Indices in `events` of those the model refused (they changed nothing).
    pub refused: Vec<usize>,
    /// (proc, phase) each event counted at.
    pub fed_at: Vec<(usize, Option<u32>)>,
    pub rows: Vec<Row>,
    row_index: HashMap<(usize, Option<u32>), usize>,
    pub eager: SlabCounts,
    pub lazy: SlabCounts,
    /// Lost prepare races' spares, in total (per row in `rows`).
    pub spares: SlabCounts,
    pub coverage: Coverage,
    /// Modelled processes by `proc` (the model's pid is `proc + 1`).
    procs: HashMap<usize, Proc>,
    /// Execs modelled so far (`Proc::image`).
    images: u64,
    /// Processes inside execve (enter seen, `sched_process_exec` not yet) and the prepares
    /// they made meanwhile: in the new mm, so applied after the model's exec.
    in_exec: HashMap<usize, Vec<PrepareVma>>,
    /// Per thread: one prepare's two records (the slab count, the VMA), whichever came first.
    pairing: HashMap<u32, Pairing>,
    /// Tasks created with CLONE_VM but not CLONE_THREAD: they share their parent's mm.
    shared_mm: HashSet<u32>,
    /// Such children (vfork, posix_spawn) until they exec or exit, by `proc`: the modelled
    /// process whose mm they act on. What they do counts at their own (proc, phase), as
    /// the slab tally counts it, but changes the owner's model (glibc's posix_spawn child
    /// faults in the stack its parent mapped: the prepare is in the parent's mm).
    borrowed: HashMap<usize, usize>,
    /// Every `proc` ever modelled: forked by a modelled parent, exec'd, seeded, or
    /// borrowing a modelled mm. The rest of the tree is `not_modelled`.
    ever: HashSet<usize>,
    /// A snapshot taken at the start, waiting for its end marker (`-p`, `--cgroup`).
    pub seed: Option<Pending>,
    /// Modelled processes whose rows are not the model's to match, with why (a seeded
    /// process sharing anon_vmas with one not seeded, and its forks).
    partial: HashMap<usize, String>,
    /// Processes forked before the seed's TRACED marker, and their descendants: maybe
    /// never in FEED_TRACED (their VMA records not sent), so never modelled, exec or not.
    unfollowed: HashSet<usize>,
    /// Processes whose execve entered once every program was attached (after the seed's
    /// TRACED marker, or with no seed): their exec's prepares are all seen, so the exec
    /// models them from scratch even if they were forked before.
    whole_exec: HashSet<usize>,
    /// A seed's end marker (or the trace's end) came: `seed` is gone, the trace was seeded.
    seed_done: bool,
    /// Live objects the seed gave the model: eager AV, AVC, lazy AV, AVC.
    pub seeded_live: [i64; 4],
    /// What the seed started from, for a knob sweep to re-seed per knob value.
    pub seed_start: Option<seed::Start>,
    /// `events` keeps at most this many (`--model-events-max`); past it the sweep is not run.
    pub events_max: usize,
    /// Events fed past `events_max` and not kept.
    pub events_dropped: u64,
    order: Order<Queued>,
}

/// (major, minor) of a `uname -r` string.
pub fn version(release: &str) -> (u32, u32) {
    let mut it = release.split(|c: char| !c.is_ascii_digit()).filter_map(|x| x.parse().ok());
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// The model's merge rules for a kernel release: 6.18's since the 2025 anon merge work
/// (taken here as 6.16), 6.1's from 6.0, `degree` before.
pub fn kernel_of(release: &str) -> Kernel {
    match version(release) {
        (m, _) if m < 6 => Kernel::Pre6_0,
        (6, n) if n < 16 => Kernel::V6_1,
        _ => Kernel::V6_18,
    }
}

impl Feed {
    pub fn new(release: &str, knobs: Knobs) -> Feed {
        let kernel = kernel_of(release);
        Feed {
            pair: Pair::new(kernel, knobs),
            kernel,
            stack_nohuge: version(release) >= (6, 7),
            multi_vma_mremap: version(release) >= (6, 17),
            brk_merges_below: version(release) < (6, 1),
            print: false,
            from_hooks: false,
            prepare_hooked: false,
            awaiting_hook: HashMap::new(),
            events: Vec::new(),
            refused: Vec::new(),
            fed_at: Vec::new(),
            rows: Vec::new(),
            row_index: HashMap::new(),
            eager: SlabCounts::default(),
            lazy: SlabCounts::default(),
            spares: SlabCounts::default(),
            coverage: Coverage::default(),
            procs: HashMap::new(),
            images: 0,
            in_exec: HashMap::new(),
            pairing: HashMap::new(),
            shared_mm: HashSet::new(),
            borrowed: HashMap::new(),
            ever: HashSet::new(),
            seed: None,
            unfollowed: HashSet::new(),
            whole_exec: HashSet::new(),
            seed_done: false,
            partial: HashMap::new(),
            seeded_live: [0; 4],
            seed_start: None,
            events_max: EVENTS_MAX,
            events_dropped: 0,
            order: Order::default(),
        }
    }

    /// Syscalls and prepares the keys moved behind one that arrived later (`order.rs`).
    pub fn reordered(&self) -> u64 {
        self.order.reordered
    }

    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// The model's state goes, once the report has read it: a knob sweep then seeds and runs
    /// models of its own, and at 1 M seeded VMAs this one was a third of the peak.
    pub fn release_model(&mut self) {
        self.pair = Pair::new(self.kernel, lazyvma_model::knobs::Knobs::default());
    }

    pub fn lazy_rules(&self) -> &lazyvma_model::lazy::RuleCounts {
        self.pair.lazy().rules()
    }

    fn pid(proc: usize) -> Pid {
        proc as Pid + 1
    }

    fn at(tree: &Tree, proc: usize) -> At {
        let p = tree.get(proc);
        At { proc, tgid: p.tgid, phase: p.phase }
    }

    /// The process `tgid` is now, and the modelled process whose mm it acts on (itself,
    /// or the owner of the mm a vfork child borrows), if any.
    fn modelled(&self, tree: &Tree, tgid: u32) -> Option<(usize, usize)> {
        let p = tree.procs.iter().rposition(|p| p.tgid == tgid && !p.exited)?;
        self.mm_of(p).map(|mm| (p, mm))
    }

    fn mm_of(&self, proc: usize) -> Option<usize> {
        let mm = self.borrowed.get(&proc).copied().unwrap_or(proc);
        self.procs.contains_key(&mm).then_some(mm)
    }

    /// Apply one event; its deltas count at `at`.
    fn apply(&mut self, ev: Event, at: At) {
        self.coverage.events_fed += 1;
        let keep = self.events.len() < self.events_max;
        match self.pair.apply(&ev) {
            Ok((e, l)) => self.count(&e, &l, at),
            Err(err) => {
                if keep {
                    self.refused.push(self.events.len());
                }
                self.coverage.model_errors += 1;
                self.coverage.first_error.get_or_insert_with(|| format!("{ev:?}: {err}"));
                self.inexact(at.proc, at, &format!("the model refused {ev:?}: {err}"));
            }
        }
        if self.print {
            eprintln!("model proc {} phase {:?}: {ev:x?}", at.proc, at.phase);
        }
        if !keep {
            self.events_dropped += 1;
            return;
        }
        self.events.push(ev);
        self.fed_at.push((at.proc, at.phase));
    }

    /// `task_newtask` in `parent`: a task sharing the mm without being a thread (vfork,
    /// posix_spawn) of a traced process.
    pub fn newtask(&mut self, tree: &Tree, parent: u32, pid: u32, clone_flags: u64) {
        const CLONE_VM: u64 = 0x100;
        const CLONE_THREAD: u64 = 0x1_0000;
        let traced = tree.procs.iter().any(|p| p.tgid == parent && !p.exited);
        if traced && clone_flags & CLONE_VM != 0 && clone_flags & CLONE_THREAD == 0 {
            self.shared_mm.insert(pid);
        }
    }

    /// A process joined the tree at `child` (`sched_process_fork` at `ktime`, after `dup_mmap`).
    pub fn fork(&mut self, tree: &Tree, child: usize, ktime: u64) {
        let c = tree.get(child);
        let early = self.seed.as_ref().is_some_and(|p| !p.followed);
        if early || c.parent.is_some_and(|p| self.unfollowed.contains(&p)) {
            self.unfollowed.insert(child);
        }
        if let Some(p) = c.parent {
            self.touched(tree.get(p).tgid, "a fork");
            self.touched(c.tgid, "its fork");
            self.barrier(p, ktime);
        }
        // The mm the parent runs in: its own, or the one a vfork child borrows (busybox
        // `timeout`'s vfork child forks its watcher: dup_mmap copies the shared mm).
        let Some((parent, mm)) = c.parent.and_then(|p| Some((p, self.mm_of(p)?))) else { return };
        if self.shared_mm.remove(&c.tgid) {
            // No dup_mmap: it acts on that mm until its exec (modelled from there).
            self.borrowed.insert(child, mm);
            self.ever.insert(child);
            return;
        }
        let p = &self.procs[&mm];
        let p = Proc { brk: p.brk, locked: 0, image: p.image, image_anon: p.image_anon.clone(), brk_tag: p.brk_tag };
        self.procs.insert(child, p);
        if let Some(why) = self.partial.get(&mm).or(self.partial.get(&parent)).cloned() {
            let why = match why.strip_prefix("seeded ") {
                Some(rest) => format!("forked by a process {rest}"),
                None => format!("forked by tgid {} whose model was inexact: {why}", tree.get(parent).tgid),
            };
            self.partial.insert(child, why);
        }
        self.ever.insert(child);
        self.coverage.modelled += 1;
        // Counted where the slab counts it: at the task that ran dup_mmap.
        self.apply(Event::Fork { parent: Self::pid(mm), child: Self::pid(child) }, Self::at(tree, parent));
    }

    /// `sched_process_exec`: the old mm is gone, the new image's stack was prepared by the
    /// argv copy. An unmodelled process starts being modelled here.
    pub fn exec(&mut self, tree: &Tree, tgid: u32, ktime: u64) {
        self.touched(tgid, "an exec");
        let Some(proc) = tree.procs.iter().rposition(|p| p.tgid == tgid && !p.exited) else { return };
        // An execve that entered before every program was attached (before the seed's
        // TRACED marker) may have prepared its new stack unseen: it starts no model. One
        // that entered after does, even in a process forked before (`unfollowed`).
        let whole = self.whole_exec.remove(&proc);
        if !whole && (self.unfollowed.contains(&proc) || self.seeding() && !self.ever.contains(&proc)) {
            self.unfollowed.insert(proc);
            self.in_exec.remove(&proc);
            return;
        }
        self.unfollowed.remove(&proc);
        self.barrier(proc, ktime);
        let at = Self::at(tree, proc);
        // A new image: brk unknown until its first call.
        // A vfork child of an unmodelled parent frees nothing at its exec (the mm it drops is
        // its parent's): modelled from here exactly.
        let vforked = self.shared_mm.remove(&tgid);
        if !self.ever.contains(&proc) && !tree.is_command(proc) && !vforked {
            // The image this exec frees was never modelled (a child of an unmodelled parent,
            // or a process the seed refused): its frees are observed here, not modelled.
            let i = self.row(at);
            self.rows[i]
                .not_modelled
                .get_or_insert_with(|| "entered the model at its exec: the image the exec freed (and what the process did before) was never modelled".into());
        }
        if self.procs.insert(proc, Proc::default()).is_none() {
            self.ever.insert(proc);
            self.coverage.modelled += 1;
            self.apply(Event::Spawn { pid: Self::pid(proc) }, at);
        }
        self.images += 1;
        if let Some(p) = self.procs.get_mut(&proc) {
            p.image = self.images;
        }
        self.borrowed.remove(&proc);
        let during = self.in_exec.remove(&proc).unwrap_or_default();
        // The first prepare of an exec is the argv copy into the new stack (by GUP: its
        // fault address, if any, is a stale one of the old mm, where the argv was read).
        let stack = (!during.is_empty()).then_some(EXEC_STACK);
        self.apply(Event::Exec { pid: Self::pid(proc), stack }, at);
        for p in during.iter().skip(1) {
            self.place(proc, p, at);
        }
        // Its rows from here are of its new image alone (this one keeps the old one's flag).
        if let Some(why) = self.partial.remove(&proc) {
            let i = self.row(at);
            self.rows[i].not_modelled.get_or_insert(why);
        }
    }

    /// The last thread of `proc` left: its mm is torn down.
    pub fn exit(&mut self, tree: &Tree, proc: usize, ktime: u64) {
        self.touched(tree.get(proc).tgid, "an exit");
        self.barrier(proc, ktime);
        // Another mm's munmap that ended before this exit unlinked first: who frees a
        // shared anon_vma (the last to drop it) depends on it.
        for (mm, item) in self.order.before(ktime) {
            self.run(mm, item);
        }
        let stray = self.in_exec.remove(&proc).map_or(0, |v| v.len());
        self.whole_exec.remove(&proc);
        self.borrowed.remove(&proc);
        let Some(gone) = self.procs.remove(&proc) else { return };
        // A process of the same image inside execve: the kernel tears the old mm down
        // before `sched_process_exec`, so an exit between the two freed the anon_vmas they
        // share after the teardown, which the records (exit, then exec) do not show.
        let mut racing: Vec<usize> =
            self.in_exec.keys().copied().filter(|p| self.procs.get(p).is_some_and(|q| gone.image != 0 && q.image == gone.image)).collect();
        // Sorted here and below: rows and reasons must not follow the maps' hash order.
        racing.sort_unstable();
        for p in racing {
            let what = "an exit while a process of the same image was inside execve (which freed the anon_vmas they share is not in the records)";
            self.unmodelled_at(p, Self::at(tree, p), what);
            self.unmodelled_at(proc, Self::at(tree, proc), what);
        }
        let mut borrowers: Vec<usize> = self.borrowed.iter().filter(|(_, &mm)| mm == proc).map(|(b, _)| *b).collect();
        borrowers.sort_unstable();
        if !borrowers.is_empty() {
            // CLONE_VM without CLONE_VFORK: the mm outlives this exit in the kernel, not in
            // the model; the borrowers' later work is not modelled.
            self.borrowed.retain(|_, mm| *mm != proc);
            for b in borrowers {
                self.unmodelled_at(b, Self::at(tree, b), "a CLONE_VM child outliving its mm's owner");
            }
        }
        if stray > 0 {
            self.inexact(proc, Self::at(tree, proc), &format!("{stray} prepares of an exec it did not finish before its exit not placed"));
        }
        self.coverage.faults_not_placed += stray as u64;
        self.apply(Event::Exit { pid: Self::pid(proc) }, Self::at(tree, proc));
    }

    /// Processes of the tree never modelled (running before the trace, or vfork children
    /// that did not exec).
    pub fn finish(&mut self, tree: &Tree, lost: u64, missing: &[(String, String)]) {
        // In key order, not the map's (randomly seeded) one: a replay must hand the model
        // the same sequence every run.
        let mut waiting: Vec<_> = std::mem::take(&mut self.awaiting_hook).into_values().collect();
        waiting.sort_unstable_by_key(|(ev, _)| (ev.key, ev.pid));
        for (ev, at) in waiting {
            self.prepared_now(tree, &ev, at);
        }
        for (mm, item) in self.order.drain() {
            self.run(mm, item);
        }
        if self.coverage.out_of_order > 0 {
            let n = self.coverage.out_of_order;
            self.coverage.incomplete.push(format!("{n} syscalls or prepares arrived after a later one of their mm was applied (out of order)"));
        }
        if let Some(mut p) = self.seed.take() {
            p.unseeded("the snapshot's end marker was not seen (ring buffer records lost?)");
            self.coverage.not_seeded = p.reasons;
            self.seed_done = true;
        }
        self.coverage.not_modelled = tree.procs.iter().filter(|p| !self.ever.contains(&p.proc)).map(|p| p.tgid).collect();
        self.coverage.not_modelled_why =
            tree.procs.iter().filter(|p| !self.ever.contains(&p.proc)).map(|p| (p.proc, (p.tgid, self.why_not(tree, p.proc)))).collect();
        if lost > 0 {
            self.coverage.incomplete.push(format!("{lost} ring buffer records lost"));
        }
        self.inexact_reasons();
        for (tp, why) in missing {
            // The prepare hook stands in for the fault address and the prepare program.
            if self.from_hooks && (tp.starts_with("exceptions:") || tp == "kmem:kmem_cache_alloc") {
                continue;
            }
            if why.contains("the model is not fed") {
                self.coverage.incomplete.push(format!("{tp} not attached"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::flags::{VM_READ, VM_WRITE};
    use super::*;
    use crate::trace::counts::slab::Sizes;

    /// Spec §4.3's x86_64 sizes: object_size 96/64, slab_size 104/64.
    pub(super) fn s() -> Sizes {
        Sizes::spec_x86_64()
    }
    pub(super) const MAP_PRIVATE_ANON: u64 = 0x22;

    pub(super) fn sys(tgid: u32, slot: usize, args: [u64; 6], ret: i64) -> SyscallEvent {
        SyscallEvent { kind: EV_SYSCALL, pid: tgid, tgid, slot: slot as u32, args, ret, key: 0 }
    }

    pub(super) fn prep(tgid: u32, addr: u64, vma: Option<(u64, u64, u64)>) -> PrepareVma {
        let (start, end, flags) = vma.unwrap_or_default();
        PrepareVma {
            kind: EV_PREPARE_VMA,
            pid: tgid,
            tgid,
            found: vma.is_some() as u32,
            addr,
            bytes_req: 64,
            start,
            end,
            pgoff: start / PAGE_SIZE,
            flags,
            ..Default::default()
        }
    }

    /// Command 100 after its exec, modelled from scratch (6.18).
    pub(super) fn execed() -> (Tree, Feed) {
        let mut tree = Tree::command(100);
        let mut f = Feed::new("6.18.44", Knobs::default());
        tree.exec(100);
        f.exec(&tree, 100, 0);
        (tree, f)
    }

    /// The model's events by kind (`MapPgoff`, `Fault`...).
    pub(super) fn kinds(f: &Feed) -> Vec<String> {
        f.events.iter().map(|e| format!("{e:?}").split([' ', '{']).next().unwrap().to_string()).collect()
    }

    /// The command's exec (argv copy, then a .data prepare inside exec), an anon mmap and
    /// its first write, a fork, both exits: spec §5 B for one VMA plus the image.
    #[test]
    fn a_command_tree_becomes_the_models_events_in_order() {
        let mut tree = Tree::command(100);
        let mut f = Feed::new("6.18.44", Knobs::default());
        f.syscall(&tree, &with_enter(sys(100, SYS_EXECVE, [0; 6], 0)));
        prepare(&mut f, &tree, &prep(100, 0, None));
        let data = (0x5555_0000_0000, 0x5555_0000_2000, VM_READ | VM_WRITE);
        prepare(&mut f, &tree, &prep(100, 0x5555_0000_1008, Some(data)));
        tree.exec(100);
        f.exec(&tree, 100, 0);
        f.syscall(&tree, &sys(100, SYS_MMAP, [0, 4 * PAGE_SIZE, 3, MAP_PRIVATE_ANON, u64::MAX, 0], 0x1_0000_0000));
        prepare(&mut f, &tree, &prep(100, 0x1_0000_0000, Some((0x1_0000_0000, 0x1_0000_4000, VM_READ | VM_WRITE))));
        // The anon_vma allocation of the same prepare is not a second fault.
        prepare(&mut f, &tree, &PrepareVma { bytes_req: 96, ..prep(100, 0x1_0000_0000, Some((0x1_0000_0000, 0x1_0000_4000, 3))) });
        tree.fork(100, 101);
        f.fork(&tree, 1, 0);
        tree.exit(101, 101, 1);
        f.exit(&tree, 1, 0);
        tree.exit(100, 100, 1);
        f.exit(&tree, 0, 0);
        let kinds = kinds(&f);
        assert_eq!(kinds, ["Spawn", "Exec", "MapPgoff", "Fault", "MapPgoff", "Fault", "Fork", "Exit", "Exit"]);
        assert_eq!(f.events[1], Event::Exec { pid: 1, stack: Some(EXEC_STACK) });
        // stack + .data + the test VMA: 3 AV / 3 AVC; fork: +3 AV, +6 AVC; all freed.
        let four = |c: &SlabCounts| [c.anon_vma.alloc, c.anon_vma.free, c.anon_vma_chain.alloc, c.anon_vma_chain.free];
        assert_eq!(four(&f.eager), [6, 6, 9, 9]);
        let c = &f.coverage;
        assert_eq!((c.modelled, c.faults_not_placed, c.layout_mismatches, c.model_errors), (2, 0, 0, 0));
    }

    /// busybox `timeout`: the vfork child (CLONE_VM | CLONE_VFORK) forks the watcher, which
    /// copies the borrowed mm (its parent's), counted at the vfork child; the vfork child's
    /// exit tears down nothing; the parent's exec frees only the chains the watcher does
    /// not pin; the watcher's exit frees its own and the parent's old anon_vmas.
    #[test]
    fn a_vfork_child_s_fork_copies_the_mm_it_borrows() {
        let (mut tree, mut f) = execed();
        let a = 0x1_0000_0000u64;
        f.syscall(&tree, &sys(100, SYS_MMAP, [a, PAGE_SIZE, 3, MAP_PRIVATE_ANON | 0x10, u64::MAX, 0], a as i64));
        prepare(&mut f, &tree, &prep(100, a, Some((a, a + PAGE_SIZE, VM_READ | VM_WRITE))));
        f.newtask(&tree, 100, 101, 0x4100 | 17);
        tree.newtask(101, 0x4100 | 17);
        tree.fork(100, 101);
        f.fork(&tree, 1, 0);
        f.newtask(&tree, 101, 102, 17);
        tree.newtask(102, 17);
        tree.fork(101, 102);
        f.fork(&tree, 2, 0);
        tree.exit(101, 101, 1);
        f.exit(&tree, 1, 0);
        f.syscall(&tree, &with_enter(sys(100, SYS_EXECVE, [0; 6], 0)));
        tree.exec(100);
        f.exec(&tree, 100, 0);
        tree.exit(102, 102, 1);
        f.exit(&tree, 2, 0);
        f.finish(&tree, 0, &[]);
        assert_eq!(f.events[4], Event::Fork { parent: 1, child: 3 });
        let four = |c: &SlabCounts| [c.anon_vma.alloc, c.anon_vma.free, c.anon_vma_chain.alloc, c.anon_vma_chain.free];
        let rows: Vec<_> = f.rows.iter().map(|r| (r.proc, four(&r.eager))).collect();
        // The prepare +1/+1 and the exec −0/−1; the fork +1/+2; the watcher's exit −2/−2.
        assert_eq!(rows, [(0, [1, 0, 1, 1]), (1, [1, 0, 2, 0]), (2, [0, 2, 0, 2])]);
        assert!(f.coverage.incomplete.is_empty() && f.coverage.not_modelled.is_empty(), "{:?}", f.coverage);
    }

    /// A child exits while its parent is inside execve: the parent's old mm may be gone
    /// already (the kernel tears it down before `sched_process_exec`), so which of the two
    /// freed their shared anon_vmas is unknown: both rows say so and the model is incomplete.
    /// A process of another image exiting meanwhile is no such case.
    #[test]
    fn an_exit_inside_an_exec_of_the_same_image_is_flagged() {
        let (mut tree, mut f) = execed();
        let a = 0x1_0000_0000u64;
        f.syscall(&tree, &sys(100, SYS_MMAP, [a, PAGE_SIZE, 3, MAP_PRIVATE_ANON | 0x10, u64::MAX, 0], a as i64));
        prepare(&mut f, &tree, &prep(100, a, Some((a, a + PAGE_SIZE, VM_READ | VM_WRITE))));
        for c in [101, 102] {
            tree.fork(100, c);
            f.fork(&tree, tree.procs.len() - 1, 0);
        }
        // 102 starts an image of its own first.
        f.syscall(&tree, &with_enter(sys(102, SYS_EXECVE, [0; 6], 0)));
        tree.exec(102);
        f.exec(&tree, 102, 0);
        f.syscall(&tree, &with_enter(sys(100, SYS_EXECVE, [0; 6], 0)));
        tree.exit(102, 102, 1);
        f.exit(&tree, 2, 0);
        assert!(f.coverage.unmodelled.is_empty(), "{:?}", f.coverage.unmodelled);
        tree.exit(101, 101, 1);
        f.exit(&tree, 1, 0);
        tree.exec(100);
        f.exec(&tree, 100, 0);
        f.finish(&tree, 0, &[]);
        let flagged: Vec<usize> = f.rows.iter().filter(|r| r.not_modelled.as_deref().is_some_and(|w| w.contains("inside execve"))).map(|r| r.proc).collect();
        assert_eq!(flagged, [0, 1]);
        assert!(f.coverage.incomplete.iter().any(|w| w.contains("inside execve")), "{:?}", f.coverage.incomplete);
    }

    /// Both records of one prepare: the VMA, then the slab tally's count (AVC only).
    pub(super) fn prepare(f: &mut Feed, tree: &Tree, ev: &PrepareVma) {
        f.prepare(tree, &s(), ev);
        if ev.bytes_req == s().anon_vma_chain.object_size {
            let proc = tree.procs.iter().rposition(|p| p.tgid == ev.tgid).unwrap();
            f.prepare_counted(tree, ev.pid, Feed::at(tree, proc));
        }
    }

    pub(super) fn with_enter(mut e: SyscallEvent) -> SyscallEvent {
        e.slot |= SYS_ENTER;
        e
    }
}
