//! Records of `lazyvma trace`'s always-on programs (slab, sched, phase markers) and the
//! globals userspace injects before load. Shared with `observer-ebpf`: `#[repr(C)]`, plain
//! integers, a multiple of 8 bytes.

/// The rmap.c functions whose `kmem_cache_alloc/free` call sites identify anon_vma and
/// anon_vma_chain objects (spec §4.1). Index = [`TraceEvent::func`] and the slot in the
/// `TRACE_FN_START` / `TRACE_FN_END` globals.
pub const FUNCTIONS: [&str; FN_COUNT] = ["__anon_vma_prepare", "anon_vma_clone", "anon_vma_fork", "unlink_anon_vmas", "__put_anon_vma"];
pub const FN_COUNT: usize = 5;
pub const FN_PREPARE: u32 = 0;
pub const FN_CLONE: u32 = 1;
pub const FN_FORK: u32 = 2;
pub const FN_UNLINK: u32 = 3;
pub const FN_PUT: u32 = 4;

/// A slab record's function ([`TraceEvent::arg`], [`SlabEvent::func`]) decoded, named after
/// the kernel function. Decoded once, by `decode_any`; an index out of [`FUNCTIONS`] makes
/// the record malformed there, so nothing past the decoder compares `FN_*` numbers (the BPF
/// programs keep them).
#[cfg(feature = "std")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SlabFn {
    /// `__anon_vma_prepare` ([`FN_PREPARE`]): a first fault's anon_vma and chain.
    AnonVmaPrepare = FN_PREPARE as isize,
    /// `anon_vma_clone` ([`FN_CLONE`]): a split, merge, mremap or fork copies a chain.
    AnonVmaClone = FN_CLONE as isize,
    /// `anon_vma_fork` ([`FN_FORK`]): a fork's new anon_vma and its chain.
    AnonVmaFork = FN_FORK as isize,
    /// `unlink_anon_vmas` ([`FN_UNLINK`]): a VMA's chain freed.
    UnlinkAnonVmas = FN_UNLINK as isize,
    /// `__put_anon_vma` ([`FN_PUT`]): an anon_vma's last reference dropped.
    PutAnonVma = FN_PUT as isize,
}

#[cfg(feature = "std")]
impl SlabFn {
    /// In index order: `ALL[i]` is [`FUNCTIONS`]`[i]`.
    pub const ALL: [SlabFn; FN_COUNT] = [SlabFn::AnonVmaPrepare, SlabFn::AnonVmaClone, SlabFn::AnonVmaFork, SlabFn::UnlinkAnonVmas, SlabFn::PutAnonVma];

    /// `None` for an index this build does not know.
    pub fn of(func: u32) -> Option<SlabFn> {
        usize::try_from(func).ok().and_then(|i| SlabFn::ALL.get(i)).copied()
    }

    /// Its index in [`FUNCTIONS`] (and in per-function tables).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The kernel function's name ([`FUNCTIONS`]).
    pub fn name(self) -> &'static str {
        FUNCTIONS[self.index()]
    }
}

#[cfg(feature = "std")]
const _: () = {
    let mut i = 0;
    while i < FN_COUNT {
        assert!(SlabFn::ALL[i] as usize == i, "SlabFn::ALL out of index order");
        i += 1;
    }
};

/// Kernel return addresses kept per event whose function is in `TRACE_STACK_FNS`.
pub const STACK_DEPTH: usize = 16;

/// [`TraceEvent::kind`].
pub const EV_ALLOC: u32 = 1;
pub const EV_FREE: u32 = 2;
/// `sched:sched_process_fork`, in the parent: `arg` = child pid.
pub const EV_FORK: u32 = 3;
/// `task:task_newtask`, in the parent: `arg` = new task's pid, `ptr` = clone_flags.
pub const EV_NEWTASK: u32 = 4;
/// `sched:sched_process_exec`: `arg` = old pid.
pub const EV_EXEC: u32 = 5;
/// `sched:sched_process_exit`: `arg` = group_dead (0/1), 2 when the kernel has no such field.
pub const EV_EXIT: u32 = 6;
/// `syscalls:sys_enter_madvise` with behavior >= [`MARKER_BASE`]: `ptr` = behavior.
pub const EV_MARKER: u32 = 7;

/// `lock:contention_begin` on `&anon_vma->rwsem` of an anon_vma the BPF set knows (only a
/// root's rwsem is ever taken): `ptr` = the anon_vma, `arg` = the `LCB_F_*` flags,
/// `bytes_req` = the tgid that allocated (or was first seen holding) it, 0 if unknown.
pub const EV_LOCK_BEGIN: u32 = 10;
/// `lock:contention_end` on such a rwsem: `ptr`, `bytes_req` as [`EV_LOCK_BEGIN`], `arg` =
/// `ret` (0 acquired, else a negative errno as u32).
pub const EV_LOCK_END: u32 = 11;
/// `lock:contention_begin` flags (include/trace/events/lock.h).
pub const LCB_F_READ: u32 = 1 << 1;
pub const LCB_F_WRITE: u32 = 1 << 2;

/// Slots of the per-CPU `LOCK_COUNTERS` array.
/// An anon_vma that could not enter the set (map full): its contentions are not seen.
pub const LOCK_CTR_SET_FULL: u32 = 0;
/// anon_vmas put in the set by the start-up iter/task_vma pass.
pub const LOCK_CTR_SEEDED: u32 = 1;
/// Lock records the full ring buffer refused (also in `CTR_LOST`): each loses one wait.
pub const LOCK_CTR_LOST: u32 = 2;
pub const LOCK_CTR_COUNT: u32 = 3;

/// What the lock programs read, injected as the `LOCK_OFFSETS` global: the lock tracepoints'
/// field offsets (tracefs), `offsetof(struct anon_vma, rwsem)` (BTF) and anon_vma's
/// object_size (slab), which tells an anon_vma allocation from an anon_vma_chain one.
/// All [`NO_FIELD`] (the default): no anon_vma is remembered, so nothing is reported.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockOffsets {
    pub begin_lock: u64,
    pub begin_flags: u64,
    pub end_lock: u64,
    pub end_ret: u64,
    pub av_rwsem: u64,
    pub av_size: u64,
}

impl LockOffsets {
    pub const UNSET: LockOffsets =
        LockOffsets { begin_lock: NO_FIELD, begin_flags: NO_FIELD, end_lock: NO_FIELD, end_ret: NO_FIELD, av_rwsem: NO_FIELD, av_size: NO_FIELD };
}

/// `madvise(0, 0, MARKER_BASE + id)` marks phase `id` (lazyvma-workload's markers).
pub const MARKER_BASE: u64 = 1000;

/// Slots of the per-CPU `TRACE_COUNTERS` array.
pub const CTR_SENT: u32 = 0;
/// Ring buffer reserve failed: the event is lost, and counted here.
pub const CTR_LOST: u32 = 1;
/// A scoped trace's object set was full: that object's free is seen only if a traced
/// process frees it (not from ksmd or another process's mmput).
pub const CTR_OBJECTS_FULL: u32 = 2;
/// `TRACE_TALLY` was full: that event streamed instead (counted all the same).
pub const CTR_TALLY_FULL: u32 = 3;
pub const CTR_COUNT: u32 = 4;

/// `TRACE_SCOPE`: every process but lazyvma's own.
pub const SCOPE_SYSTEM: u32 = 0;
/// `TRACE_SCOPE`: only the processes in `FEED_TRACED` (and objects they allocated).
pub const SCOPE_TRACED: u32 = 1;
/// `TRACE_WAKE_SHIFT` left at this: the kernel's default wakeups (no batching).
pub const WAKE_SHIFT_NEVER: u32 = u32::MAX;

/// A global offset left at this value: the field is absent in this kernel's tracepoint format.
pub const NO_FIELD: u64 = u64::MAX;

