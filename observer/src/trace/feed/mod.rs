//! The model's feed: what the kernel reports about the traced processes, translated into
//! `lazyvma_model::event::Event`s and applied to an eager + lazy `Pair`: VMA syscalls and
//! prepares in the order each mm serialised them (`order.rs`), the rest in ring-buffer
//! order. Eager then answers "does the model match the slab?" and lazy "what would the
//! series save?", both per (process, phase) like the observed tally.
//!
//! A process is modelled once its whole address space has been seen built: from its fork
//! by a modelled parent, or from its exec, or seeded from the snapshot taken at the start
//! (-p, --cgroup: `trace/seed.rs`). A child sharing its parent's mm (vfork, CLONE_VM)
//! acts on the parent's model until it execs.
//! The exec image's VMAs (no syscall made them) are learnt from the kernel's own bounds
//! when a prepare first touches one (`PrepareVma`); nothing here reads /proc, so replaying
//! the same records gives the same events.
use super::{
    order::Order,
    pids::Tree,
    seed::Pending,
    slab::{At, Counts, Kind, Sizes},
};
use lazyvma_model::{
    counts::Deltas,
    event::{vm, Advice, Event, FaultKind, Pid, PAGE_SIZE},
    kernel::Kernel,
    knobs::Knobs,
    pair::Pair,
    trace_abi::*,
};
use std::{
    cmp::Ordering,
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
};

/// `SYSCALL_IDS` for this architecture.
pub fn syscall_ids() -> [u64; SYS_COUNT] {
    let mut ids = [NO_SYSCALL; SYS_COUNT];
    ids[SYS_MMAP] = libc::SYS_mmap as u64;
    ids[SYS_MUNMAP] = libc::SYS_munmap as u64;
    ids[SYS_MPROTECT] = libc::SYS_mprotect as u64;
    ids[SYS_PKEY_MPROTECT] = libc::SYS_pkey_mprotect as u64;
    ids[SYS_MREMAP] = libc::SYS_mremap as u64;
    ids[SYS_MADVISE] = libc::SYS_madvise as u64;
    ids[SYS_BRK] = libc::SYS_brk as u64;
    ids[SYS_EXECVE] = libc::SYS_execve as u64;
    ids[SYS_EXECVEAT] = libc::SYS_execveat as u64;
    ids[SYS_MLOCK] = libc::SYS_mlock as u64;
    ids[SYS_MLOCK2] = libc::SYS_mlock2 as u64;
    ids[SYS_MUNLOCK] = libc::SYS_munlock as u64;
    ids[SYS_MLOCKALL] = libc::SYS_mlockall as u64;
    ids[SYS_MUNLOCKALL] = libc::SYS_munlockall as u64;
    ids[SYS_MSEAL] = 462; // the same on every architecture since 424
    ids[SYS_MBIND] = libc::SYS_mbind as u64;
    ids[SYS_PRCTL] = libc::SYS_prctl as u64;
    ids
}

const SYSCALL_NAMES: [&str; SYS_COUNT] = [
    "mmap",
    "munmap",
    "mprotect",
    "pkey_mprotect",
    "mremap",
    "madvise",
    "brk",
    "execve",
    "execveat",
    "mlock",
    "mlock2",
    "munlock",
    "mlockall",
    "munlockall",
    "mseal",
    "mbind",
    "prctl",
];
const PR_SET_VMA: u64 = 0x53564d41;

/// The exec'd stack's place in the model: above every user address, so no syscall range
/// ever meets it. Its bounds do not matter (only fork and exit touch it); its cost does.
const EXEC_STACK: u64 = (1 << 56) - PAGE_SIZE;

/// pgoff bits for what must match for a merge besides pgoff contiguity and the model's
/// flags (`Event::MapPgoff`): another file, and vm_flags the model has no bit for. The
/// model keeps 45 bits of pgoff (its VMA record packs history above them), and anonymous
/// pgoffs of 48-bit address spaces (x86-64 4-level, arm64) stay below 2^36, so bits 40-43
/// are free; with 5-level paging (57-bit) a tag could meet a real pgoff bit.
const PGOFF_FILE: u64 = 1 << 43;
const PGOFF_NORESERVE: u64 = 1 << 42;
/// `VM_GROWSDOWN` (a stack): the model has no bit for it.
const PGOFF_GROWSDOWN: u64 = 1 << 41;
/// Arch flags (vm_flags bits 32-40: arm64's VM_MTE_ALLOWED on anonymous mmaps with MTE
/// and on every brk VMA, x86's pkey bits), seen only in a VMA the kernel showed us; a brk
/// extension takes the .bss tail's (`Proc::brk_tag`).
const PGOFF_ARCH: u64 = 1 << 40;
const _: () = assert!(
    (PGOFF_FILE | PGOFF_NORESERVE | PGOFF_GROWSDOWN | PGOFF_ARCH) >> lazyvma_model::event::PGOFF_BITS == 0,
    "the model drops pgoff bits above PGOFF_BITS"
);
const VM_HIGH_ARCH: u64 = 0x1ff << 32;

// vm_flags (include/linux/mm.h; the same on 6.1 and 6.18).
#[cfg(test)]
const VM_READ: u64 = 0x1;
#[cfg(test)]
const VM_WRITE: u64 = 0x2;
const VM_SHARED: u64 = 0x8;
const VM_GROWSDOWN: u64 = 0x100;
const VM_NORESERVE: u64 = 0x200000;
const VM_NOHUGEPAGE: u64 = 0x40000000;

// mmap(2) flags (x86_64 and arm64 share them).
const MAP_SHARED: u64 = 0x1;
const MAP_SHARED_VALIDATE: u64 = 0x3;
const MAP_ANONYMOUS: u64 = 0x20;
const MAP_GROWSDOWN: u64 = 0x100;
const MAP_NORESERVE: u64 = 0x4000;
const MAP_STACK: u64 = 0x20000;
const MAP_HUGETLB: u64 = 0x40000;
const MREMAP_DONTUNMAP: u64 = 4;
const MLOCK_ONFAULT: u64 = 1;
const MCL_CURRENT: u64 = 1;
const MCL_FUTURE: u64 = 2;
const MCL_ONFAULT: u64 = 4;
/// Above every user address (57-bit x86 included) and the exec'd stack's stand-in.
const USER_TOP: u64 = 1 << 56;

