//! Loading and attaching `trace`'s always-on programs (observer-ebpf `slab.rs`, `sched.rs`,
//! `marker.rs`) from the embedded object, with the BTF offsets the function hooks read
//! (attached by `trace::attach`), reading its ring buffer and lost-event counters.
use crate::load::ebpf;
use crate::load::probe::chain;
use anyhow::{bail, Context};
use aya::{
    maps::{MapData, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::{BtfTracePoint, TracePoint},
    Btf, Ebpf, EbpfLoader,
};
use lazyvma_model::hook_abi::{FEXIT_RET_HELPER, FEXIT_RET_PROGRAMS};
use lazyvma_model::trace_abi::{
    ContextOffsets, HookOffsets, LockOffsets, SlabFn, TallyFront, TallyKey, TpOffsets, AGG_SLOTS, AGG_STREAM_PREPARE, AGG_TRACE, CTR_LOST, CTR_OBJECTS_FULL,
    CTR_SENT, CTR_TALLY_FULL, CTX_SYSCALLS, FN_COUNT, FRONT_SLOTS, NO_FIELD, NO_SYSCALL, SCOPE_SYSTEM, SCOPE_TRACED, SC_EXEC, SC_FORK, SC_MMAP, SC_MODIFY,
    SC_MREMAP, SC_MUNMAP,
};
use std::{
    os::fd::AsRawFd,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

/// `TpOffsets` as the loader wants it (plain integers, `#[repr(C)]`).
#[derive(Clone, Copy)]
#[repr(transparent)]
struct PodOffsets(TpOffsets);
// SAFETY: TpOffsets is #[repr(C)] and only u64 fields.
unsafe impl aya::Pod for PodOffsets {}

#[derive(Clone, Copy)]
#[repr(transparent)]
struct PodHookOffsets(HookOffsets);
// SAFETY: HookOffsets is #[repr(C)] and only u64 fields.
unsafe impl aya::Pod for PodHookOffsets {}

#[derive(Clone, Copy)]
#[repr(transparent)]
struct PodLockOffsets(LockOffsets);
// SAFETY: LockOffsets is #[repr(C)] and only u64 fields.
unsafe impl aya::Pod for PodLockOffsets {}

/// (program, tracepoint category, name, required). Without the madvise tracepoint
/// (no FTRACE_SYSCALLS) only phases are lost.
/// In attach order: a scoped trace's processes are in FEED_TRACED before the first attach,
/// so exit and exec go before fork, or a child forked and gone between those attaches would
/// have its fork sent and never its exit.
const PROGRAMS: &[(&str, &str, &str, bool)] = &[
    ("trace_slab_alloc", "kmem", "kmem_cache_alloc", true),
    ("trace_slab_free", "kmem", "kmem_cache_free", true),
    ("trace_exit", "sched", "sched_process_exit", true),
    ("trace_exec", "sched", "sched_process_exec", true),
    ("trace_newtask", "task", "task_newtask", true),
    ("trace_fork", "sched", "sched_process_fork", true),
    ("trace_marker", "syscalls", "sys_enter_madvise", false),
];

/// What `trace::feed` needs (command and -p scopes only): VMA syscalls, the user fault
/// address (x86 only), the prepared VMA. Without them the model is marked incomplete.
const FEED_PROGRAMS: &[(&str, &str, &str)] = &[
    ("trace_sys_enter", "raw_syscalls", "sys_enter"),
    ("trace_sys_exit", "raw_syscalls", "sys_exit"),
    ("trace_user_fault", "exceptions", "page_fault_user"),
    ("trace_kernel_fault", "exceptions", "page_fault_kernel"),
    ("trace_prepare_vma", "kmem", "kmem_cache_alloc"),
    ("trace_mmap_lock", "mmap_lock", "mmap_lock_acquire_returned"),
];

pub struct Config {
    pub offsets: TpOffsets,
    pub ranges: [(u64, u64); FN_COUNT],
    /// Bit i: take the kernel stack for events of FUNCTIONS[i] (`stack_fns`).
    pub stack_fns: u32,
    pub ringbuf_bytes: u32,
    /// `offsets.rs` globals from BTF (`load::btf::Offsets`); empty when BTF did not resolve
    /// (then no function hook is attached).
    pub btf_globals: Vec<(&'static str, u64)>,
    pub hook_offsets: HookOffsets,
    /// The lock programs' offsets and set size; None leaves them inert (never attached).
    pub locks: Option<crate::trace::counts::locks::Setup>,
    /// Attach `FEED_PROGRAMS` (the model is fed).
    pub feed: bool,
    /// `vm_area_struct.vm_file` from BTF (u64::MAX: unknown).
    pub vm_file: u64,
    /// [start, end) of the page fault entry: a prepare below it may use the fault address.
    pub fault_fn: (u64, u64),
    /// A scoped trace's processes at start (their forks join in BPF); `None`: the whole
    /// system. In place before any program attaches, so nothing else is ever sent.
    pub traced: Option<Vec<u32>>,
    /// Bound of a scoped trace's set of live objects its processes allocated.
    pub objects_max: u32,
    /// Batch wakeups: the reader is woken when more than ring/2^shift bytes wait, else by
    /// its own poll timer (`WAKE_SHIFT_NEVER`: the kernel's wakeup per first record).
    pub wake_shift: u32,
    /// What lets the slab programs tell a fork's clone or an exit's teardown without a stack.
    pub context: ContextOffsets,
    /// Count slab events in the kernel instead of sending them: `serve`'s totals, `trace`'s
    /// per-process counts. `None`: every event is sent (`-o`).
    pub aggregate: Option<Aggregate>,
    /// `kmem_cache.object_size` and `.size` where the kmem tracepoints' `tp_btf` flavour
    /// gets the cache (`slab_btf`): then it is attached, else the classic tracepoint.
    pub cache_fields: Option<(u64, u64)>,
    /// The running kernel's BTF: the `tp_btf` programs are tried with it (classic
    /// tracepoints without it). `load::facts`' parse, shared, not copied.
    pub kernel_btf: Option<std::sync::Arc<Btf>>,
    /// Each syscall argument's offset in `pt_regs` (`arg_regs`), for the `tp_btf` sys_enter.
    pub arg_regs: [u64; 6],
    /// `FEXIT_ARGS` (observer-ebpf/src/hook.rs): `fexit_args`' answer.
    pub fexit_args: [u64; FEXIT_RET_PROGRAMS.len()],
}

/// Where the kernel has no `bpf_get_func_ret` (5.17), each return-reading fexit program's
/// function's argument count from BTF: the return value sits right after the arguments in
/// the trampoline's context. Elsewhere (and for a function BTF does not describe) the helper.
pub fn fexit_args(
    btf: Option<&crate::load::btf::Btf>,
    has_func_ret: bool,
    function_of: impl Fn(&str) -> Option<&'static str>,
) -> [u64; FEXIT_RET_PROGRAMS.len()] {
    FEXIT_RET_PROGRAMS.map(|prog| match (has_func_ret, btf) {
        (false, Some(btf)) => function_of(prog).and_then(|f| btf.func_args(f)).map_or(FEXIT_RET_HELPER, |n| n as u64),
        _ => FEXIT_RET_HELPER,
    })
}

/// Where the six syscall arguments are in `pt_regs`: x86-64 di, si, dx, r10, r8, r9 (BTF);
/// arm64 regs[0..6], the struct's first member.
pub fn arg_regs(btf: Option<&crate::load::btf::Btf>) -> [u64; 6] {
    let Some(btf) = btf else { return [NO_FIELD; 6] };
    #[cfg(target_arch = "x86_64")]
    return ["di", "si", "dx", "r10", "r8", "r9"].map(|r| btf.offset("pt_regs", r).unwrap_or(NO_FIELD));
    #[cfg(not(target_arch = "x86_64"))]
    return match btf.offset_any("pt_regs", &["orig_x0"]) {
        Ok(_) => [0, 8, 16, 24, 32, 40],
        Err(_) => [NO_FIELD; 6],
    };
}

#[derive(Clone, Copy)]
pub struct Aggregate {
    /// The two caches' object_size, to tell an allocation's kind.
    pub sizes: (u64, u64),
    /// `AGG_*` bits.
    pub mode: u32,
    /// `TRACE_TALLY`'s size (`AGG_TRACE`).
    pub tally_entries: u32,
}

impl Aggregate {
    /// `trace`'s: per-process counts; prepares stream when the model is fed.
    pub fn trace(sizes: (u64, u64), feed: bool) -> Aggregate {
        let mode = AGG_TRACE | if feed { AGG_STREAM_PREPARE } else { 0 };
        Aggregate { sizes, mode, tally_entries: tally_entries() }
    }
}

/// `OBJECT_SLOTS`' size and `TRACE_OBJECT_SHIFT`: twice the object set's size in slots
/// (a power of two), where the `tp_btf` kmem programs (6.1+) claim them; else none.
fn object_slots(used: bool, objects_max: u32) -> (u32, u64) {
    if !used {
        return (1, 0);
    }
    let slots = (u64::from(objects_max) * 2).next_power_of_two().clamp(1 << 10, 1 << 22);
    (slots as u32, 64 - u64::from(slots.trailing_zeros()))
}

/// `TRACE_TALLY` entries (a process uses a few, one per slot and phase): 64 Ki, fewer on
/// machines with many CPUs so the per-CPU values stay within 64 MiB.
fn tally_entries() -> u32 {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    ((64 << 20) / (cpus * 8)).clamp(4096, 65536) as u32
}

/// `kmem_cache.object_size` / `.size` if the kmem tracepoints pass the cache (6.1+); the
/// `tp_btf` programs read their argument 2 as one.
pub fn slab_btf(btf: Option<&crate::load::btf::Btf>) -> Option<(u64, u64)> {
    let btf = btf?;
    let cache = |tp| btf.tracepoint_arg(tp, 2).as_deref() == Some("kmem_cache");
    if !cache("kmem_cache_alloc") || !cache("kmem_cache_free") {
        return None;
    }
    Some((btf.offset("kmem_cache", "object_size").ok()?, btf.offset("kmem_cache", "size").ok()?))
}

/// A `TRACE_TALLY` key as the loader wants it.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct PodKey(pub TallyKey);
// SAFETY: TallyKey is #[repr(C)], two u32 and a u64, no padding.
unsafe impl aya::Pod for PodKey {}

#[derive(Clone, Copy)]
#[repr(transparent)]
struct PodContext(ContextOffsets);
// SAFETY: ContextOffsets is #[repr(C)] and only u64 fields.
unsafe impl aya::Pod for PodContext {}

/// `task_struct.flags`, the syscall number's place in `pt_regs` (BTF) and this
/// architecture's syscalls that name a reason; unknown pieces leave the function's reason.
pub fn context_offsets(btf: Option<&crate::load::btf::Btf>) -> ContextOffsets {
    let Some(btf) = btf else { return ContextOffsets::UNSET };
    #[cfg(target_arch = "x86_64")]
    let forks = [libc::SYS_clone, libc::SYS_clone3, libc::SYS_fork, libc::SYS_vfork].map(|n| n as u64);
    #[cfg(not(target_arch = "x86_64"))]
    let forks = [libc::SYS_clone as u64, libc::SYS_clone3 as u64, NO_SYSCALL, NO_SYSCALL];
    let mut c = ContextOffsets {
        task_flags: btf.offset("task_struct", "flags").unwrap_or(NO_FIELD),
        regs_syscall: btf.offset_any("pt_regs", &["orig_ax", "syscallno"]).unwrap_or(NO_FIELD),
        task_pid: btf.offset("task_struct", "pid").unwrap_or(NO_FIELD),
        ..ContextOffsets::UNSET
    };
    for (i, (nr, class)) in reason_syscalls(forks).into_iter().take(CTX_SYSCALLS).enumerate() {
        (c.syscalls[i], c.classes[i]) = (nr, class);
    }
    c
}

/// The syscalls whose context names a slab event's reason (`trace_abi::why_of_class`).
fn reason_syscalls(forks: [u64; 4]) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = forks.iter().filter(|n| **n != NO_SYSCALL).map(|n| (*n, SC_FORK)).collect();
    let modify = [
        libc::SYS_mprotect,
        libc::SYS_pkey_mprotect,
        libc::SYS_madvise,
        libc::SYS_mlock,
        libc::SYS_mlock2,
        libc::SYS_munlock,
        libc::SYS_mlockall,
        libc::SYS_munlockall,
        libc::SYS_mbind,
        libc::SYS_prctl,
    ];
    v.extend(modify.iter().map(|n| (*n as u64, SC_MODIFY)));
    // process_madvise, set_mempolicy_home_node, mseal: one number on every architecture
    // since 424 (older libc crates lack the names).
    v.extend([440, 450, 462].map(|n| (n, SC_MODIFY)));
    v.extend(
        [
            (libc::SYS_execve, SC_EXEC),
            (libc::SYS_execveat, SC_EXEC),
            (libc::SYS_munmap, SC_MUNMAP),
            (libc::SYS_brk, SC_MUNMAP),
            (libc::SYS_mremap, SC_MREMAP),
            (libc::SYS_mmap, SC_MMAP),
        ]
        .map(|(n, c)| (n as u64, c)),
    );
    v
}

/// `Config::stack_fns` (`--stacks`): the functions whose reason only the caller tells
/// (anon_vma_clone's split, merge or mremap; a teardown's exit, munmap, mremap or merge).
pub fn stack_fns(stacks: bool) -> u32 {
    let told_by_caller = [SlabFn::AnonVmaClone, SlabFn::UnlinkAnonVmas, SlabFn::PutAnonVma];
    if stacks {
        told_by_caller.iter().fold(0, |bits, f| bits | 1 << f.index())
    } else {
        0
    }
}

/// Default ring buffer size in MiB, from the machine's online CPUs (the producers: BPF runs
/// wherever a traced task or the system's slab traffic runs, whatever lazyvma's own
/// affinity or quota) and what the ring carries.
/// * `trace`, any scope: 4 MiB per CPU, 16 at least, 256 at most. A scope's processes can
///   run on every CPU as well as the whole system can, and a fed model makes the reader
///   slower per record, so a scope gets no less. The fork+exit loop at full speed streams
///   ~60 MB/s from one CPU (33 KB per fork); 16 MiB holds ~270 ms of it while the reader is
///   off CPU (measured on 2 CPUs: 0 lost at 8 MiB even with the reader at nice 19).
/// * `serve` (`aggregated`): its certain slab events are counted in the kernel, the ring
///   carries process events and the rare uncertain frees: 1 MiB per CPU, 8 to 64.
pub fn default_ringbuf_mb(aggregated: bool) -> u32 {
    // SAFETY: sysconf has no preconditions.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    ringbuf_mb_for(if online > 0 { online as u32 } else { 1 }, aggregated)
}

fn ringbuf_mb_for(cpus: u32, aggregated: bool) -> u32 {
    let (per_cpu, min, max) = if aggregated { (1, 8, 64) } else { (4, 16, 256) };
    cpus.saturating_mul(per_cpu).next_power_of_two().clamp(min, max)
}

/// Wake the reader when a quarter of the ring waits (it also polls every few ms).
pub const WAKE_SHIFT: u32 = 2;

pub struct Loaded {
    /// Owns the programs and their links: dropping it detaches them. The maps were taken
    /// out, so they outlive it for the final drain.
    ebpf: Option<Ebpf>,
    /// `None` while a `keep_draining` thread holds it.
    ring: Option<RingBuf<MapData>>,
    /// The thread draining the ring while the caller is busy, and what it drained so far.
    draining: Option<Draining>,
    /// Records drained while the caller was busy, delivered first (in order) by the next
    /// `poll` / `drain`.
    backlog: Vec<Box<[u8]>>,
    counters: PerCpuArray<MapData, u64>,
    slab_counts: PerCpuArray<MapData, u64>,
    /// `trace`'s kernel counts (`AGG_TRACE`), until the tracer takes them.
    tally: Option<TallyMap>,
    front: Option<Front>,
    /// `category:name` of each tracepoint attached.
    pub attached: Vec<String>,
    /// Optional tracepoints that did not attach, with why.
    pub missing: Vec<(String, String)>,
    /// (tracepoint, why): its `tp_btf` program was refused and the classic one attached
    /// instead (the same records at more cost an event), said by `say_fallbacks`.
    pub fallbacks: Vec<(String, String)>,
}

/// [lowest start, highest end) of the functions found; [0, 0) (nothing) if none was.
fn fn_span(ranges: &[(u64, u64); FN_COUNT]) -> [u64; 2] {
    let found = ranges.iter().filter(|r| r.1 > r.0);
    let lo = found.clone().map(|r| r.0).min();
    let hi = found.map(|r| r.1).max();
    lo.zip(hi).map_or([0, 0], |(lo, hi)| [lo, hi])
}

pub fn load(cfg: &Config) -> anyhow::Result<Loaded> {
    let starts: [u64; FN_COUNT] = cfg.ranges.map(|r| r.0);
    let ends: [u64; FN_COUNT] = cfg.ranges.map(|r| r.1);
    let span = fn_span(&cfg.ranges);
    let offsets = PodOffsets(cfg.offsets);
    let hook_offsets = PodHookOffsets(cfg.hook_offsets);
    let syscall_ids = crate::load::syscalls::syscall_ids();
    let lock_fields = crate::trace::feed::order::lock_fields();
    let fault_fn = [cfg.fault_fn.0, cfg.fault_fn.1];
    let mut loader = EbpfLoader::new();
    for (name, value) in &cfg.btf_globals {
        loader.override_global(name, value, true);
    }
    loader.override_global("HOOK_OFFSETS", &hook_offsets, true);
    let lock_offsets = PodLockOffsets(cfg.locks.map_or(LockOffsets::UNSET, |l| l.offsets));
    loader.override_global("LOCK_OFFSETS", &lock_offsets, true);
    let ksm_offsets = crate::trace::counts::ksm::Pod(crate::trace::counts::ksm::offsets());
    loader.override_global("KSM_OFFSETS", &ksm_offsets, true);
    if let Some(l) = cfg.locks {
        loader.map_max_entries("LOCK_ANON_VMAS", l.set_entries);
    }
    loader
        .override_global("TRACE_TP_OFFSETS", &offsets, true)
        .override_global("TRACE_FN_START", &starts, true)
        .override_global("TRACE_FN_END", &ends, true)
        .override_global("TRACE_FN_SPAN", &span, true)
        .override_global("FEXIT_ARGS", &cfg.fexit_args, true)
        .override_global("TRACE_STACK_FNS", &cfg.stack_fns, true)
        .override_global("SYSCALL_IDS", &syscall_ids, true)
        .override_global("FEED_VM_FILE", &cfg.vm_file, true)
        .override_global("FEED_LOCK_FIELDS", &lock_fields, true)
        .override_global("PLACE_FAULT_FN", &fault_fn, true)
        .override_global("FEED_ARG_REGS", &cfg.arg_regs, true)
        .map_max_entries("TRACE_EVENTS", cfg.ringbuf_bytes);
    let scope = if cfg.traced.is_some() { SCOPE_TRACED } else { SCOPE_SYSTEM };
    let self_tgid = std::process::id();
    let ring_bytes = cfg.ringbuf_bytes as u64;
    let context = PodContext(cfg.context);
    let aggregate = cfg.aggregate.map_or(0, |a| a.mode);
    let front = u32::from(aggregate & AGG_TRACE != 0 && crate::trace::ingest::front::usable());
    let sizes: [u64; 2] = cfg.aggregate.map_or([NO_FIELD; 2], |a| [a.sizes.0, a.sizes.1]);
    let cache_fields: [u64; 2] = cfg.cache_fields.map_or([NO_FIELD; 2], |(o, s)| [o, s]);
    // The feed's prepare inside `trace_slab_alloc_btf`, if that one attaches (else the
    // classic `trace_prepare_vma`, below).
    let slab_prepare = u32::from(cfg.feed && cfg.cache_fields.is_some());
    let (object_slots, object_shift) = object_slots(cfg.traced.is_some() && cfg.cache_fields.is_some(), cfg.objects_max);
    loader
        .override_global("TRACE_SCOPE", &scope, true)
        .override_global("TRACE_SELF_TGID", &self_tgid, true)
        .override_global("TRACE_WAKE_SHIFT", &cfg.wake_shift, true)
        .override_global("TRACE_RING_BYTES", &ring_bytes, true)
        .override_global("TRACE_CONTEXT", &context, true)
        .override_global("TRACE_AGGREGATE", &aggregate, true)
        .override_global("TRACE_FRONT", &front, true)
        .override_global("TRACE_SIZES", &sizes, true)
        .override_global("TRACE_CACHE_FIELDS", &cache_fields, true)
        .override_global("TRACE_SLAB_PREPARE", &slab_prepare, true)
        .map_max_entries("TRACE_TALLY", cfg.aggregate.map_or(1, |a| a.tally_entries.max(1)))
        .map_max_entries("TRACE_OBJECTS", if cfg.traced.is_some() { cfg.objects_max.max(1) } else { 1 })
        .override_global("TRACE_OBJECT_SHIFT", &object_shift, true)
        .map_max_entries("OBJECT_SLOTS", object_slots)
        .map_max_entries("OBJECT_OWNERS", object_slots);
    let mut bpf = loader.load(ebpf::object()).map_err(|e| anyhow::anyhow!("loading the BPF object: {}", chain(&e)))?;
    // Its own parse of the kernel's BTF (`EbpfLoader::new`) goes now, not after attaching.
    drop(loader);
    if let Some(t) = &cfg.traced {
        insert_traced(&mut bpf, t)?;
    }
    let mut attached = Vec::new();
    let mut fallbacks = Vec::new();
    let mut missing = Vec::new();
    let mut prepare_in_slab = false;
    for &(prog, cat, name, required) in PROGRAMS {
        let tp = format!("{cat}:{name}");
        match attach(&mut bpf, prog, cat, name, btf_variant(prog, cfg).zip(cfg.kernel_btf.as_deref())) {
            Ok(Attached { btf, refused }) => {
                prepare_in_slab |= btf && prog == "trace_slab_alloc" && slab_prepare != 0;
                fallbacks.extend(refused.map(|why| (tp.clone(), why)));
                attached.push(tp)
            }
            Err(e) if required => bail!("tracepoint {tp}: {e}"),
            Err(e) => missing.push((tp, e)),
        }
    }
    for &(prog, cat, name) in FEED_PROGRAMS.iter().filter(|_| cfg.feed) {
        let tp = format!("{cat}:{name}");
        if prog == "trace_mmap_lock" && lock_fields.contains(&lazyvma_model::trace_abi::NO_FIELD) {
            let why = match crate::trace::ingest::format::Format::read("mmap_lock:mmap_lock_acquire_returned") {
                Err(_) => "tracepoint absent (mmap_lock tracepoints came in 5.11): syscalls are ordered by their exit, not by their mmap_lock",
                Ok(_) => "no `write`/`success` field in its format",
            };
            missing.push((tp, format!("{why}; the model is not fed what it needs")));
            continue;
        }
        if prog == "trace_prepare_vma" && prepare_in_slab {
            attached.push(tp);
            continue;
        }
        match attach(&mut bpf, prog, cat, name, btf_variant(prog, cfg).zip(cfg.kernel_btf.as_deref())) {
            Ok(Attached { refused, .. }) => {
                fallbacks.extend(refused.map(|why| (tp.clone(), why)));
                attached.push(tp)
            }
            Err(e) => missing.push((tp, format!("{e}; the model is not fed what it needs"))),
        }
    }
    let ring = RingBuf::try_from(bpf.take_map("TRACE_EVENTS").context("map TRACE_EVENTS missing from the BPF object")?)?;
    let counters = PerCpuArray::try_from(bpf.take_map("TRACE_COUNTERS").context("map TRACE_COUNTERS missing from the BPF object")?)?;
    let slab_counts = PerCpuArray::try_from(bpf.take_map("SLAB_COUNTS").context("map SLAB_COUNTS missing from the BPF object")?)?;
    let tally = bpf.take_map("TRACE_TALLY").context("map TRACE_TALLY missing from the BPF object")?;
    let tally = (aggregate & AGG_TRACE != 0).then(|| PerCpuHashMap::try_from(tally)).transpose()?;
    let front_map = bpf.take_map("TALLY_FRONT").context("map TALLY_FRONT missing from the BPF object")?;
    // Only where the programs use it: nothing to flush or read otherwise.
    let front = (front != 0).then(|| PerCpuArray::try_from(front_map)).transpose()?;
    Ok(Loaded { ebpf: Some(bpf), ring: Some(ring), draining: None, backlog: Vec::new(), counters, slab_counts, tally, front, attached, missing, fallbacks })
}

/// Programs with a variant for older kernels, attached when the kernel refuses the first:
/// slab alloc and free without `bpf_task_pt_regs` (5.15), sys_exit without `bpf_loop` (5.17).
const OLDER_KERNEL_VARIANTS: &[(&str, &str)] =
    &[("trace_slab_alloc", "trace_slab_alloc_plain"), ("trace_slab_free", "trace_slab_free_plain"), ("trace_sys_exit", "trace_sys_exit_plain")];

/// `tp_btf` programs with a variant for older kernels, tried when the kernel refuses the
/// first: sys_exit without `bpf_loop` (5.17).
const BTF_OLDER_VARIANTS: &[(&str, &str)] = &[("trace_sys_exit_btf", "trace_sys_exit_btf_plain")];

/// The `tp_btf` program tried before classic tracepoint program `prog`, where this kernel's
/// prototype is the one it reads (`sched.rs`, `syscall.rs`) and its BTF offsets are known.
fn btf_variant(prog: &str, cfg: &Config) -> Option<&'static str> {
    let pid = cfg.context.task_pid != NO_FIELD;
    match prog {
        "trace_fork" if pid => Some("trace_fork_btf"),
        "trace_newtask" if pid => Some("trace_newtask_btf"),
        "trace_exec" => Some("trace_exec_btf"),
        // 6.1+ (`Config::cache_fields`): the cache tells every object's kind; before, bytes_req
        // was an argument of kmem_cache_alloc (and the record had no `node`).
        "trace_slab_alloc" if cfg.cache_fields.is_some() => Some("trace_slab_alloc_btf"),
        "trace_slab_free" if cfg.cache_fields.is_some() => Some("trace_slab_free_btf"),
        "trace_sys_enter" if cfg.arg_regs.iter().all(|o| *o != NO_FIELD) => Some("trace_sys_enter_btf"),
        "trace_sys_exit" if cfg.context.regs_syscall != NO_FIELD => Some("trace_sys_exit_btf"),
        "trace_user_fault" => Some("trace_user_fault_btf"),
        "trace_kernel_fault" => Some("trace_kernel_fault_btf"),
        // The classic record has `group_dead` exactly when the prototype has the argument.
        "trace_exit" if cfg.offsets.exit_group_dead != NO_FIELD => Some("trace_exit_btf_dead"),
        "trace_exit" => Some("trace_exit_btf"),
        _ => None,
    }
}

/// Every `tp_btf` program and the tracepoint it attaches to (`doctor` loads them).
pub const BTF_PROGRAMS: &[(&str, &str)] = &[
    ("trace_fork_btf", "sched_process_fork"),
    ("trace_newtask_btf", "task_newtask"),
    ("trace_exec_btf", "sched_process_exec"),
    ("trace_exit_btf", "sched_process_exit"),
    ("trace_exit_btf_dead", "sched_process_exit"),
    ("trace_sys_enter_btf", "sys_enter"),
    ("trace_sys_exit_btf", "sys_exit"),
    ("trace_sys_exit_btf_plain", "sys_exit"),
    ("trace_user_fault_btf", "page_fault_user"),
    ("trace_kernel_fault_btf", "page_fault_kernel"),
    ("trace_slab_alloc_btf", "kmem_cache_alloc"),
    ("trace_slab_free_btf", "kmem_cache_free"),
];

/// Why `trace` would not try `tp_btf` program `prog` on this kernel (another prototype), if so.
pub fn btf_unused(prog: &str) -> Option<String> {
    let has = |tp: &str, f: &str| crate::trace::ingest::format::Format::read(tp).is_ok_and(|fmt| fmt.get(f).is_some());
    let absent = |tp: &str| !crate::load::probe::has_tracepoint(tp);
    match prog {
        "trace_user_fault_btf" | "trace_kernel_fault_btf" if absent("exceptions:page_fault_user") => {
            Some("not used: this kernel has no exceptions:page_fault_* tracepoints (x86 only; prepares come from the __anon_vma_prepare hook)".into())
        }
        "trace_exit_btf" if has("sched:sched_process_exit", "group_dead") => {
            Some("not used: this kernel's sched_process_exit has group_dead (trace_exit_btf_dead)".into())
        }
        "trace_exit_btf_dead" if !has("sched:sched_process_exit", "group_dead") => {
            Some("not used: this kernel's sched_process_exit has no group_dead (trace_exit_btf)".into())
        }
        "trace_slab_alloc_btf" | "trace_slab_free_btf" if !has("kmem:kmem_cache_alloc", "node") => {
            Some("not used: kmem_cache_alloc's arguments before 6.1 (the classic trace_prepare_vma)".into())
        }
        _ => None,
    }
}

/// What `attach` attached: the `tp_btf` variant, or the classic program and why the
/// `tp_btf` one (if tried) was refused.
struct Attached {
    btf: bool,
    refused: Option<String>,
}

/// `prog` (its `tp_btf` variant first, given the kernel's BTF), else its older kernels'
/// variant; the error names every refusal. A refused `tp_btf` falls back to the classic
/// tracepoint (the records are the same) and says why in `Attached::refused`.
fn attach(bpf: &mut Ebpf, prog: &str, cat: &str, name: &str, btf: Option<(&str, &Btf)>) -> Result<Attached, String> {
    let mut refused = None;
    if let Some((variant, btf)) = btf {
        match attach_btf(bpf, variant, name, btf) {
            Ok(()) => return Ok(Attached { btf: true, refused: None }),
            Err(e) => refused = Some(e),
        }
        if let Some((_, older)) = BTF_OLDER_VARIANTS.iter().find(|(p, _)| *p == variant) {
            match attach_btf(bpf, older, name, btf) {
                Ok(()) => return Ok(Attached { btf: true, refused: None }),
                Err(e) => refused = refused.map(|r| format!("{r}; its variant for older kernels: {e}")),
            }
        }
    }
    let classic = attach_one(bpf, prog, cat, name).or_else(|e| match OLDER_KERNEL_VARIANTS.iter().find(|(p, _)| *p == prog) {
        Some((_, variant)) => attach_one(bpf, variant, cat, name).map_err(|e2| format!("{e}; its variant for older kernels: {e2}")),
        None => Err(e),
    });
    classic.map(|()| Attached { btf: false, refused })
}

/// One line on stderr for each `tp_btf` program this kernel refused: the run goes on with
/// the classic tracepoint (same records), but every event costs more than it should.
pub fn say_fallbacks(loaded: &Loaded) {
    for (tp, why) in &loaded.fallbacks {
        let why = why.lines().next().unwrap_or("");
        eprintln!(
            "lazyvma: note: {tp}: the tp_btf program was refused ({}); its classic tracepoint program runs instead (the same records, more cost an event)",
            crate::escape::ctl(why)
        );
    }
}

fn attach_btf(bpf: &mut Ebpf, prog: &str, name: &str, btf: &Btf) -> Result<(), String> {
    let p: &mut BtfTracePoint =
        bpf.program_mut(prog).ok_or_else(|| format!("program {prog} missing from the BPF object"))?.try_into().map_err(|e| format!("program {prog}: {e}"))?;
    p.load(name, btf).map_err(|e| format!("loading {prog}: {}", chain(&e)))?;
    if let Err(e) = p.attach() {
        let _ = p.unload();
        return Err(format!("attaching {prog}: {}", chain(&e)));
    }
    Ok(())
}

fn attach_one(bpf: &mut Ebpf, prog: &str, cat: &str, name: &str) -> Result<(), String> {
    let p: &mut TracePoint =
        bpf.program_mut(prog).ok_or_else(|| format!("program {prog} missing from the BPF object"))?.try_into().map_err(|e| format!("program {prog}: {e}"))?;
    p.load().map_err(|e| format!("loading {prog}: {}", chain(&e)))?;
    p.attach(cat, name).map_err(|e| format!("attaching {prog}: {}", chain(&e)))?;
    Ok(())
}

/// How often the `keep_draining` thread looks at the ring when nothing woke it.
const DRAIN_TICK: Duration = Duration::from_millis(5);

/// What the drain thread hands back: the ring and the records it read.
type Drained = Option<(RingBuf<MapData>, Vec<Box<[u8]>>)>;

struct Draining {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Drained>,
}

/// Wait up to `timeout` for the ring to have records (or a signal).
fn wait(ring: &RingBuf<MapData>, timeout: Duration) {
    let mut pfd = libc::pollfd { fd: ring.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd; EINTR (a signal) just ends the wait early.
    unsafe { libc::poll(&mut pfd, 1, timeout.as_millis().min(i32::MAX as u128) as i32) };
}

fn insert_traced(bpf: &mut Ebpf, tgids: &[u32]) -> anyhow::Result<()> {
    let map = bpf.map_mut("FEED_TRACED").context("map FEED_TRACED missing from the BPF object")?;
    let mut m: aya::maps::HashMap<_, u32, u8> = aya::maps::HashMap::try_from(map)?;
    // lazyvma never traces itself (`-p 1` has it as a descendant).
    for t in tgids.iter().filter(|t| **t != std::process::id()) {
        m.insert(t, 1, 0).with_context(|| format!("FEED_TRACED: inserting {t}"))?;
    }
    Ok(())
}

impl Loaded {
    /// More processes of a scoped trace (their records are sent, their forks join in BPF).
    pub fn feed_traced(&mut self, tgids: &[u32]) -> anyhow::Result<()> {
        insert_traced(self.ebpf_mut(), tgids)
    }

    /// The object, to attach the function hooks to (`trace::attach`).
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        self.ebpf.as_mut().expect("attached before detach")
    }

    /// Detach every program: after this no event is sent, so a final drain sees them all and
    /// received = sent holds exactly (a lost record was never sent).
    pub fn detach(&mut self) {
        self.ebpf = None;
    }

    /// Wait up to `timeout` for records, then hand every available one to `f`.
    pub fn poll(&mut self, timeout: Duration, mut f: impl FnMut(&[u8])) {
        self.resume();
        if self.backlog.is_empty() {
            if let Some(ring) = &self.ring {
                wait(ring, timeout);
            }
        }
        self.drain(&mut f);
    }

    pub fn drain(&mut self, f: &mut impl FnMut(&[u8])) {
        self.resume();
        for item in self.backlog.drain(..) {
            f(&item);
        }
        if let Some(ring) = self.ring.as_mut() {
            while let Some(item) = ring.next() {
                f(&item);
            }
        }
    }

    /// Keep the ring buffer drained while the caller does something long (seeding,
    /// attaching, a snapshot pass): a thread copies every record into memory, in order,
    /// until the next `poll`, `drain` or `resume`, which deliver them first. The programs
    /// never find the ring full because its reader is busy. Idempotent.
    pub fn keep_draining(&mut self) {
        if self.draining.is_some() {
            return;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        // The ring goes to the thread only once it runs: if it cannot start, it stays here.
        let (tx, rx) = std::sync::mpsc::channel::<RingBuf<MapData>>();
        let thread = std::thread::Builder::new().name("drain".into()).spawn(move || {
            let mut got = Vec::new();
            let mut ring = rx.recv().ok()?;
            loop {
                // Read the flag first: after it is set one more pass empties the ring.
                let last = flag.load(Ordering::SeqCst);
                while let Some(item) = ring.next() {
                    got.push(Box::<[u8]>::from(&*item));
                }
                if last {
                    return Some((ring, got));
                }
                wait(&ring, DRAIN_TICK);
            }
        });
        match (thread, self.ring.take()) {
            (Ok(thread), Some(ring)) => {
                let _ = tx.send(ring);
                self.draining = Some(Draining { stop, thread });
            }
            (Ok(_), None) => {}
            // Out of threads: the caller's own polls still drain it, later.
            (Err(e), ring) => {
                self.ring = ring;
                eprintln!("lazyvma: cannot start a ring buffer drain thread: {e}");
            }
        }
    }

    /// Take the ring back from the `keep_draining` thread (its records wait in the backlog).
    pub fn resume(&mut self) {
        let Some(d) = self.draining.take() else { return };
        d.stop.store(true, Ordering::SeqCst);
        match d.thread.join() {
            Ok(Some((ring, got))) => {
                self.ring = Some(ring);
                self.backlog.extend(got);
            }
            _ => eprintln!("lazyvma: the ring buffer drain thread failed; its records are lost"),
        }
    }

    fn counter(&self, slot: u32) -> anyhow::Result<u64> {
        Ok(self.counters.get(&slot, 0).context("reading TRACE_COUNTERS")?.iter().sum())
    }

    /// (sent, lost) summed over CPUs.
    pub fn counters(&self) -> anyhow::Result<(u64, u64)> {
        Ok((self.counter(CTR_SENT)?, self.counter(CTR_LOST)?))
    }

    /// The kernel's slab counts (`Config::aggregate`), per `agg_slot`, summed over CPUs.
    pub fn slab_counts(&self) -> anyhow::Result<Vec<u64>> {
        (0..AGG_SLOTS).map(|s| Ok(self.slab_counts.get(&s, 0).context("reading SLAB_COUNTS")?.iter().sum())).collect()
    }

    /// `trace`'s kernel counts, for the tracer to read as it goes.
    pub fn take_tally(&mut self) -> Option<TallyMap> {
        self.tally.take()
    }

    pub fn take_front(&mut self) -> Option<Front> {
        self.front.take()
    }

    /// Slab events sent because `TRACE_TALLY` was full (counted all the same).
    pub fn tally_full(&self) -> u64 {
        self.counter(CTR_TALLY_FULL).unwrap_or(0)
    }

    /// Objects a scoped trace could not remember (its set was full): their frees from
    /// untraced contexts went unseen.
    pub fn objects_full(&self) -> u64 {
        self.counter(CTR_OBJECTS_FULL).unwrap_or(0)
    }
}

/// `TRACE_TALLY`: the kernel's per (process, slot, marker generation) slab counts.
pub type TallyMap = PerCpuHashMap<MapData, PodKey, u64>;

/// Every key and its count summed over CPUs. Keys are never deleted while the programs
/// run, so a walk racing with inserts misses none that existed when it began.
pub fn read_tally(map: &TallyMap) -> Vec<(TallyKey, u64)> {
    map.iter().filter_map(Result::ok).map(|(k, v)| (k.0, v.iter().sum())).collect()
}

/// `TALLY_FRONT`: what each CPU counted of a key and has not yet added to `TRACE_TALLY`.
pub type Front = PerCpuArray<MapData, PodFront>;

/// A `TALLY_FRONT` entry as aya reads it.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct PodFront(pub TallyFront);
// SAFETY: TallyFront is #[repr(C)], a TallyKey and a u64, no padding.
unsafe impl aya::Pod for PodFront {}

/// Every CPU's entries that hold a count. Only once the programs are detached: while one
/// runs, its CPU's entry may be read half-written.
pub fn read_front(front: &Front) -> Vec<(TallyKey, u64)> {
    let mut out = Vec::new();
    for i in 0..FRONT_SLOTS {
        let Ok(per_cpu) = front.get(&i, 0) else { continue };
        out.extend(per_cpu.iter().filter(|e| e.0.count > 0).map(|e| (e.0.key, e.0.count)));
    }
    out
}

/// One key's count summed over CPUs; None if the map has no such key.
pub fn tally_count(map: &TallyMap, key: TallyKey) -> Option<u64> {
    map.get(&PodKey(key), 0).ok().map(|v| v.iter().sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_size_grows_with_cpus_within_bounds() {
        assert_eq!(ringbuf_mb_for(1, false), 16);
        assert_eq!(ringbuf_mb_for(2, false), 16);
        assert_eq!(ringbuf_mb_for(8, false), 32);
        assert_eq!(ringbuf_mb_for(48, false), 256);
        assert_eq!(ringbuf_mb_for(1024, false), 256);
        assert_eq!(ringbuf_mb_for(2, true), 8);
        assert_eq!(ringbuf_mb_for(32, true), 32);
        assert_eq!(ringbuf_mb_for(512, true), 64);
    }

    #[test]
    fn object_slots_are_a_power_of_two_with_its_shift() {
        assert_eq!(object_slots(false, 1 << 18), (1, 0));
        assert_eq!(object_slots(true, 1 << 18), (1 << 19, 45));
        assert_eq!(object_slots(true, 100_000), (1 << 18, 46));
        assert_eq!(object_slots(true, 1), (1 << 10, 54));
    }

    #[test]
    fn reason_syscalls_fit_and_are_distinct() {
        let v = reason_syscalls([1, 2, 3, NO_SYSCALL]);
        assert!(v.len() <= CTX_SYSCALLS, "{} syscalls, {CTX_SYSCALLS} slots", v.len());
        let ids: std::collections::HashSet<u64> = v.iter().map(|(n, _)| *n).collect();
        assert_eq!(ids.len(), v.len());
    }
}