/// One event. Unused fields are 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceEvent {
    pub kind: u32,
    /// The current task's pid (thread id).
    pub pid: u32,
    pub tgid: u32,
    /// Slab events: index in [`FUNCTIONS`]; others: see the `EV_*` constants.
    pub arg: u32,
    /// `bpf_ktime_get_ns`.
    pub ktime: u64,
    /// Slab events: the object; others: see the `EV_*` constants.
    pub ptr: u64,
    pub call_site: u64,
    /// `kmem_cache_alloc`'s `bytes_req` (the cache's object_size) and `bytes_alloc`.
    pub bytes_req: u64,
    pub bytes_alloc: u64,
    /// Bytes `bpf_get_stack` wrote into `frames` (0: no stack taken, negative: its error).
    pub stack_bytes: i64,
    pub frames: [u64; STACK_DEPTH],
}

pub const TRACE_EVENT_SIZE: usize = core::mem::size_of::<TraceEvent>();
const _: () = assert!(TRACE_EVENT_SIZE == 192);

/// Tracepoint field offsets, read from tracefs `format` files at start-up (6.1 and 6.18 lay
/// the kmem records out differently), injected as the `TRACE_TP_OFFSETS` global.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TpOffsets {
    pub alloc_call_site: u64,
    pub alloc_ptr: u64,
    pub alloc_bytes_req: u64,
    pub alloc_bytes_alloc: u64,
    pub free_call_site: u64,
    pub free_ptr: u64,
    pub fork_child_pid: u64,
    pub newtask_pid: u64,
    pub newtask_clone_flags: u64,
    pub exec_old_pid: u64,
    /// [`NO_FIELD`] before 6.x kernels that lack `group_dead`.
    pub exit_group_dead: u64,
    pub madvise_behavior: u64,
}

impl TpOffsets {
    pub const UNSET: TpOffsets = TpOffsets {
        alloc_call_site: NO_FIELD,
        alloc_ptr: NO_FIELD,
        alloc_bytes_req: NO_FIELD,
        alloc_bytes_alloc: NO_FIELD,
        free_call_site: NO_FIELD,
        free_ptr: NO_FIELD,
        fork_child_pid: NO_FIELD,
        newtask_pid: NO_FIELD,
        newtask_clone_flags: NO_FIELD,
        exec_old_pid: NO_FIELD,
        exit_group_dead: NO_FIELD,
        madvise_behavior: NO_FIELD,
    };
}

/// Decode one ring buffer record; `None` if it is not exactly one [`TraceEvent`].
#[cfg(feature = "std")]
pub fn decode(bytes: &[u8]) -> Option<TraceEvent> {
    // SAFETY: length checked; the record is plain integers, valid for any bit pattern.
    (bytes.len() == TRACE_EVENT_SIZE).then(|| unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<TraceEvent>()) })
}

pub use crate::hook_abi::*;

/// `raw_syscalls:sys_exit` of a syscall in `SYSCALL_IDS` whose enter was seen in the same
/// thread: the enter's arguments and the return value ([`SyscallEvent`]).
pub const EV_SYSCALL: u32 = 9;
/// A `kmem_cache_alloc` from `__anon_vma_prepare` and the VMA at the thread's last user
/// fault address, as `bpf_find_vma` saw it then ([`PrepareVma`]).
pub const EV_PREPARE_VMA: u32 = 12;
/// `ksm:ksm_merge_with_ksm_page` (ksmd, 6.4+): one `try_to_merge_with_ksm_page` ([`KsmEvent`]).
pub const EV_KSM_MERGE: u32 = 13;
/// `ksm:ksm_remove_rmap_item`: a stable node torn down drops one of its rmap_items (not the
/// last one: the kernel traces only those) and its anon_vma reference ([`KsmEvent`]).
pub const EV_KSM_REMOVE: u32 = 14;

/// A slab allocation / free with no kernel stack: [`SlabEvent`], a third of a
/// [`TraceEvent`]. Its reason, if the function does not name it, is [`SlabEvent::why`].
pub const EV_SLAB_ALLOC: u32 = 15;
pub const EV_SLAB_FREE: u32 = 16;

/// [`SlabEvent::why`]: the function names the reason (no context was needed or known).
pub const WHY_FUNCTION: u32 = 0;
/// anon_vma_clone inside a fork syscall (clone, clone3, fork, vfork): from anon_vma_fork;
/// a free there: a failed fork's teardown.
pub const WHY_FORK: u32 = 1;
/// unlink_anon_vmas / __put_anon_vma in a task that is exiting (PF_EXITING): exit_mmap.
pub const WHY_EXIT: u32 = 2;
/// A teardown inside execve/execveat: the old mm's exit_mmap.
pub const WHY_EXEC: u32 = 3;
/// A teardown inside munmap/brk.
pub const WHY_MUNMAP: u32 = 4;
/// A clone or teardown inside mremap (its splits and the old range's unmap included).
pub const WHY_MREMAP: u32 = 5;
/// unlink_anon_vmas inside a syscall that changes vm_flags or policy (mprotect, madvise,
/// mlock, mbind, prctl, mseal): only a merge removes a VMA there.
pub const WHY_MERGE: u32 = 6;
/// anon_vma_clone inside munmap/brk: only a split clones there.
pub const WHY_SPLIT: u32 = 7;
/// anon_vma_clone inside mmap or a vm_flags syscall: a split or a merge's dup_anon_vma,
/// which only the kernel stack (`--stacks`) tells apart.
pub const WHY_SPLIT_OR_MERGE: u32 = 8;
/// A teardown inside mmap: a MAP_FIXED unmap of what was there, or a merge.
pub const WHY_MUNMAP_OR_MERGE: u32 = 9;
pub const WHY_COUNT: u32 = 10;
/// [`SlabEvent::why`] (without [`WHY_FAILED_FORK`]) and a slot's reason decoded, named after
/// what the task was doing. Decoded once, by `decode_any` / [`AggSlot::of`]; a number no
/// program sends makes the record malformed there.
#[cfg(feature = "std")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Why {
    /// [`WHY_FUNCTION`]: the function (with `--stacks`, its callers) names the reason.
    Function = WHY_FUNCTION as isize,
    /// [`WHY_FORK`].
    Fork = WHY_FORK as isize,
    /// [`WHY_EXIT`].
    Exit = WHY_EXIT as isize,
    /// [`WHY_EXEC`].
    Exec = WHY_EXEC as isize,
    /// [`WHY_MUNMAP`].
    Munmap = WHY_MUNMAP as isize,
    /// [`WHY_MREMAP`].
    Mremap = WHY_MREMAP as isize,
    /// [`WHY_MERGE`].
    Merge = WHY_MERGE as isize,
    /// [`WHY_SPLIT`].
    Split = WHY_SPLIT as isize,
    /// [`WHY_SPLIT_OR_MERGE`]: only the kernel stack tells which.
    SplitOrMerge = WHY_SPLIT_OR_MERGE as isize,
    /// [`WHY_MUNMAP_OR_MERGE`]: only the kernel stack tells which.
    MunmapOrMerge = WHY_MUNMAP_OR_MERGE as isize,
}

#[cfg(feature = "std")]
impl Why {
    /// In number order: `ALL[w]` is `WHY_*` number `w`.
    pub const ALL: [Why; WHY_COUNT as usize] =
        [Why::Function, Why::Fork, Why::Exit, Why::Exec, Why::Munmap, Why::Mremap, Why::Merge, Why::Split, Why::SplitOrMerge, Why::MunmapOrMerge];

    /// `None` for a number this build does not know.
    pub fn of(why: u32) -> Option<Why> {
        usize::try_from(why).ok().and_then(|i| Why::ALL.get(i)).copied()
    }