/// Per (process, phase): what each model allocated and freed there.
#[derive(Clone, Debug)]
pub struct Row {
    pub proc: usize,
    pub tgid: u32,
    pub phase: Option<u32>,
    pub eager: Counts,
    pub lazy: Counts,
    /// Spare objects a thread that lost a prepare race allocated and freed (spec §1.2: the
    /// model, single-threaded, has no such race). Observed = eager + these + `before_seed`.
    pub spares: Counts,
    /// What was observed here before the process was seeded: its effects are in the
    /// snapshot the model started from (`trace/seed.rs`).
    pub before_seed: Counts,
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
    /// those that could not be, with why (`trace/seed.rs`).
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

/// A syscall or prepare waiting for its place in its mm's order, with where it counts
/// (captured on arrival, where the slab tally counted what it did).
enum Queued {
    Syscall(SyscallEvent, At),
    Prepare(PrepareVma, At),
}

/// A phase marker from another thread can fall between the two records of one prepare
/// (two programs on one tracepoint): the model counts the prepare where the slab did.
/// Prepares outside a fault inside a VMA syscall send their VMA at its exit, so one
/// thread may have several counted before their VMAs come: each side is a queue.
#[derive(Default)]
struct Pairing {
    counted: VecDeque<At>,
    waiting: VecDeque<PrepareVma>,
}

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
    pub eager: Counts,
    pub lazy: Counts,
    /// Lost prepare races' spares, in total (per row in `rows`).
    pub spares: Counts,
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
    pub seed_start: Option<super::seed::Start>,
    /// `events` keeps at most this many (`--model-events-max`); past it the sweep is not run.
    pub events_max: usize,
    /// Events fed past `events_max` and not kept.
    pub events_dropped: u64,
    order: Order<Queued>,
}

/// `Feed::events_max` by default: a few hundred MB at most.
pub const EVENTS_MAX: usize = 5_000_000;

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

fn pages(len: u64) -> u64 {
    len.div_ceil(PAGE_SIZE)
}

fn prot_bits(prot: u64) -> u16 {
    (prot & 7) as u16 // PROT_READ/WRITE/EXEC are vm::READ/WRITE/EXEC
}

/// `ev` (its thread, time, slab size) placed on the `__anon_vma_prepare` hook's VMA. The hook
/// reads no vm_file: a pgoff other than the address's marks a file.
fn on_hook_vma(vma: &lazyvma_model::hook_abi::VmaSnap, ev: PrepareVma) -> PrepareVma {
    PrepareVma {
        found: 1,
        addr: vma.start,
        start: vma.start,
        end: vma.end,
        pgoff: vma.pgoff,
        flags: vma.flags,
        file: (vma.pgoff != vma.start / PAGE_SIZE) as u64,
        anon_vma: vma.anon_vma,
        ..ev
    }
}

fn is_err(ret: i64) -> bool {
    (-4095..0).contains(&ret)
}

fn to_counts(d: &lazyvma_model::counts::Delta, e: &mut super::slab::AllocFree) {
    e.alloc += d.alloc;
    e.free += d.free;
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
            eager: Counts::default(),
            lazy: Counts::default(),
            spares: Counts::default(),
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

    /// A free from `__anon_vma_prepare`: the spare of a thread that lost the race to
    /// prepare the same VMA (its allocation was counted in the same call).
    pub fn race_spare(&mut self, kind: Kind, at: At) {
        let i = self.row(at);
        for c in [&mut self.rows[i].spares, &mut self.spares] {
            c.add(kind, true);
            c.add(kind, false);
        }
    }

    fn row(&mut self, at: At) -> usize {
        let next = self.rows.len();
        let i = *self.row_index.entry((at.proc, at.phase)).or_insert(next);
        if i == next {
            let zero = Counts::default();
            let not_modelled = self.partial.get(&at.proc).cloned();
            self.rows.push(Row { proc: at.proc, tgid: at.tgid, phase: at.phase, eager: zero, lazy: zero, spares: zero, before_seed: zero, not_modelled });
        }
        i
    }

    fn count(&mut self, e: &Deltas, l: &Deltas, at: At) {
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
    fn unmodelled_at(&mut self, mm: usize, at: At, what: impl Into<String>) {
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
    fn inexact(&mut self, mm: usize, at: At, why: &str) {
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
        let racing: Vec<usize> = self.in_exec.keys().copied().filter(|p| self.procs.get(p).is_some_and(|q| gone.image != 0 && q.image == gone.image)).collect();
        for p in racing {
            let what = "an exit while a process of the same image was inside execve (which freed the anon_vmas they share is not in the records)";
            self.unmodelled_at(p, Self::at(tree, p), what);
            self.unmodelled_at(proc, Self::at(tree, proc), what);
        }
        let borrowers: Vec<usize> = self.borrowed.iter().filter(|(_, &mm)| mm == proc).map(|(b, _)| *b).collect();
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

    /// A `kmem_cache_alloc` from `__anon_vma_prepare` and the VMA it prepares (x86: the
    /// fault address comes from the `exceptions` tracepoints).
    pub fn prepare(&mut self, tree: &Tree, sizes: &Sizes, ev: &PrepareVma) {
        self.touched(ev.tgid, "a first fault (anon_vma_prepare)");
        // One prepare allocates its anon_vma_chain first, then maybe an anon_vma.
        if self.from_hooks || ev.bytes_req != sizes.anon_vma_chain.object_size || !tree.procs.iter().any(|p| p.tgid == ev.tgid && !p.exited) {
            return;
        }
        let p = self.pairing.entry(ev.pid).or_default();
        let counted = p.counted.pop_front();
        if counted.is_none() {
            p.waiting.push_back(*ev);
        }
        self.unpair(ev.pid);
        if let Some(at) = counted {
            self.prepared(tree, ev, Some(at));
        }
    }

    /// The slab tally counted thread `pid`'s prepare's anon_vma_chain at `at`: the model
    /// counts the same prepare there too.
    pub fn prepare_counted(&mut self, tree: &Tree, pid: u32, at: At) {
        if self.from_hooks {
            return;
        }
        let p = self.pairing.entry(pid).or_default();
        let waiting = p.waiting.pop_front();
        if waiting.is_none() {
            p.counted.push_back(at);
        }
        self.unpair(pid);
        if let Some(ev) = waiting {
            self.prepared(tree, &ev, Some(at));
        }
    }

    /// A thread with nothing left to pair keeps no entry.
    fn unpair(&mut self, pid: u32) {
        if self.pairing.get(&pid).is_some_and(|p| p.counted.is_empty() && p.waiting.is_empty()) {
            self.pairing.remove(&pid);
        }
    }

    /// `__anon_vma_prepare` returned (function hooks; where no fault tracepoint exists).
    /// No fault address: the VMA itself says where. No vm_file either: a pgoff other than
    /// the address's marks a file.
    /// `op.ktime`: the hook's exit, inside the fault's mmap_lock read section. Otherwise
    /// (the fault tracepoints feed) it places a prepare that waits for it, if any.
    pub fn prepare_hook(&mut self, tree: &Tree, op: &super::ops::Op) {
        let super::ops::KernelOp::Prepare { vma, ret, task_mm, .. } = &op.op else { return };
        if !self.from_hooks {
            if let Some((ev, at)) = self.awaiting_hook.remove(&op.pid) {
                self.hooked(tree, ev, at, vma, *ret, *task_mm);
            }
            return;
        }
        if *ret != 0 {
            return;
        }
        self.touched(op.tgid, "a first fault (anon_vma_prepare)");
        let ev = on_hook_vma(vma, PrepareVma { kind: EV_PREPARE_VMA, pid: op.pid, tgid: op.tgid, key: op.ktime, ..Default::default() });
        self.prepared(tree, &ev, None);
    }

    /// A prepare with no fault address meets its hook's exit: placed on the hook's VMA if
    /// it is in the task's own mm (GUP in its own mm: MADV_POPULATE_WRITE outside a VMA
    /// syscall, a write to /proc/self/mem, O_DIRECT reads); else (another process's mm, a
    /// failed prepare) left unplaced, as without the hook.
    fn hooked(&mut self, tree: &Tree, ev: PrepareVma, at: Option<At>, vma: &lazyvma_model::hook_abi::VmaSnap, ret: i32, task_mm: u64) {
        let own = ret == 0 && vma.vma != 0 && task_mm != 0 && vma.mm == task_mm && vma.start < vma.end;
        if !own {
            return self.prepared_now(tree, &ev, at);
        }
        self.coverage.prepares_placed_by_hook += 1;
        self.prepared_now(tree, &on_hook_vma(vma, ev), at);
    }

    /// A prepare's two records are in: to the model, unless it has no fault address and
    /// its hook's exit is still to come.
    fn prepared(&mut self, tree: &Tree, ev: &PrepareVma, at: Option<At>) {
        if self.prepare_hooked && !self.from_hooks && ev.addr == 0 && (ev.found == 0 || ev.found == FOUND_NOT_IN_FAULT) {
            if let Some((old, old_at)) = self.awaiting_hook.insert(ev.pid, (*ev, at)) {
                // Its hook never came (lost?): unplaced, as without the hook.
                self.prepared_now(tree, &old, old_at);
            }
            return;
        }
        self.prepared_now(tree, ev, at);
    }

    fn prepared_now(&mut self, tree: &Tree, ev: &PrepareVma, at: Option<At>) {
        let Some(proc) = tree.procs.iter().rposition(|p| p.tgid == ev.tgid && !p.exited) else { return };
        if let Some(during) = self.in_exec.get_mut(&proc) {
            during.push(*ev);
            return;
        }
        if let Some(mm) = self.mm_of(proc) {
            let at = at.unwrap_or_else(|| Self::at(tree, proc));
            self.queue(mm, ev.key, Queued::Prepare(*ev, at));
        }
    }

    /// Apply `item` to mm `mm` once its turn comes (`order.rs`), and whatever is due.
    fn queue(&mut self, mm: usize, key: u64, item: Queued) {
        let late = self.order.out_of_order;
        if let Err(item) = self.order.push(mm, key, item) {
            self.run(mm, item);
        }
        self.coverage.out_of_order += self.order.out_of_order - late;
        for (mm, item) in self.order.ready() {
            self.run(mm, item);
        }
    }

    /// Everything queued for `proc`'s mm goes first: a fork, exec or exit (at `ktime`)
    /// comes after it.
    fn barrier(&mut self, proc: usize, ktime: u64) {
        let mm = self.borrowed.get(&proc).copied().unwrap_or(proc);
        for item in self.order.barrier(mm, ktime) {
            self.run(mm, item);
        }
    }

    fn run(&mut self, mm: usize, item: Queued) {
        if !self.procs.contains_key(&mm) {
            return;
        }
        match item {
            Queued::Syscall(ev, at) => self.apply_syscall(mm, &ev, at),
            Queued::Prepare(ev, at) => self.place(mm, &ev, at),
        }
    }

    /// A prepare in the mm of modelled process `proc`: a write fault on the kernel's VMA,
    /// mapped first if the model has not been told of it (the exec image).
    fn place(&mut self, proc: usize, ev: &PrepareVma, at: At) {
        if ev.addr == 0 {
            self.coverage.faults_not_placed += 1;
            self.coverage.prepares_outside_fault += matches!(ev.found, FOUND_NOT_IN_FAULT | FOUND_HELD) as u64;
            self.inexact(proc, at, "a prepare not placed on a VMA (no fault address: GUP, uprobes)");
            return;
        }
        let pid = Self::pid(proc);
        let vmas = self.pair.eager().vmas(pid).unwrap_or_default();
        let here = vmas.iter().find(|v| v.start <= ev.addr && ev.addr < v.end);
        match here {
            Some(v) => {
                // The model knows the VMA: the fault needs no kernel bounds (a failed
                // bpf_find_vma changes nothing here).
                if ev.found == 1 && (v.start, v.end) != (ev.start, ev.end) {
                    self.coverage.layout_mismatches += 1;
                    self.inexact(proc, at, "a prepare's kernel VMA had other bounds than the model's");
                }
            }
            None if ev.found != 1 => {
                // bpf_find_vma failed (mmap_lock contended) on a VMA the model never saw.
                self.coverage.faults_not_placed += 1;
                self.coverage.find_vma_errors.push(ev.found >> 8);
                self.inexact(proc, at, "a prepare not placed on a VMA (bpf_find_vma failed)");
                return;
            }
            None => {
                if vmas.iter().any(|v| v.start < ev.end && ev.start < v.end) {
                    self.coverage.layout_mismatches += 1;
                    self.coverage.faults_not_placed += 1;
                    self.inexact(proc, at, "a prepare not placed: its kernel VMA overlaps the model's VMAs");
                    return;
                }
                let (flags, tag) = self.vm_flags(ev.flags, ev.file != 0);
                let pgoff = ev.pgoff | tag;
                if tag & !PGOFF_ARCH == 0 {
                    if let Some(p) = self.procs.get_mut(&proc) {
                        p.image_anon.push((ev.end, tag));
                    }
                }
                self.apply(Event::MapPgoff { pid, start: ev.start, pages: (ev.end - ev.start) / PAGE_SIZE, flags, pgoff }, at);
            }
        }
        self.apply(Event::Fault { pid, addr: ev.addr & !(PAGE_SIZE - 1), kind: FaultKind::Write }, at);
    }

    /// The model's flags and the pgoff tag for a kernel VMA's vm_flags.
    fn vm_flags(&self, f: u64, file: bool) -> (u16, u64) {
        // The model's bits (madvise's and mlock's too) are the seed's, read from the same vm_flags.
        let flags = lazyvma_model::seed::model_flags(f);
        let mut tag = if file || f & VM_SHARED != 0 { PGOFF_FILE } else { 0 };
        if f & VM_NORESERVE != 0 {
            tag |= PGOFF_NORESERVE;
        }
        if f & VM_GROWSDOWN != 0 {
            tag |= PGOFF_GROWSDOWN;
        }
        if f & VM_HIGH_ARCH != 0 {
            tag |= PGOFF_ARCH;
        }
        (flags, tag)
    }

    /// A VMA syscall returned in a traced thread.
    pub fn syscall(&mut self, tree: &Tree, ev: &SyscallEvent) {
        let name = SYSCALL_NAMES.get((ev.slot & !SYS_ENTER) as usize).copied().unwrap_or("a VMA syscall");
        self.touched(ev.tgid, name);
        if ev.slot & SYS_ENTER != 0 {
            // execve began: any process of the tree, modelled or about to be.
            if let Some(p) = tree.procs.iter().rposition(|p| p.tgid == ev.tgid && !p.exited) {
                self.in_exec.insert(p, Vec::new());
                if self.seed.as_ref().is_none_or(|s| s.followed) {
                    self.whole_exec.insert(p);
                } else {
                    self.whole_exec.remove(&p);
                }
            }
            return;
        }
        let slot = ev.slot as usize;
        if (slot == SYS_EXECVE || slot == SYS_EXECVEAT) && is_err(ev.ret) {
            // A failed exec: what it prepared went with its unused mm.
            if let Some(p) = tree.procs.iter().rposition(|p| p.tgid == ev.tgid && !p.exited) {
                self.whole_exec.remove(&p);
                let n = self.in_exec.remove(&p).map_or(0, |v| v.len());
                self.coverage.faults_not_placed += n as u64;
                if n > 0 && self.mm_of(p).is_some() {
                    self.inexact(p, Self::at(tree, p), &format!("{n} prepares of a failed exec not placed"));
                }
            }
            return;
        }
        let Some((proc, mm)) = self.modelled(tree, ev.tgid) else { return };
        // A successful exec's exit comes after `sched_process_exec` did all of its work.
        if slot >= SYS_COUNT || is_err(ev.ret) || slot == SYS_EXECVE || slot == SYS_EXECVEAT {
            return;
        }
        self.queue(mm, ev.key, Queued::Syscall(*ev, Self::at(tree, proc)));
    }

    /// A VMA syscall's effect on mm `mm`, in its turn.
    fn apply_syscall(&mut self, mm: usize, ev: &SyscallEvent, at: At) {
        let slot = ev.slot as usize;
        let pid = Self::pid(mm);
        let a = ev.args;
        let name = SYSCALL_NAMES[slot];
        match slot {
            SYS_MMAP => {
                let (start, len, prot, flags, off) = (ev.ret as u64, a[1], a[2], a[3], a[5]);
                if flags & MAP_HUGETLB != 0 {
                    return self.unmodelled_at(mm, at, "mmap MAP_HUGETLB");
                }
                let shared = matches!(flags & MAP_SHARED_VALIDATE, MAP_SHARED | MAP_SHARED_VALIDATE);
                let anon = flags & MAP_ANONYMOUS != 0;
                let mut vmf = prot & 7;
                if shared {
                    vmf |= VM_SHARED;
                }
                if flags & MAP_NORESERVE != 0 {
                    vmf |= VM_NORESERVE;
                }
                if flags & MAP_GROWSDOWN != 0 {
                    vmf |= VM_GROWSDOWN;
                }
                if flags & MAP_STACK != 0 && self.stack_nohuge {
                    vmf |= VM_NOHUGEPAGE;
                }
                let (mut mflags, tag) = self.vm_flags(vmf, !anon);
                mflags |= self.procs.get(&mm).map_or(0, |p| p.locked);
                let pgoff = if anon && !shared { start / PAGE_SIZE } else { off / PAGE_SIZE };
                self.apply(Event::MapPgoff { pid, start, pages: pages(len), flags: mflags, pgoff: pgoff | tag }, at);
            }
            SYS_MUNMAP => self.apply(Event::Munmap { pid, start: a[0], pages: pages(a[1]) }, at),
            SYS_MPROTECT | SYS_PKEY_MPROTECT => self.apply(Event::Mprotect { pid, start: a[0], pages: pages(a[1]), prot: prot_bits(a[2]) }, at),
            SYS_MREMAP => {
                let (old, old_len, new_len, flags, new) = (a[0], pages(a[1]), pages(a[2]), a[3], ev.ret as u64);
                match (new == old, new_len.cmp(&old_len)) {
                    (false, Ordering::Equal) => {
                        let dontunmap = flags & MREMAP_DONTUNMAP != 0;
                        match self.multi_vma_move(pid, old, old_len, new) {
                            Some(moves) if !dontunmap => {
                                for ev in moves {
                                    self.apply(ev, at);
                                }
                            }
                            _ => self.apply(Event::Mremap { pid, old, pages: old_len, new, dontunmap }, at),
                        }
                    }
                    (true, Ordering::Less) => self.apply(Event::Munmap { pid, start: old + new_len * PAGE_SIZE, pages: old_len - new_len }, at),
                    (true, Ordering::Equal) => {}
                    (_, Ordering::Less | Ordering::Greater) => self.apply(Event::MremapResize { pid, old, pages: old_len, new, new_pages: new_len }, at),
                }
            }
            SYS_MADVISE => {
                let advice = match a[2] {
                    12 => Advice::Mergeable,
                    13 => Advice::Unmergeable,
                    10 => Advice::DontFork,
                    11 => Advice::DoFork,
                    18 => Advice::WipeOnFork,
                    19 => Advice::KeepOnFork,
                    102 => Advice::GuardInstall,
                    14 => Advice::Hugepage,
                    15 => Advice::NoHugepage,
                    0 => Advice::Normal,
                    1 => Advice::Random,
                    2 => Advice::Sequential,
                    16 => Advice::DontDump,
                    17 => Advice::DoDump,
                    _ => return,
                };
                if a[1] > 0 {
                    self.apply(Event::Madvise { pid, start: a[0], pages: pages(a[1]), advice }, at);
                }
            }
            SYS_BRK => self.brk(mm, ev.ret as u64, at),
            // mlock_fixup's flags; the pages it populates are prepares placed where they land.
            SYS_MLOCK | SYS_MLOCK2 | SYS_MUNLOCK if a[1] > 0 => {
                let flags = match slot {
                    SYS_MUNLOCK => 0,
                    SYS_MLOCK2 if a[2] & MLOCK_ONFAULT != 0 => vm::LOCKED | vm::LOCKONFAULT,
                    _ => vm::LOCKED,
                };
                let start = a[0] & !(PAGE_SIZE - 1);
                self.apply(Event::Mlock { pid, start, pages: pages(a[1] + (a[0] - start)), flags }, at)
            }
            SYS_MLOCK | SYS_MLOCK2 | SYS_MUNLOCK => {}
            // apply_mlockall_flags: the future mappings' lock bits, then (unless only
            // MCL_FUTURE) every VMA's; munlockall is mlockall(0).
            SYS_MLOCKALL | SYS_MUNLOCKALL => {
                let f = if slot == SYS_MLOCKALL { a[0] } else { 0 };
                let onfault = if f & MCL_ONFAULT != 0 { vm::LOCKONFAULT } else { 0 };
                if let Some(p) = self.procs.get_mut(&mm) {
                    p.locked = if f & MCL_FUTURE != 0 { vm::LOCKED | onfault } else { 0 };
                }
                if f & (MCL_FUTURE | MCL_CURRENT) == MCL_FUTURE {
                    return;
                }
                let flags = if f & MCL_CURRENT != 0 { vm::LOCKED | onfault } else { 0 };
                self.apply(Event::Mlock { pid, start: 0, pages: USER_TOP / PAGE_SIZE, flags }, at)
            }
            SYS_EXECVE | SYS_EXECVEAT => {}
            SYS_PRCTL if a[0] != PR_SET_VMA => {}
            // VM_LOCKED, VM_SEALED, a VMA mempolicy, an anon name: vm state the model has no
            // field for, which splits VMAs and blocks merges.
            SYS_PRCTL => self.unmodelled_at(mm, at, "prctl PR_SET_VMA"),
            _ => self.unmodelled_at(mm, at, name),
        }
    }

    /// 6.17+ moves a range spanning several VMAs (and gaps) one VMA at a time, in address
    /// order, each to the same offset from `new` (mm/mremap.c `remap_move`): one `Mremap`
    /// each. None when the range is inside one VMA of the model, or the kernel is older.
    fn multi_vma_move(&self, pid: Pid, old: u64, pages: u64, new: u64) -> Option<Vec<Event>> {
        if !self.multi_vma_mremap {
            return None;
        }
        let end = old + pages * PAGE_SIZE;
        let vmas = self.pair.eager().vmas(pid)?;
        let inside: Vec<_> = vmas.iter().filter(|v| v.start < end && old < v.end).collect();
        if inside.len() < 2 && inside.first().is_none_or(|v| v.start <= old && end <= v.end) {
            return None;
        }
        let moves = inside.iter().map(|v| {
            let (s, e) = (v.start.max(old), v.end.min(end));
            Event::Mremap { pid, old: s, pages: (e - s) / PAGE_SIZE, new: new + (s - old), dontunmap: false }
        });
        Some(moves.collect())
    }

    /// brk: the heap VMA grows (a merge into the previous heap) or shrinks (munmap).
    fn brk(&mut self, proc: usize, ret: u64, at: At) {
        let pid = Self::pid(proc);
        let new = ret.next_multiple_of(PAGE_SIZE);
        let Some(p) = self.procs.get_mut(&proc) else { return };
        let Some(old) = p.brk.replace(new) else { return };
        let flags = vm::READ | vm::WRITE | p.locked;
        if new > old {
            if let Some(&(_, tag)) = p.image_anon.iter().find(|(end, _)| *end == old).filter(|_| self.brk_merges_below) {
                p.brk_tag = tag;
            }
            let (pages, tag) = ((new - old) / PAGE_SIZE, p.brk_tag);
            if tag == 0 {
                self.apply(Event::Map { pid, start: old, pages, flags }, at);
            } else {
                self.apply(Event::MapPgoff { pid, start: old, pages, flags, pgoff: (old / PAGE_SIZE) | tag }, at);
            }
        } else if new < old {
            self.apply(Event::Munmap { pid, start: new, pages: (old - new) / PAGE_SIZE }, at);
        }
    }

    /// `complete` means exact by construction: whatever the model took but could not
    /// apply, or did not take, is a reason it is not (each listed).
    fn inexact_reasons(&mut self) {
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

    /// Processes of the tree never modelled (running before the trace, or vfork children
    /// that did not exec).
    pub fn finish(&mut self, tree: &Tree, lost: u64, missing: &[(String, String)]) {
        for (_, (ev, at)) in std::mem::take(&mut self.awaiting_hook) {
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

// Seeding from a snapshot at the start (`trace/seed.rs`).
impl Feed {
    /// The trace seeds (or seeded) running processes from a snapshot.
    fn seeding(&self) -> bool {
        self.seed.is_some() || self.seed_done
    }

    /// Why `proc`, never modelled, is not.
    fn why_not(&self, tree: &Tree, proc: usize) -> String {
        let p = tree.get(proc);
        if let Some(why) = self.coverage.not_seeded.get(&p.tgid) {
            return format!("running before the trace and not seeded: {why}");
        }
        if self.unfollowed.contains(&proc) {
            return match p.execs {
                0 => "forked while the trace's programs were attaching (before the seed's TRACED marker), never exec'd after: what it did then was not all recorded".into(),
                _ => "forked while the trace's programs were attaching (before the seed's TRACED marker); its exec too began before them".into(),
            };
        }
        match p.parent {
            Some(parent) if !self.ever.contains(&parent) => {
                format!("forked by tgid {}, itself not modelled, and never exec'd", tree.get(parent).tgid)
            }
            // A vfork child of a modelled parent is modelled (`borrowed`).
            _ => "neither forked by a modelled process nor exec'd since the trace began".into(),
        }
    }

    fn touched(&mut self, tgid: u32, what: &str) {
        if let Some(p) = self.seed.as_mut() {
            p.touched(tgid, what);
        }
    }

    /// A phase marker from `tgid`: lazyvma's own bracket the snapshot pass. `observed`: the
    /// slab tally's rows so far (what a seeded process did before its seed).
    pub fn seed_marker(&mut self, tree: &Tree, observed: &[super::slab::PhaseRow], tgid: u32, id: u32) {
        let Some(p) = self.seed.as_mut().filter(|p| p.tgid == tgid) else { return };
        if id == super::seed::TRACED || id == super::seed::START {
            p.followed = true;
            p.inside |= id == super::seed::START;
            return;
        }
        if id != super::seed::END {
            return;
        }
        for (mm, item) in self.order.drain() {
            self.run(mm, item);
        }
        let p = self.seed.take().expect("pending");
        self.seed_done = true;
        self.coverage.seed_pass_us = p.pass_us;
        let ever = std::mem::take(&mut self.ever);
        let out = p.end(tree, self.kernel, &mut self.pair, |proc| ever.contains(&proc));
        self.ever = ever;
        self.seeded_live = out.live;
        self.partial.extend(out.partial);
        self.seed_start = out.start;
        for (proc, tgid) in out.seeded {
            self.procs.insert(proc, Proc::default());
            // An exec before the pass started no model (`exec`): the snapshot holds its image.
            self.unfollowed.remove(&proc);
            self.ever.insert(proc);
            self.coverage.modelled += 1;
            self.coverage.seeded.push(tgid);
            for r in observed.iter().filter(|r| r.proc == proc) {
                let i = self.row(At { proc, tgid, phase: r.phase });
                self.rows[i].before_seed = r.counts;
            }
        }
        self.coverage.not_seeded = out.reasons;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spec §4.3's x86_64 sizes: object_size 96/64, slab_size 104/64.
    fn s() -> Sizes {
        Sizes::spec_x86_64()
    }
    const MAP_PRIVATE_ANON: u64 = 0x22;

    fn sys(tgid: u32, slot: usize, args: [u64; 6], ret: i64) -> SyscallEvent {
        SyscallEvent { kind: EV_SYSCALL, pid: tgid, tgid, slot: slot as u32, args, ret, key: 0 }
    }

    fn prep(tgid: u32, addr: u64, vma: Option<(u64, u64, u64)>) -> PrepareVma {
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
    fn execed() -> (Tree, Feed) {
        let mut tree = Tree::command(100);
        let mut f = Feed::new("6.18.44", Knobs::default());
        tree.exec(100);
        f.exec(&tree, 100, 0);
        (tree, f)
    }

    /// The model's events by kind (`MapPgoff`, `Fault`...).
    fn kinds(f: &Feed) -> Vec<String> {
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
        let four = |c: &Counts| [c.anon_vma.alloc, c.anon_vma.free, c.anon_vma_chain.alloc, c.anon_vma_chain.free];
        assert_eq!(four(&f.eager), [6, 6, 9, 9]);
        let c = &f.coverage;
        assert_eq!((c.modelled, c.faults_not_placed, c.layout_mismatches, c.model_errors), (2, 0, 0, 0));
    }

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

    /// Another thread's phase marker between the slab count and the VMA record of one
    /// prepare: the model counts the prepare where the slab did.
    #[test]
    fn a_prepare_counts_in_the_phase_its_slab_record_did() {
        let (mut tree, mut f) = execed();
        f.syscall(&tree, &sys(100, SYS_MMAP, [0, 4 * PAGE_SIZE, 3, MAP_PRIVATE_ANON, u64::MAX, 0], 0x1_0000_0000));
        tree.marker(100, 2);
        f.prepare_counted(&tree, 101, Feed::at(&tree, 0));
        tree.marker(100, 3);
        f.prepare(&tree, &s(), &PrepareVma { pid: 101, ..prep(100, 0x1_0000_0000, Some((0x1_0000_0000, 0x1_0000_4000, 3))) });
        let rows: Vec<_> = f.rows.iter().map(|r| (r.phase, r.eager.anon_vma.alloc)).collect();
        assert_eq!(rows, [(Some(2), 1)]);
    }

    /// MADV_POPULATE_WRITE over two fresh VMAs: both prepares are counted by the slab
    /// tally before the syscall's exit sends their VMAs (`place.rs`); each is placed.
    #[test]
    fn prepares_placed_at_their_syscalls_exit_pair_in_order() {
        let (tree, mut f) = execed();
        let (a, b) = (0x1_0000_0000, 0x2_0000_0000);
        for v in [a, b] {
            f.syscall(&tree, &sys(100, SYS_MMAP, [v, PAGE_SIZE, 3, MAP_PRIVATE_ANON | 0x10, u64::MAX, 0], v as i64));
        }
        f.prepare_counted(&tree, 100, Feed::at(&tree, 0));
        f.prepare_counted(&tree, 100, Feed::at(&tree, 0));
        for v in [a, b] {
            f.prepare(&tree, &s(), &prep(100, v, Some((v, v + PAGE_SIZE, VM_READ | VM_WRITE))));
        }
        f.finish(&tree, 0, &[]);
        assert_eq!((f.eager.anon_vma.alloc, f.eager.anon_vma_chain.alloc, f.coverage.faults_not_placed), (2, 2, 0));
        assert!(f.coverage.incomplete.is_empty(), "{:?}", f.coverage.incomplete);
        assert!(f.pairing.is_empty());
    }

    /// What cow, mremap_test and mlock2-tests do: MADV_HUGEPAGE on part of a faulted VMA,
    /// mremap growing it in place and moving it with a new size, mlock2(MLOCK_ONFAULT) and
    /// munlock: all modelled (splits, merges, the copies' AVCs), nothing left unmodelled.
    #[test]
    fn huge_advice_mremap_resizes_and_mlock_are_modelled() {
        let (tree, mut f) = execed();
        let a = 0x1_0000_0000u64;
        f.syscall(&tree, &sys(100, SYS_MMAP, [a, 4 * PAGE_SIZE, 3, MAP_PRIVATE_ANON | 0x10, u64::MAX, 0], a as i64));
        f.prepare_counted(&tree, 100, Feed::at(&tree, 0));
        f.prepare(&tree, &s(), &prep(100, a, Some((a, a + 4 * PAGE_SIZE, VM_READ | VM_WRITE))));
        let call = |f: &mut Feed, slot, args: [u64; 6], ret: u64| f.syscall(&tree, &sys(100, slot, args, ret as i64));
        call(&mut f, SYS_MADVISE, [a + PAGE_SIZE, PAGE_SIZE, 14, 0, 0, 0], 0);
        call(&mut f, SYS_MADVISE, [a, 4 * PAGE_SIZE, 15, 0, 0, 0], 0);
        call(&mut f, SYS_MREMAP, [a, 4 * PAGE_SIZE, 6 * PAGE_SIZE, 0, 0, 0], a);
        call(&mut f, SYS_MREMAP, [a, 6 * PAGE_SIZE, 8 * PAGE_SIZE, 1, 0, 0], 2 * a);
        call(&mut f, SYS_MLOCK2, [2 * a, PAGE_SIZE, 1, 0, 0, 0], 0);
        call(&mut f, SYS_MUNLOCK, [2 * a, PAGE_SIZE, 0, 0, 0, 0], 0);
        // mlockall(MCL_CURRENT | MCL_FUTURE): the VMA and a later mmap are locked (the moved
        // VMA keeps its old pgoff, so they stay apart); munlockall unlocks both.
        call(&mut f, SYS_MLOCKALL, [3, 0, 0, 0, 0, 0], 0);
        let b = 2 * a + 8 * PAGE_SIZE;
        call(&mut f, SYS_MMAP, [b, PAGE_SIZE, 3, MAP_PRIVATE_ANON | 0x10, u64::MAX, 0], b);
        call(&mut f, SYS_MUNLOCKALL, [0; 6], 0);
        f.finish(&tree, 0, &[]);
        assert!(f.coverage.incomplete.is_empty(), "{:?}", f.coverage.incomplete);
        let vmas = f.pair.eager().vmas(1).unwrap();
        assert_eq!(vmas.iter().map(|v| (v.start, v.end)).collect::<Vec<_>>(), [(2 * a, b), (b, b + PAGE_SIZE)]);
        let kinds = kinds(&f);
        assert_eq!(
            kinds,
            ["Spawn", "Exec", "MapPgoff", "Fault", "Madvise", "Madvise", "MremapResize", "MremapResize", "Mlock", "Mlock", "Mlock", "MapPgoff", "Mlock"]
        );
        // Prepare 1/1; HUGEPAGE's two splits +2 AVC; NOHUGEPAGE merges them (-2); the move's
        // copy +1 and unmap -1; mlock2's split +1 and munlock's merge -1.
        let c = f.pair.eager().counts();
        assert_eq!((c.anon_vma.alloc, c.anon_vma_chain.alloc, c.anon_vma_chain.free), (1, 5, 4));
        assert_eq!(f.events[8], Event::Mlock { pid: 1, start: 2 * a, pages: 1, flags: vm::LOCKED | vm::LOCKONFAULT });
    }

    /// mremap_test's multi-VMA move (6.17+): two faulted VMAs with a gap, moved at once,
    /// each cloned to its new place and unlinked from the old (+1/−1 AVC each).
    #[test]
    fn a_move_of_several_vmas_moves_each() {
        let (tree, mut f) = execed();
        let (a, b) = (0x1_0000_0000u64, 0x1_0000_2000u64);
        for (v, prot) in [(a, 3), (b, 7)] {
            f.syscall(&tree, &sys(100, SYS_MMAP, [v, PAGE_SIZE, prot, MAP_PRIVATE_ANON | 0x10, u64::MAX, 0], v as i64));
            prepare(&mut f, &tree, &prep(100, v, Some((v, v + PAGE_SIZE, prot))));
        }
        let new = 0x2_0000_0000u64;
        f.syscall(&tree, &sys(100, SYS_MREMAP, [a, 3 * PAGE_SIZE, 3 * PAGE_SIZE, 3, new, 0], new as i64));
        f.finish(&tree, 0, &[]);
        assert_eq!(f.coverage.model_errors, 0, "{:?}", f.coverage.first_error);
        let c = &f.eager.anon_vma_chain;
        assert_eq!((c.alloc, c.free), (4, 2));
        let starts: Vec<u64> = f.pair.eager().vmas(1).unwrap().iter().map(|v| v.start).filter(|s| *s >= new && *s < new + 0x10000).collect();
        assert_eq!(starts, [new, new + 0x2000]);
        // Before 6.17 the kernel refuses it; a model that saw it succeed says so.
        let mut f = Feed::new("6.12.0", Knobs::default());
        f.exec(&tree, 100, 0);
        f.syscall(&tree, &sys(100, SYS_MMAP, [a, PAGE_SIZE, 3, MAP_PRIVATE_ANON | 0x10, u64::MAX, 0], a as i64));
        f.syscall(&tree, &sys(100, SYS_MMAP, [b, PAGE_SIZE, 7, MAP_PRIVATE_ANON | 0x10, u64::MAX, 0], b as i64));
        f.syscall(&tree, &sys(100, SYS_MREMAP, [a, 3 * PAGE_SIZE, 3 * PAGE_SIZE, 3, new, 0], new as i64));
        assert_eq!(f.coverage.model_errors, 1);
    }

    /// Thread 101's munmap took mmap_lock before thread 102's fault but reached the ring
    /// buffer after it: the model applies them by key, and a record keyed before one
    /// already applied is counted, never placed by guess.
    #[test]
    fn syscalls_and_prepares_are_applied_in_lock_order() {
        let (tree, mut f) = execed();
        const MS: u64 = 1_000_000;
        let map = |a: u64, key| SyscallEvent { key, ..sys(100, SYS_MMAP, [a, 4 * PAGE_SIZE, 3, MAP_PRIVATE_ANON | 0x10, u64::MAX, 0], a as i64) };
        f.syscall(&tree, &map(0x1_0000_0000, MS));
        f.syscall(&tree, &map(0x1_0000_4000, 2 * MS));
        // The fault on the second VMA (key 4 ms) arrives before the munmap of the first (3 ms).
        let fault = PrepareVma { pid: 102, key: 4 * MS, ..prep(100, 0x1_0000_4000, Some((0x1_0000_4000, 0x1_0000_8000, 3))) };
        prepare(&mut f, &tree, &fault);
        f.syscall(&tree, &SyscallEvent { pid: 101, key: 3 * MS, ..sys(100, SYS_MUNMAP, [0x1_0000_0000, 4 * PAGE_SIZE, 0, 0, 0, 0], 0) });
        assert_eq!(f.events.len(), 2, "held back until the window passed");
        // A record far later lets them go; one keyed before an applied one is not placed.
        f.syscall(&tree, &SyscallEvent { key: 10 * MS + super::super::order::WINDOW_NS, ..sys(100, SYS_MPROTECT, [0x1_0000_4000, PAGE_SIZE, 1, 0, 0, 0], 0) });
        f.syscall(&tree, &SyscallEvent { key: 3 * MS + 1, ..sys(100, SYS_MADVISE, [0x1_0000_4000, PAGE_SIZE, 12, 0, 0, 0], 0) });
        f.finish(&tree, 0, &[]);
        let kinds = kinds(&f);
        assert_eq!(kinds, ["Spawn", "Exec", "MapPgoff", "MapPgoff", "Munmap", "Fault", "Madvise", "Mprotect"]);
        assert_eq!((f.coverage.out_of_order, f.reordered()), (1, 1));
        assert_eq!(f.coverage.incomplete, ["1 syscalls or prepares arrived after a later one of their mm was applied (out of order)"]);
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
        let four = |c: &Counts| [c.anon_vma.alloc, c.anon_vma.free, c.anon_vma_chain.alloc, c.anon_vma_chain.free];
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

    /// With the prepare hook attached, a prepare with no fault address waits for the hook's
    /// exit: placed on its VMA in the task's own mm, never on another mm's (a write to
    /// /proc/PID/mem of another process) or by a record held to a syscall's exit.
    #[test]
    fn a_prepare_outside_a_fault_takes_its_hooks_vma() {
        let (tree, mut f) = execed();
        f.prepare_hooked = true;
        use crate::trace::ops::{KernelOp, Op};
        let exit = |vma, task_mm, ktime| Op { tgid: 100, pid: 100, ktime, backend: 0, op: KernelOp::Prepare { vma, ret: 0, reused_neighbour: false, task_mm } };
        let snap = |mm: u64| lazyvma_model::hook_abi::VmaSnap {
            vma: 0xffff_8880_0000_1000,
            mm,
            start: 0x1_0000_0000,
            end: 0x1_0000_4000,
            pgoff: 0x1_0000_0000 / PAGE_SIZE,
            flags: 0x73,
            anon_vma: 0xffff_8880_0000_2000,
            chain_len: 1,
        };
        // Own mm: the model maps the kernel's VMA and faults it.
        prepare(&mut f, &tree, &PrepareVma { found: FOUND_NOT_IN_FAULT, ..prep(100, 0, None) });
        assert!(f.events.iter().all(|e| !matches!(e, Event::Fault { .. })), "no fault before the hook: {:?}", f.events);
        f.prepare_hook(&tree, &exit(snap(0xaa), 0xaa, 5));
        assert!(matches!(f.events.last(), Some(Event::Fault { addr: 0x1_0000_0000, .. })), "{:?}", f.events);
        // Another mm's VMA: not placed.
        prepare(&mut f, &tree, &PrepareVma { found: FOUND_NOT_IN_FAULT, ..prep(100, 0, None) });
        f.prepare_hook(&tree, &exit(snap(0xbb), 0xaa, 6));
        // Held to a syscall's exit (its hook came before): never waits for the next hook.
        prepare(&mut f, &tree, &PrepareVma { found: FOUND_HELD, ..prep(100, 0, None) });
        // Its hook lost: unplaced at the end.
        prepare(&mut f, &tree, &PrepareVma { found: FOUND_NOT_IN_FAULT, ..prep(100, 0, None) });
        f.finish(&tree, 0, &[]);
        let c = &f.coverage;
        assert_eq!((c.prepares_placed_by_hook, c.faults_not_placed, c.prepares_outside_fault), (1, 3, 3));
        assert_eq!(f.eager.anon_vma.alloc, 1);
    }

    /// musl's first malloc on arm64 (VM_MTE_ALLOWED on every brk VMA): brk grows the heap
    /// by 2 pages past the exec's .bss tail, then maps a PROT_NONE page at the old brk.
    /// Before 6.1 the extension merged into the tail, whose anon_vma both splits clone
    /// (+2 AVCs, the guard's −1); since 6.1 it is a VMA of its own and the splits are free.
    #[test]
    fn an_arm64_brk_extension_merges_into_the_bss_tail_before_6_1() {
        const VM_ACCOUNT: u64 = 0x100000;
        const VM_MTE_ALLOWED: u64 = 1 << 33;
        let (bss, brk) = (0x30d000, 0x30e000);
        for (release, avc) in [("5.10.0-32-cloud-arm64", [3, 1]), ("6.12.118", [1, 0])] {
            let mut tree = Tree::command(100);
            let mut f = Feed::new(release, Knobs::default());
            tree.exec(100);
            f.exec(&tree, 100, 0);
            prepare(&mut f, &tree, &prep(100, bss, Some((bss, brk, VM_READ | VM_WRITE | VM_ACCOUNT | VM_MTE_ALLOWED))));
            f.syscall(&tree, &sys(100, SYS_BRK, [0; 6], brk as i64));
            f.syscall(&tree, &sys(100, SYS_BRK, [brk + 2 * PAGE_SIZE, 0, 0, 0, 0, 0], (brk + 2 * PAGE_SIZE) as i64));
            f.syscall(&tree, &sys(100, SYS_MMAP, [brk, PAGE_SIZE, 0, MAP_PRIVATE_ANON | 0x10, u64::MAX, 0], brk as i64));
            f.finish(&tree, 0, &[]);
            let e = &f.eager;
            assert_eq!([e.anon_vma_chain.alloc, e.anon_vma_chain.free], avc, "{release}: {:?}", f.events);
            assert!(f.coverage.incomplete.is_empty(), "{release}: {:?}", f.coverage.incomplete);
        }
    }

    /// Both records of one prepare: the VMA, then the slab tally's count (AVC only).
    fn prepare(f: &mut Feed, tree: &Tree, ev: &PrepareVma) {
        f.prepare(tree, &s(), ev);
        if ev.bytes_req == s().anon_vma_chain.object_size {
            let proc = tree.procs.iter().rposition(|p| p.tgid == ev.tgid).unwrap();
            f.prepare_counted(tree, ev.pid, Feed::at(tree, proc));
        }
    }

    fn with_enter(mut e: SyscallEvent) -> SyscallEvent {
        e.slot |= SYS_ENTER;
        e
    }
}