    /// The reason key the report counts it under: the same names the kernel stack gives
    /// where the context is certain, both candidates where it is not (`split/merge`).
    /// [`Why::Function`] is no reason of its own ("function": its key is the function's).
    pub fn name(self) -> &'static str {
        match self {
            Why::Function => "function",
            Why::Fork => "fork",
            Why::Exit => "exit",
            Why::Exec => "exec",
            Why::Munmap => "munmap",
            Why::Mremap => "mremap",
            Why::Merge => "merge",
            Why::Split => "split",
            Why::SplitOrMerge => "split/merge",
            Why::MunmapOrMerge => "munmap/merge",
        }
    }
}

#[cfg(feature = "std")]
const _: () = {
    let mut i = 0;
    while i < WHY_COUNT as usize {
        assert!(Why::ALL[i] as usize == i, "Why::ALL out of number order");
        i += 1;
    }
};

/// A bit on `SlabEvent::why` (never a slot's): the first free of a failed fork's teardown
/// (a free inside a fork syscall) whose allocations `TRACE_TALLY` counted, so userspace,
/// which saw none of them, tells one failed fork from the next of the same thread.
pub const WHY_FAILED_FORK: u32 = 1 << 16;

/// One slab event without a stack: the context (the task's syscall, whether it is exiting)
/// told why, so no `bpf_get_stack` was needed. Read as a [`TraceEvent`] without frames.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlabEvent {
    /// [`EV_SLAB_ALLOC`] / [`EV_SLAB_FREE`].
    pub kind: u32,
    pub pid: u32,
    pub tgid: u32,
    /// Index in [`FUNCTIONS`].
    pub func: u32,
    pub ktime: u64,
    pub ptr: u64,
    pub call_site: u64,
    pub bytes_req: u64,
    pub bytes_alloc: u64,
    /// `WHY_*`.
    pub why: u32,
    pub pad: u32,
}
pub const SLAB_EVENT_SIZE: usize = core::mem::size_of::<SlabEvent>();
const _: () = assert!(SLAB_EVENT_SIZE == 64);

impl SlabEvent {
    /// The same event as the full record (`EV_ALLOC` / `EV_FREE`, no stack taken).
    pub fn full(&self) -> TraceEvent {
        TraceEvent {
            kind: if self.kind == EV_SLAB_ALLOC { EV_ALLOC } else { EV_FREE },
            pid: self.pid,
            tgid: self.tgid,
            arg: self.func,
            ktime: self.ktime,
            ptr: self.ptr,
            call_site: self.call_site,
            bytes_req: self.bytes_req,
            bytes_alloc: self.bytes_alloc,
            stack_bytes: 0,
            frames: [0; STACK_DEPTH],
        }
    }
}

/// What the slab programs read to tell why without a stack, injected as the
/// `TRACE_CONTEXT` global: `task_struct.flags` and the syscall number's place in `pt_regs`
/// (`orig_ax`, arm64 `syscallno`) from BTF, and the syscalls that name a reason with their
/// class (`SC_*`). [`NO_FIELD`] where unknown:
/// then the reason is the function's.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContextOffsets {
    pub task_flags: u64,
    pub regs_syscall: u64,
    /// Syscall numbers ([`NO_SYSCALL`]: unused slot) and each one's `SC_*` class.
    pub syscalls: [u64; CTX_SYSCALLS],
    pub classes: [u64; CTX_SYSCALLS],
    /// `task_struct.pid`: what the sched `tp_btf` programs read from their task argument
    /// where the classic record had a field.
    pub task_pid: u64,
}

impl ContextOffsets {
    pub const UNSET: ContextOffsets = ContextOffsets {
        task_flags: NO_FIELD,
        regs_syscall: NO_FIELD,
        syscalls: [NO_SYSCALL; CTX_SYSCALLS],
        classes: [SC_NONE; CTX_SYSCALLS],
        task_pid: NO_FIELD,
    };
}

/// Slots of [`ContextOffsets::syscalls`].
pub const CTX_SYSCALLS: usize = 24;
/// Classes of the syscall a task is in, for [`ContextOffsets::classes`].
pub const SC_NONE: u64 = 0;
/// clone, clone3, fork, vfork.
pub const SC_FORK: u64 = 1;
/// execve, execveat.
pub const SC_EXEC: u64 = 2;
/// munmap, brk.
pub const SC_MUNMAP: u64 = 3;
pub const SC_MREMAP: u64 = 4;
/// mprotect, pkey_mprotect, madvise, process_madvise, mlock, mlock2, munlock, mlockall,
/// munlockall, mseal, mbind, prctl, set_mempolicy_home_node: vm_flags / policy changes.
pub const SC_MODIFY: u64 = 5;
pub const SC_MMAP: u64 = 6;

/// The reason a syscall class gives an anon_vma_clone (`alloc`) or an unlink_anon_vmas /
/// __put_anon_vma (`!alloc`, `put`: the function is __put_anon_vma) outside an exit.
pub const fn why_of_class(class: u64, alloc: bool, put: bool) -> u32 {
    match (class, alloc) {
        (SC_FORK, true) => WHY_FORK,
        // Nothing in a successful copy_process frees anon_vma objects: a free inside a fork
        // syscall is a failed child's teardown (`pids.max` after dup_mmap).
        (SC_FORK, false) => WHY_FORK,
        (SC_MUNMAP, true) => WHY_SPLIT,
        (SC_MREMAP, _) => WHY_MREMAP,
        (SC_MODIFY | SC_MMAP, true) => WHY_SPLIT_OR_MERGE,
        (SC_EXEC, false) => WHY_EXEC,
        (SC_MUNMAP, false) => WHY_MUNMAP,
        // A merge's survivor keeps the anon_vma: an anon_vma freed there is KSM's (madvise
        // MADV_UNMERGEABLE), not a merge's.
        (SC_MODIFY, false) if !put => WHY_MERGE,
        (SC_MMAP, false) => WHY_MUNMAP_OR_MERGE,
        _ => WHY_FUNCTION,
    }
}

/// `serve`'s slab counts kept in the kernel (`SLAB_COUNTS`, per CPU): one slot per
/// (function, alloc/free, kind, `WHY_*`); kinds 0 anon_vma, 1 anon_vma_chain.
pub const AGG_KINDS: u32 = 2;
pub const AGG_WHYS: u32 = WHY_COUNT;
pub const AGG_SLOTS: u32 = FN_COUNT as u32 * 2 * AGG_KINDS * AGG_WHYS;

pub const fn agg_slot(func: u32, alloc: bool, kind: u32, why: u32) -> u32 {
    ((func * 2 + alloc as u32) * AGG_KINDS + kind) * AGG_WHYS + why
}

/// A `SLAB_COUNTS` / `TRACE_TALLY` slot ([`agg_slot`]) decoded: what the kernel counted
/// under it.
#[cfg(feature = "std")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AggSlot {
    pub function: SlabFn,
    pub alloc: bool,
    /// Kind 1: an anon_vma_chain (kind 0: an anon_vma; the programs count no other).
    pub anon_vma_chain: bool,
    pub why: Why,
}

#[cfg(feature = "std")]
impl AggSlot {
    /// `None` for a slot past [`AGG_SLOTS`] (its function out of [`FUNCTIONS`]).
    pub fn of(slot: u32) -> Option<AggSlot> {
        let why = slot % AGG_WHYS;
        let kind = (slot / AGG_WHYS) % AGG_KINDS;
        let fa = slot / AGG_WHYS / AGG_KINDS;
        Some(AggSlot { function: SlabFn::of(fa / 2)?, alloc: fa % 2 == 1, anon_vma_chain: kind == 1, why: Why::of(why)? })
    }
}

/// `TRACE_AGGREGATE` bits. `serve`: per-slot totals (`SLAB_COUNTS`), no process.
pub const AGG_SERVE: u32 = 1;
/// `trace`: per (process, marker generation, slot) counts (`TRACE_TALLY`), so each
/// process's phase is told exactly however late userspace reads them.
pub const AGG_TRACE: u32 = 2;
/// With `AGG_TRACE`: `__anon_vma_prepare`'s events still stream (the model pairs each
/// prepare's chain with its VMA record, and counts a lost race's spares).
pub const AGG_STREAM_PREPARE: u32 = 4;

/// A `TRACE_TALLY` key: the process counted at (the allocating one for a scoped trace's
/// free from elsewhere), the `agg_slot`, and the marker generation when it happened: the
/// number of phase markers sent before it (`TRACE_GEN`; a marker record's `call_site`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TallyKey {
    pub tgid: u32,
    pub slot: u32,
    pub gen: u64,
}

/// One entry of `TALLY_FRONT`, a per-CPU direct-mapped cache in front of `TRACE_TALLY`:
/// `count` events of `key` not yet added to the map (0: empty). A fork's hundreds of
/// allocations touch the hash map a few times instead of once each. The programs add an
/// entry to the map when another key takes its place, when it reaches [`FRONT_BATCH`], and
/// on lazyvma's [`MARKER_FLUSH_FRONT`] on that CPU; userspace reads the entries only once
/// the programs are detached (a per-CPU value may be read half-written while one runs).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TallyFront {
    pub key: TallyKey,
    pub count: u64,
}

/// `TALLY_FRONT`'s entries per CPU (a power of two).
pub const FRONT_SLOTS: u32 = 16;
/// An entry goes to the map at this count: what a live row or a marker's read can miss of
/// one key on one CPU is below it.
pub const FRONT_BATCH: u64 = 64;
/// Marker id (behavior − [`MARKER_BASE`]) by which lazyvma asks the CPU it runs on to add
/// its `TALLY_FRONT` entries to the map; no record is sent and no generation starts.
pub const MARKER_FLUSH_FRONT: u32 = 0x5e_ed04;

/// `PF_EXITING` (include/linux/sched.h), the same on every kernel lazyvma runs on.
pub const PF_EXITING: u32 = 0x4;

/// Every record kind: distinct, or two programs' records would be read as each other's.
const _: () = {
    let kinds = [
        EV_SLAB_ALLOC,
        EV_SLAB_FREE,
        EV_ALLOC,
        EV_FREE,
        EV_FORK,
        EV_NEWTASK,
        EV_EXEC,
        EV_EXIT,
        EV_MARKER,
        EV_HOOK,
        EV_SYSCALL,
        EV_LOCK_BEGIN,
        EV_LOCK_END,
        EV_PREPARE_VMA,
        EV_KSM_MERGE,
        EV_KSM_REMOVE,
    ];
    let mut i = 0;
    while i < kinds.len() {
        let mut j = i + 1;
        while j < kinds.len() {
            assert!(kinds[i] != kinds[j], "two record kinds share a number");
            j += 1;
        }
        i += 1;
    }
};

/// Slots of the `SYSCALL_IDS` global (this architecture's syscall numbers, from userspace).
pub const SYS_MMAP: usize = 0;
pub const SYS_MUNMAP: usize = 1;
pub const SYS_MPROTECT: usize = 2;
pub const SYS_PKEY_MPROTECT: usize = 3;
pub const SYS_MREMAP: usize = 4;
pub const SYS_MADVISE: usize = 5;
pub const SYS_BRK: usize = 6;
/// execve / execveat: a record at enter too ([`SYS_ENTER`]); the enter forgets the thread's
/// last fault address, so the argv copy's prepare (no fault) is not placed at a stale one.
pub const SYS_EXECVE: usize = 7;
pub const SYS_EXECVEAT: usize = 8;
/// Syscalls that change vm_flags (and so split and merge VMAs) the model does not take:
/// recorded so a trace using them says the model is incomplete, and so their prepares
/// outside a fault (mlock's populate) are placed at their exit.
pub const SYS_MLOCK: usize = 9;
pub const SYS_MLOCK2: usize = 10;
pub const SYS_MUNLOCK: usize = 11;
pub const SYS_MLOCKALL: usize = 12;
pub const SYS_MUNLOCKALL: usize = 13;
pub const SYS_MSEAL: usize = 14;
pub const SYS_MBIND: usize = 15;
/// Only `PR_SET_VMA` (anon VMA names) matters.
pub const SYS_PRCTL: usize = 16;
pub const SYS_COUNT: usize = 17;
/// Or'ed into [`SyscallEvent::slot`] for the record execve's enter sends (the model must
/// know an exec began: its prepares land in the new mm before `sched_process_exec`).
pub const SYS_ENTER: u32 = 1 << 8;
/// An unused `SYSCALL_IDS` slot.
pub const NO_SYSCALL: u64 = u64::MAX;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyscallEvent {
    /// [`EV_SYSCALL`].
    pub kind: u32,
    pub pid: u32,
    pub tgid: u32,
    /// Slot in `SYSCALL_IDS` (`SYS_*`), not the raw number.
    pub slot: u32,
    pub args: [u64; 6],
    pub ret: i64,
    /// When the syscall took effect, for ordering the model's input: `bpf_ktime_get_ns` at
    /// its first successful `mmap_lock` write acquisition, else at its exit (0: a record
    /// of format 1.0, which had no key: ring-buffer order). Last, so an old record is this
    /// one cut short.
    pub key: u64,
}
pub const SYSCALL_EVENT_SIZE: usize = core::mem::size_of::<SyscallEvent>();
const _: () = assert!(SYSCALL_EVENT_SIZE == 80);
/// A [`SyscallEvent`] recorded before it carried `key`.
pub const SYSCALL_EVENT_SIZE_V0: usize = 72;

/// [`PrepareVma::found`]: the prepare ran outside a page fault's handler (GUP:
/// MADV_POPULATE_WRITE, mlock's populate, /proc/PID/mem, process_vm_writev; uprobes), so
/// the thread's last fault address says nothing about its VMA: `addr` is 0.
pub const FOUND_NOT_IN_FAULT: u32 = 2;
/// [`PrepareVma::found`]: such a prepare inside a VMA syscall, held to the syscall's exit
/// and not placed there (its anon_vma or chain already gone). Sent after the prepare hook's
/// exit, unlike the others: that hook's VMA is not this record's to take.
pub const FOUND_HELD: u32 = 3;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrepareVma {
    /// [`EV_PREPARE_VMA`].
    pub kind: u32,
    pub pid: u32,
    pub tgid: u32,
    /// 1: a VMA was found at `addr`; 0: no fault address (exec's argv copy);
    /// [`FOUND_NOT_IN_FAULT`], [`FOUND_HELD`]; else `bpf_find_vma`'s errno << 8 (ENOENT: no VMA there,
    /// EBUSY: mmap_lock contended).
    pub found: u32,
    /// The thread's last `exceptions:page_fault_user` address (0: none since its exec).
    pub addr: u64,
    /// `kmem_cache_alloc`'s `bytes_req`: which object (anon_vma_chain first, then maybe anon_vma).
    pub bytes_req: u64,
    pub start: u64,
    pub end: u64,
    pub pgoff: u64,
    pub flags: u64,
    /// `vm_file` (0: anonymous) and `anon_vma` (0 until this prepare links one).
    pub file: u64,
    pub anon_vma: u64,
    /// `bpf_ktime_get_ns` at the allocation, inside the fault's `mmap_lock` read section:
    /// the key that orders it against VMA syscalls ([`SyscallEvent::key`]; 0: an older record).
    pub key: u64,
}
pub const PREPARE_VMA_SIZE: usize = core::mem::size_of::<PrepareVma>();
const _: () = assert!(PREPARE_VMA_SIZE == 88);
/// A [`PrepareVma`] recorded before it carried `key`.
pub const PREPARE_VMA_SIZE_V0: usize = 80;

/// A KSM tracepoint record. ksmd sends it, so `pid`/`tgid` are ksmd's: the process is
/// `mm`'s, named by `owner_tgid` while the mm has an owner.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KsmEvent {
    /// [`EV_KSM_MERGE`] / [`EV_KSM_REMOVE`].
    pub kind: u32,
    pub pid: u32,
    pub tgid: u32,
    /// Merge: the kernel's `err` (0: merged, +1 anon_vma reference); remove: 0.
    pub err: i32,
    pub ktime: u64,
    pub mm: u64,
    /// `mm->owner->tgid` (0: no owner, i.e. the mm outlived its tasks, or no CONFIG_MEMCG).
    pub owner_tgid: u64,
    pub rmap_item: u64,
    /// `rmap_item->address` as read (low bits: KSM's tree flags), 0 without its BTF offset.
    pub address: u64,
    pub pfn: u64,
    /// Merge: the KSM page merged into (0: this page became the KSM page).
    pub ksm_page: u64,
}
pub const KSM_EVENT_SIZE: usize = core::mem::size_of::<KsmEvent>();
const _: () = assert!(KSM_EVENT_SIZE == 72);

/// The KSM tracepoints' field offsets (tracefs) and the BTF offsets their programs read,
/// injected as the `KSM_OFFSETS` global; [`NO_FIELD`] where absent.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KsmOffsets {
    pub merge_ksm_page: u64,
    pub merge_pfn: u64,
    pub merge_rmap_item: u64,
    pub merge_mm: u64,
    pub merge_err: u64,
    pub remove_pfn: u64,
    pub remove_rmap_item: u64,
    pub remove_mm: u64,
}

impl KsmOffsets {
    pub const UNSET: KsmOffsets = KsmOffsets {
        merge_ksm_page: NO_FIELD,
        merge_pfn: NO_FIELD,
        merge_rmap_item: NO_FIELD,
        merge_mm: NO_FIELD,
        merge_err: NO_FIELD,
        remove_pfn: NO_FIELD,
        remove_rmap_item: NO_FIELD,
        remove_mm: NO_FIELD,
    };
}

/// One ring buffer record, decoded: what its `kind` and fields mean in the kernel's terms, so
/// no consumer reads `EV_*` numbers or overloaded fields (`arg`, `ptr`) itself. Every
/// program's record is here; `decode_any` returns `None` for the rest.
#[cfg(feature = "std")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    /// `kmem:kmem_cache_alloc` from one of [`FUNCTIONS`].
    Alloc(Slab),
    /// `kmem:kmem_cache_free` from one of [`FUNCTIONS`].
    Free(Slab),
    /// `task:task_newtask`, in the parent (`pid`, `tgid`): the new task and its clone flags.
    NewTask {
        pid: u32,
        tgid: u32,
        child_pid: u32,
        clone_flags: u64,
    },
    /// `sched:sched_process_fork`, in the parent (`pid`, `tgid`).
    Fork {
        pid: u32,
        tgid: u32,
        child_pid: u32,
        ktime: u64,
    },
    /// `sched:sched_process_exec`.
    Exec {
        pid: u32,
        tgid: u32,
        old_pid: u32,
        ktime: u64,
    },
    /// `sched:sched_process_exit`: `group_dead` 0/1, 2 when the kernel has no such field.
    Exit {
        pid: u32,
        tgid: u32,
        group_dead: u32,
        ktime: u64,
    },
    /// A phase marker (`madvise(0, 0, MARKER_BASE + id)`), `id` relative to [`MARKER_BASE`];
    /// `gen`: the markers sent before it (`TRACE_GEN`, [`TallyKey::gen`]).
    Marker {
        pid: u32,
        tgid: u32,
        id: u32,
        gen: u64,
        ktime: u64,
    },
    /// `lock:contention_begin`: `flags` the `LCB_F_*` bits.
    LockBegin {
        lock: Contention,
        flags: u32,
    },
    /// `lock:contention_end`: `ret` 0 acquired, else a negative errno as u32.
    LockEnd {
        lock: Contention,
        ret: u32,
    },
    Hook(Hook),
    Syscall(SyscallEvent),
    Prepare(PrepareVma),
    Ksm(Ksm),
}

/// A KSM tracepoint record ([`KsmEvent`]), decoded: the variant is the tracepoint, so no
/// consumer compares [`EV_KSM_MERGE`] / [`EV_KSM_REMOVE`].
#[cfg(feature = "std")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ksm {
    /// `ksm:ksm_merge_with_ksm_page` (ksmd, 6.4+): one `try_to_merge_with_ksm_page`.
    /// `ksm_page`: the KSM page merged into (0: this page became the KSM page); `err`: the
    /// kernel's (0: merged, the rmap_item took an anon_vma reference).
    MergeWithKsmPage { item: KsmItem, ksm_page: u64, err: i32 },
    /// `ksm:ksm_remove_rmap_item`: a stable node torn down drops one of its rmap_items (not
    /// the last one: the kernel traces only those) and its anon_vma reference.
    RemoveRmapItem(KsmItem),
}

/// What both KSM tracepoints say: the rmap_item, its mm and page, and the task that sent
/// the record (ksmd, or a task unmerging).
#[cfg(feature = "std")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KsmItem {
    pub pid: u32,
    pub tgid: u32,
    pub ktime: u64,
    pub mm: u64,
    /// `mm->owner->tgid` (0: no owner, i.e. the mm outlived its tasks, or no CONFIG_MEMCG).
    pub owner_tgid: u32,
    pub rmap_item: u64,
    /// `rmap_item->address` as read (low bits: KSM's tree flags), 0 without its BTF offset.
    pub address: u64,
    pub pfn: u64,
}

#[cfg(feature = "std")]
impl Ksm {
    /// `None` for a kind that is not a KSM tracepoint's.
    pub fn of(ev: &KsmEvent) -> Option<Ksm> {
        let item = KsmItem {
            pid: ev.pid,
            tgid: ev.tgid,
            ktime: ev.ktime,
            mm: ev.mm,
            // A pid_t the program widened; a crafted recording's larger value wraps, as the
            // observer always read it.
            owner_tgid: ev.owner_tgid as u32,
            rmap_item: ev.rmap_item,
            address: ev.address,
            pfn: ev.pfn,
        };
        match ev.kind {
            EV_KSM_MERGE => Some(Ksm::MergeWithKsmPage { item, ksm_page: ev.ksm_page, err: ev.err }),
            EV_KSM_REMOVE => Some(Ksm::RemoveRmapItem(item)),
            _ => None,
        }
    }

    pub fn item(&self) -> &KsmItem {
        match self {
            Ksm::MergeWithKsmPage { item, .. } | Ksm::RemoveRmapItem(item) => item,
        }
    }
}

/// A function hook record ([`HookEvent`]), decoded: which function, entry or exit, which
/// kind of program sent it and the operation it ran inside are enums ([`HookFn`], [`Phase`],
/// [`HookBackend`], [`Caller`]), so no consumer compares `HK_*`, `PH_*`, `BK_*` or `CALLER_*`
/// numbers, and `args` are the function's, named ([`HookArgs`]). The other fields are the
/// record's, whose meaning per function is documented at each `HK_*`.
#[cfg(feature = "std")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hook {
    pub function: HookFn,
    pub phase: Phase,
    pub backend: HookBackend,
    pub pid: u32,
    pub tgid: u32,
    pub ktime: u64,
    /// The innermost frame of [`HookEvent::callers`] (the only one userspace reads).
    pub caller: Caller,
    pub ret: u64,
    pub args: HookArgs,
    pub a: VmaSnap,
    pub b: VmaSnap,
    pub stack: [u64; HOOK_STACK_DEPTH],
}

#[cfg(feature = "std")]
impl Hook {
    /// `None` when the function, the phase or the backend is a number this build does not
    /// know: a malformed record to its reader.
    pub fn of(ev: &HookEvent) -> Option<Hook> {
        let (function, phase) = (HookFn::of(ev.hook, ev.args[5])?, Phase::of(ev.phase)?);
        Some(Hook {
            function,
            phase,
            backend: HookBackend::of(ev.backend)?,
            pid: ev.pid,
            tgid: ev.tgid,
            ktime: ev.ktime,
            caller: Caller::innermost(ev.callers),
            ret: ev.ret,
            args: HookArgs::of(function, phase, ev.args),
            a: ev.a,
            b: ev.b,
            stack: ev.stack,
        })
    }
}

/// A slab event on an anon_vma or anon_vma_chain, from either record: the full
/// [`TraceEvent`] (`EV_ALLOC` / `EV_FREE`, with the kernel stack if one was taken) or the
/// slim [`SlabEvent`] (no stack: the context's `WHY_*` instead).
#[cfg(feature = "std")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slab {
    pub pid: u32,
    pub tgid: u32,
    /// The function of the call site.
    pub function: SlabFn,
    pub ktime: u64,
    /// The object.
    pub ptr: u64,
    pub call_site: u64,
    pub bytes_req: u64,
    pub bytes_alloc: u64,
    /// [`SlabEvent::why`] without its flag; [`Why::Function`] for a full record, whose
    /// reason is the function's and its stack's.
    pub why: Why,
    /// [`WHY_FAILED_FORK`] was set: the first free of a failed fork's teardown whose
    /// allocations the kernel counted.
    pub failed_fork_first: bool,
    /// Sent as a [`SlabEvent`] (no stack was taken).
    pub slim: bool,
    /// [`TraceEvent::stack_bytes`] and `frames` (0 and none for a slim record).
    pub stack_bytes: i64,
    pub frames: [u64; STACK_DEPTH],
}

#[cfg(feature = "std")]
impl Slab {
    /// The kernel return addresses `bpf_get_stack` wrote (none when it failed).
    pub fn stack(&self) -> &[u64] {
        let n = (self.stack_bytes.max(0) as usize / 8).min(self.frames.len());
        &self.frames[..n]
    }

    /// `bpf_get_stack` failed (the reason then falls back to the function's).
    pub fn stack_failed(&self) -> bool {
        self.stack_bytes < 0
    }
}

/// A `lock:contention_*` record's common part: `&anon_vma->rwsem` of an anon_vma the BPF set
/// knows (only a root's rwsem is ever taken).
#[cfg(feature = "std")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Contention {
    /// The waiter.
    pub pid: u32,
    pub tgid: u32,
    pub ktime: u64,
    pub anon_vma: u64,
    /// The tgid that allocated (or was first seen holding) the anon_vma, 0 if unknown.
    pub owner_tgid: u32,
}

#[cfg(feature = "std")]
impl Record {
    /// A full [`TraceEvent`] (or a slim one widened by [`SlabEvent::full`], with its `why`)
    /// by its kind; `None` for a kind this build does not know, a function index out of
    /// [`FUNCTIONS`] or a `why` no program sends.
    fn of(ev: &TraceEvent, why: u32, slim: bool) -> Option<Record> {
        let slab = || {
            Some(Slab {
                pid: ev.pid,
                tgid: ev.tgid,
                function: SlabFn::of(ev.arg)?,
                ktime: ev.ktime,
                ptr: ev.ptr,
                call_site: ev.call_site,
                bytes_req: ev.bytes_req,
                bytes_alloc: ev.bytes_alloc,
                why: Why::of(why & !WHY_FAILED_FORK)?,
                failed_fork_first: why & WHY_FAILED_FORK != 0,
                slim,
                stack_bytes: ev.stack_bytes,
                frames: ev.frames,
            })
        };
        let (pid, tgid, ktime) = (ev.pid, ev.tgid, ev.ktime);
        let lock = || Contention { pid, tgid, ktime, anon_vma: ev.ptr, owner_tgid: ev.bytes_req as u32 };
        Some(match ev.kind {
            EV_ALLOC => Record::Alloc(slab()?),
            EV_FREE => Record::Free(slab()?),
            EV_NEWTASK => Record::NewTask { pid, tgid, child_pid: ev.arg, clone_flags: ev.ptr },
            EV_FORK => Record::Fork { pid, tgid, child_pid: ev.arg, ktime },
            EV_EXEC => Record::Exec { pid, tgid, old_pid: ev.arg, ktime },
            EV_EXIT => Record::Exit { pid, tgid, group_dead: ev.arg, ktime },
            // The program sends only behaviors >= MARKER_BASE; a crafted recording's smaller
            // one wraps (as the release build always did) instead of panicking.
            EV_MARKER => Record::Marker { pid, tgid, id: ev.ptr.wrapping_sub(MARKER_BASE) as u32, gen: ev.call_site, ktime },
            EV_LOCK_BEGIN => Record::LockBegin { lock: lock(), flags: ev.arg },
            EV_LOCK_END => Record::LockEnd { lock: lock(), ret: ev.arg },
            _ => return None,
        })
    }
}

/// A record of `N` bytes, or one of the older `old` bytes (the same fields without the
/// ones added at the end since, read as 0).
#[cfg(feature = "std")]
fn widened<T: Copy, const N: usize>(bytes: &[u8], old: usize) -> Option<T> {
    if bytes.len() != N && bytes.len() != old {
        return None;
    }
    let mut buf = [0u8; N];
    buf[..bytes.len()].copy_from_slice(bytes);
    // SAFETY: N == size_of::<T>() (the callers' constants); plain integers, any bit pattern.
    Some(unsafe { core::ptr::read_unaligned(buf.as_ptr().cast::<T>()) })
}

/// `None` when the length does not match the kind's record, the kind is unknown, a slab
/// event's function index is out of [`FUNCTIONS`] or its `why` unknown, or a hook record's
/// function, phase or backend is unknown: each a malformed record to its reader.
#[cfg(feature = "std")]
pub fn decode_any(bytes: &[u8]) -> Option<Record> {
    let kind = u32::from_ne_bytes(bytes.get(..4)?.try_into().ok()?);
    // SAFETY (each read): length checked; plain integers, valid for any bit pattern.
    if kind == EV_HOOK {
        let ev = (bytes.len() == HOOK_EVENT_SIZE).then(|| unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<HookEvent>()) })?;
        Hook::of(&ev).map(Record::Hook)
    } else if kind == EV_SYSCALL {
        widened::<SyscallEvent, SYSCALL_EVENT_SIZE>(bytes, SYSCALL_EVENT_SIZE_V0).map(Record::Syscall)
    } else if kind == EV_PREPARE_VMA {
        widened::<PrepareVma, PREPARE_VMA_SIZE>(bytes, PREPARE_VMA_SIZE_V0).map(Record::Prepare)
    } else if kind == EV_SLAB_ALLOC || kind == EV_SLAB_FREE {
        let ev = (bytes.len() == SLAB_EVENT_SIZE).then(|| unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<SlabEvent>()) })?;
        Record::of(&ev.full(), ev.why, true)
    } else if kind == EV_KSM_MERGE || kind == EV_KSM_REMOVE {
        let ev = (bytes.len() == KSM_EVENT_SIZE).then(|| unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<KsmEvent>()) })?;
        Ksm::of(&ev).map(Record::Ksm)
    } else {
        decode(bytes).and_then(|ev| Record::of(&ev, WHY_FUNCTION, false))
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    fn bytes<T>(v: &T) -> Vec<u8> {
        // SAFETY: plain integer records.
        unsafe { core::slice::from_raw_parts((v as *const T).cast::<u8>(), core::mem::size_of::<T>()) }.to_vec()
    }

    #[test]
    fn records_are_told_apart_by_kind_and_length() {
        let t = TraceEvent { kind: EV_FORK, arg: 7, ..Default::default() };
        let h = HookEvent { kind: EV_HOOK, hook: HK_PREPARE, phase: PH_EXIT, backend: BK_FENTRY, ..Default::default() };
        assert_eq!(decode_any(&bytes(&t)), Some(Record::Fork { pid: 0, tgid: 0, child_pid: 7, ktime: 0 }));
        assert!(matches!(
            decode_any(&bytes(&h)),
            Some(Record::Hook(Hook { function: HookFn::AnonVmaPrepare, phase: Phase::Exit, backend: HookBackend::Fentry, .. }))
        ));
        // A hook kind with a slab record's length, and a cut record, are refused.
        let mut wrong = bytes(&t);
        wrong[..4].copy_from_slice(&EV_HOOK.to_ne_bytes());
        assert_eq!(decode_any(&wrong), None);
        assert_eq!(decode_any(&bytes(&h)[..100]), None);
        assert_eq!(decode_any(&[1, 0]), None);
        let sc = SyscallEvent { kind: EV_SYSCALL, slot: SYS_MMAP as u32, ret: -12, ..Default::default() };
        let pv = PrepareVma { kind: EV_PREPARE_VMA, found: 1, start: 4096, ..Default::default() };
        assert_eq!(decode_any(&bytes(&sc)), Some(Record::Syscall(sc)));
        assert_eq!(decode_any(&bytes(&pv)), Some(Record::Prepare(pv)));
        assert_eq!(decode_any(&bytes(&pv)[..72]), None);
        // Records of format 1.0 (no key) still decode, key 0; other lengths do not.
        let keyed = SyscallEvent { key: 7, ..sc };
        assert_eq!(decode_any(&bytes(&keyed)[..SYSCALL_EVENT_SIZE_V0]), Some(Record::Syscall(sc)));
        assert_eq!(decode_any(&bytes(&keyed)[..64]), None);
        let keyed = PrepareVma { key: 9, ..pv };
        assert_eq!(decode_any(&bytes(&keyed)[..PREPARE_VMA_SIZE_V0]), Some(Record::Prepare(pv)));
        assert_eq!(decode_any(&bytes(&keyed)), Some(Record::Prepare(keyed)));
        let k = KsmEvent { kind: EV_KSM_MERGE, mm: 0x100, owner_tgid: 7, err: -14, ..Default::default() };
        let item = KsmItem { mm: 0x100, owner_tgid: 7, ..Default::default() };
        assert_eq!(decode_any(&bytes(&k)), Some(Record::Ksm(Ksm::MergeWithKsmPage { item, ksm_page: 0, err: -14 })));
        // A removal's err and ksm_page are not its own (0 as sent).
        assert_eq!(decode_any(&bytes(&KsmEvent { kind: EV_KSM_REMOVE, ..k })), Some(Record::Ksm(Ksm::RemoveRmapItem(item))));
        assert_eq!(decode_any(&bytes(&k)[..64]), None);
        let sl = SlabEvent { kind: EV_SLAB_FREE, func: FN_UNLINK, ptr: 0x40, bytes_req: 64, why: WHY_EXIT, ..Default::default() };
        let Some(Record::Free(free)) = decode_any(&bytes(&sl)) else { panic!("a slim free") };
        assert_eq!(
            (free.function, free.ptr, free.bytes_req, free.why, free.failed_fork_first, free.slim, free.stack()),
            (SlabFn::UnlinkAnonVmas, 0x40, 64, Why::Exit, false, true, &[][..])
        );
        assert_eq!(decode_any(&bytes(&sl)[..56]), None);
    }

    #[test]
    fn each_kind_decodes_to_its_fields_and_the_unknown_to_none() {
        let ev = TraceEvent { pid: 11, tgid: 10, arg: 12, ktime: 99, ptr: 0x1000, call_site: 3, bytes_req: 7, ..Default::default() };
        // Not `TraceEvent { kind, ..ev }`: that in a closure is an internal compiler error
        // (broken MIR, rustc 1.95) in this test build.
        let of = |kind| {
            let mut e = ev;
            e.kind = kind;
            decode_any(&bytes(&e))
        };
        assert_eq!(of(EV_NEWTASK), Some(Record::NewTask { pid: 11, tgid: 10, child_pid: 12, clone_flags: 0x1000 }));
        assert_eq!(of(EV_FORK), Some(Record::Fork { pid: 11, tgid: 10, child_pid: 12, ktime: 99 }));
        assert_eq!(of(EV_EXEC), Some(Record::Exec { pid: 11, tgid: 10, old_pid: 12, ktime: 99 }));
        assert_eq!(of(EV_EXIT), Some(Record::Exit { pid: 11, tgid: 10, group_dead: 12, ktime: 99 }));
        let lock = Contention { pid: 11, tgid: 10, ktime: 99, anon_vma: 0x1000, owner_tgid: 7 };
        assert_eq!(of(EV_LOCK_BEGIN), Some(Record::LockBegin { lock, flags: 12 }));
        assert_eq!(of(EV_LOCK_END), Some(Record::LockEnd { lock, ret: 12 }));
        // The marker's id is relative to MARKER_BASE; its generation rides in call_site.
        let m = TraceEvent { kind: EV_MARKER, ptr: MARKER_BASE + 5, call_site: 2, ..ev };
        assert_eq!(decode_any(&bytes(&m)), Some(Record::Marker { pid: 11, tgid: 10, id: 5, gen: 2, ktime: 99 }));
        // A behavior below the base (only a crafted recording has one) wraps, as before.
        let low = TraceEvent { ptr: 1, ..m };
        assert!(matches!(decode_any(&bytes(&low)), Some(Record::Marker { id, .. }) if id == u32::MAX - 998));
        // Kinds no program sends in this shape: malformed.
        for kind in [0, 8, EV_HOOK, EV_SYSCALL, EV_SLAB_ALLOC, 17] {
            assert_eq!(of(kind), None, "kind {kind}");
        }
        // A slab event's function index is checked once, here, for both shapes.
        let alloc = TraceEvent { kind: EV_ALLOC, arg: FN_CLONE, stack_bytes: 16, frames: [0xff; STACK_DEPTH], ..ev };
        let Some(Record::Alloc(a)) = decode_any(&bytes(&alloc)) else { panic!("a full alloc") };
        assert_eq!((a.function, a.why, a.slim, a.stack(), a.stack_failed()), (SlabFn::AnonVmaClone, Why::Function, false, &[0xff, 0xff][..], false));
        let failed = TraceEvent { stack_bytes: -14, ..alloc };
        let Some(Record::Alloc(a)) = decode_any(&bytes(&failed)) else { panic!("a full alloc") };
        assert_eq!((a.stack(), a.stack_failed()), (&[][..], true));
        assert_eq!(decode_any(&bytes(&TraceEvent { arg: FN_COUNT as u32, ..alloc })), None);
        assert_eq!(decode_any(&bytes(&TraceEvent { kind: EV_FREE, arg: u32::MAX, ..alloc })), None);
        let slim = SlabEvent { kind: EV_SLAB_ALLOC, func: FN_COUNT as u32, ..Default::default() };
        assert_eq!(decode_any(&bytes(&slim)), None);
        let slim = SlabEvent { func: FN_PUT, why: WHY_FORK | WHY_FAILED_FORK, ..slim };
        assert!(matches!(
            decode_any(&bytes(&slim)),
            Some(Record::Alloc(Slab { function: SlabFn::PutAnonVma, why: Why::Fork, failed_fork_first: true, slim: true, .. }))
        ));
        // A reason no program sends, or another flag bit, is malformed too.
        for why in [WHY_COUNT, WHY_COUNT | WHY_FAILED_FORK, WHY_FORK | 1 << 17, u32::MAX] {
            assert_eq!(decode_any(&bytes(&SlabEvent { why, ..slim })), None, "why {why:#x}");
        }
    }

    /// Every function and reason number decodes to its enum and back to its number and
    /// name; every slot the programs count decodes to what `agg_slot` put in it.
    #[test]
    fn slab_numbers_decode_once_and_name_from_one_place() {
        for (i, f) in SlabFn::ALL.iter().enumerate() {
            assert_eq!((SlabFn::of(i as u32), f.index(), f.name()), (Some(*f), i, FUNCTIONS[i]));
        }
        assert_eq!((SlabFn::of(FN_COUNT as u32), SlabFn::of(u32::MAX)), (None, None));
        let names: std::collections::HashSet<_> = Why::ALL.iter().map(|w| w.name()).collect();
        assert_eq!(names.len(), WHY_COUNT as usize);
        for (w, why) in Why::ALL.iter().enumerate() {
            assert_eq!(Why::of(w as u32), Some(*why));
        }
        assert_eq!(Why::of(WHY_COUNT), None);
        for f in SlabFn::ALL {
            for alloc in [false, true] {
                for kind in 0..AGG_KINDS {
                    for why in Why::ALL {
                        let slot = agg_slot(f as u32, alloc, kind, why as u32);
                        assert!(slot < AGG_SLOTS);
                        assert_eq!(AggSlot::of(slot), Some(AggSlot { function: f, alloc, anon_vma_chain: kind == 1, why }));
                    }
                }
            }
        }
        assert_eq!(AggSlot::of(AGG_SLOTS), None);
    }

    /// Every hook number a program sends decodes to its function, phase and backend; any
    /// other number (function, merge function, phase, backend) makes the record malformed.
    #[test]
    fn hook_numbers_decode_once_and_the_unknown_is_malformed() {
        let h = HookEvent { kind: EV_HOOK, pid: 3, tgid: 2, phase: PH_ENTRY, backend: BK_KPROBE, ktime: 9, ret: 5, ..Default::default() };
        let fns = [
            (HK_PREPARE, HookFn::AnonVmaPrepare),
            (HK_MERGEABLE, HookFn::FindMergeableAnonVma),
            (HK_FORK, HookFn::AnonVmaFork),
            (HK_CLONE, HookFn::AnonVmaClone),
            (HK_UNLINK, HookFn::UnlinkAnonVmas),
            (HK_PUT, HookFn::PutAnonVma),
            (HK_SPLIT, HookFn::SplitVma),
            (HK_MERGE, HookFn::Merge(MergeFn::VmaMerge)),
            (HK_COPY_VMA, HookFn::CopyVma),
            (HK_DUP_MMAP, HookFn::DupMmap),
            (HK_EXIT_MMAP, HookFn::ExitMmap),
            (HK_RMAP_WALK, HookFn::RmapWalk),
            (HK_FOLIO_LOCK, HookFn::FolioLockAnonVmaRead),
            (HK_KSM_MERGE, HookFn::TryToMergeWithKsmPage),
            (HK_KSM_REMOVE, HookFn::RemoveRmapItemFromTree),
            (HK_THP_FAULT, HookFn::DoHugePmdAnonymousPage),
        ];
        assert_eq!(fns.len(), HK_MAX as usize);
        for (hook, function) in fns {
            let Some(Record::Hook(d)) = decode_any(&bytes(&HookEvent { hook, ..h })) else { panic!("hook {hook}") };
            assert_eq!((d.function, d.phase, d.backend, d.pid, d.tgid, d.ktime, d.ret), (function, Phase::Entry, HookBackend::Kprobe, 3, 2, 9, 5));
        }
        for (i, name) in MERGE_FUNCTIONS.iter().enumerate() {
            let mut m = HookEvent { hook: HK_MERGE, phase: PH_EXIT, backend: BK_FENTRY, ..h };
            m.args[5] = i as u64;
            let Some(Record::Hook(d)) = decode_any(&bytes(&m)) else { panic!("merge {i}") };
            let HookFn::Merge(f) = d.function else { panic!("merge {i}") };
            assert_eq!((f.name(), d.phase, d.backend, d.args), (*name, Phase::Exit, HookBackend::Fentry, HookArgs::None));
        }
        // The caller stack's innermost frame (low byte) is decoded; an unknown code is kept.
        let mut c = HookEvent { hook: HK_CLONE, callers: (u64::from(CALLER_SPLIT) << 8) | u64::from(CALLER_MREMAP), ..h };
        let caller = |c: &HookEvent| match decode_any(&bytes(c)) {
            Some(Record::Hook(d)) => d.caller,
            other => panic!("{other:?}"),
        };
        assert_eq!((caller(&c), caller(&c).name()), (Caller::Mremap, "mremap"));
        c.callers = 0;
        assert_eq!((caller(&c), caller(&c).name()), (Caller::TopLevel, ""));
        c.callers = 0xfe;
        assert_eq!((caller(&c), caller(&c).name()), (Caller::Unknown(0xfe), "?"));
        for (code, name) in CALLERS.iter().enumerate() {
            assert_eq!(Caller::innermost(code as u64).name(), *name);
        }
        assert!(MergeFn::VmaMerge.returns_vma() && MergeFn::VmaMergeNewRange.returns_vma() && !MergeFn::CommitMerge.returns_vma());
        let mut bad_merge = HookEvent { hook: HK_MERGE, ..h };
        bad_merge.args[5] = MERGE_FUNCTIONS.len() as u64;
        for bad in [
            HookEvent { hook: 0, ..h },
            HookEvent { hook: HK_MAX + 1, ..h },
            HookEvent { phase: 0, ..h },
            HookEvent { phase: 3, ..h },
            HookEvent { backend: 0, ..h },
            HookEvent { backend: 3, ..h },
            bad_merge,
        ] {
            assert_eq!(decode_any(&bytes(&bad)), None, "{bad:?}");
        }
        // Each function's args are named as its `HK_*` lays them out.
        // Not `HookEvent { hook, phase, args, ..h }`: that in a closure is rustc 1.95's
        // broken-MIR ICE (see `each_kind_decodes_to_its_fields_and_the_unknown_to_none`).
        let args = |hook, phase, args: [u64; 6]| {
            let mut e = h;
            (e.hook, e.phase, e.args) = (hook, phase, args);
            match decode_any(&bytes(&e)) {
                Some(Record::Hook(d)) => d.args,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(args(HK_PREPARE, PH_EXIT, [0x100, 0, 0, 0, 0, 0]), HookArgs::Prepare { task_mm: 0x100 });
        assert_eq!(args(HK_PREPARE, PH_ENTRY, [0x100, 0, 0, 0, 0, 0]), HookArgs::None);
        assert_eq!(args(HK_PUT, PH_ENTRY, [1, 2, 3, 4, 0, 0]), HookArgs::PutAnonVma { anon_vma: 1, root: 2, root_refcount: 3, refcount: 4 });
        assert_eq!(args(HK_SPLIT, PH_ENTRY, [9, 0x2000, 1, 0, 0, 0]), HookArgs::SplitVma { addr: 0x2000, new_below: true });
        assert_eq!(args(HK_SPLIT, PH_EXIT, [9, 0x2000, 1, 0, 0, 0]), HookArgs::None);
        // A merge's range: vma_merge(mm, prev, addr, end), __vma_adjust(vma, start, end),
        // a vma_merge_struct's [vmg, start, end, next, VMG_SHAPE].
        assert_eq!(args(HK_MERGE, PH_ENTRY, [1, 2, 0x1000, 0x3000, 0, 0]), HookArgs::Merge { start: 0x1000, end: 0x3000 });
        assert_eq!(args(HK_MERGE, PH_ENTRY, [1, 0x1000, 0x3000, 4, 0, 1]), HookArgs::Merge { start: 0x1000, end: 0x3000 });
        assert_eq!(args(HK_MERGE, PH_ENTRY, [1, 0x1000, 0x3000, 4, VMG_SHAPE, 4]), HookArgs::Merge { start: 0x1000, end: 0x3000 });
        assert_eq!(args(HK_RMAP_WALK, PH_ENTRY, [0xf0, 0xa1, 1, 0, 0, 0]), HookArgs::Folio { folio: 0xf0, mapping: 0xa1, locked: true });
        assert_eq!(
            args(HK_KSM_REMOVE, PH_ENTRY, [1, 2, 3, 0, 1 << 32 | 7, 6]),
            HookArgs::Ksm { rmap_item: 1, mm: 2, address: 3, kpage: 0, owner_tgid: 7, anon_vma: 6 }
        );
        // A KSM kind is decoded by its record's length: a hook-sized one is malformed.
        assert_eq!(Ksm::of(&KsmEvent { kind: EV_HOOK, ..Default::default() }), None);
    }
}
