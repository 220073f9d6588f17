//! `kmem:kmem_cache_alloc/free` restricted to objects allocated or freed from the rmap.c
//! functions of `FUNCTIONS` (attribution by `call_site`, spec §4.1). Never by cache name:
//! the anon_vma_chain cache is merged with other 64-byte caches. Userspace tells anon_vma
//! from anon_vma_chain by `bytes_req` and by function. anon_vmas also enter and leave
//! `lock.rs`'s set here. Scope first: after the call-site check (no map work), a scoped
//! trace drops any other process's event with one lookup. `trace` counts in the kernel
//! (`TRACE_TALLY`) what userspace only sums; only what the model, a recording or a stack
//! needs goes through the ring buffer. `tp_btf` where the kernel has it (no tracepoint
//! record is built, and the cache tells a free's kind), classic tracepoints otherwise.
use crate::emit::{emit, field, free_owner, global, is_traced, offset, own_object, scoped, TRACE_SELF_TGID};
use aya_ebpf::{
    cty::c_void,
    helpers::{
        bpf_get_current_pid_tgid, bpf_ktime_get_ns,
        generated::bpf_get_stack,
    },
    macros::{btf_tracepoint, map, tracepoint},
    maps::{Array, LruHashMap, PerCpuArray, PerCpuHashMap},
    programs::{BtfTracePointContext, TracePointContext},
    EbpfContext,
};
use lazyvma_model::trace_abi::{
    agg_slot, SlabEvent, TallyFront, TallyKey, AGG_KINDS, FRONT_BATCH, FRONT_SLOTS, AGG_SERVE, AGG_SLOTS, AGG_STREAM_PREPARE, TraceEvent, CTR_LOST, CTR_SENT, CTR_TALLY_FULL, EV_ALLOC, EV_FREE,
    EV_SLAB_ALLOC, EV_SLAB_FREE, FN_COUNT, FN_FORK, FN_PREPARE, FN_PUT, FN_UNLINK, NO_FIELD, STACK_DEPTH, WHY_FAILED_FORK, WHY_FORK,
};

/// [start, end) of each function, from /proc/kallsyms; 0/0 never matches.
#[unsafe(no_mangle)]
static TRACE_FN_START: [u64; FN_COUNT] = [0; FN_COUNT];
#[unsafe(no_mangle)]
static TRACE_FN_END: [u64; FN_COUNT] = [0; FN_COUNT];
/// [lowest start, highest end) of those functions (all in mm/rmap.c): most slab events of
/// a machine come from elsewhere and leave after two compares instead of the whole table.
#[unsafe(no_mangle)]
static TRACE_FN_SPAN: [u64; 2] = [0; 2];
/// Bit i set: take the kernel stack for events from function i (its caller tells why).
#[unsafe(no_mangle)]
static TRACE_STACK_FNS: u32 = 0;

#[inline(always)]
pub(crate) fn function_of(call_site: u64) -> Option<u32> {
    // SAFETY: read-only global patched by the loader.
    let [lo, hi] = unsafe { core::ptr::read_volatile(&TRACE_FN_SPAN) };
    if call_site < lo || call_site >= hi {
        return None;
    }
    let mut i = 0;
    while i < FN_COUNT {
        // SAFETY: read-only globals patched by the loader.
        let (s, e) = unsafe { (core::ptr::read_volatile(&TRACE_FN_START[i]), core::ptr::read_volatile(&TRACE_FN_END[i])) };
        if call_site >= s && call_site < e {
            return Some(i as u32);
        }
        i += 1;
    }
    None
}

/// `AGG_*` bits: count in the kernel what needs no stack and whose kind is certain, send
/// nothing for it. 0: send every event (`-o`, `--ops`).
#[unsafe(no_mangle)]
static TRACE_AGGREGATE: u32 = 0;
/// object_size of anon_vma and anon_vma_chain (the kind of an allocation).
#[unsafe(no_mangle)]
static TRACE_SIZES: [u64; 2] = [NO_FIELD; 2];
/// `kmem_cache.object_size` and `.size` from BTF, for the `tp_btf` programs.
#[unsafe(no_mangle)]
static TRACE_CACHE_FIELDS: [u64; 2] = [NO_FIELD; 2];

/// `serve`'s totals (`AGG_SERVE`).
#[map]
static SLAB_COUNTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(AGG_SLOTS, 0);

/// `trace`'s counts (`AGG_TRACE`): (process, slot, marker generation) → count on this CPU.
/// Preallocated, sized by `trace`; a full map sends the event instead (`CTR_TALLY_FULL`).
#[map]
static TRACE_TALLY: PerCpuHashMap<TallyKey, u64> = PerCpuHashMap::with_max_entries(1, 0);

/// Phase markers sent so far (`marker.rs`): a `TRACE_TALLY` key's generation orders its
/// counts against the markers, so userspace tells each count's phase exactly.
#[map]
pub static TRACE_GEN: Array<u64> = Array::with_max_entries(1, 0);

/// The generation a new marker starts. Markers are rare (a workload's phases, a seed's
/// brackets); two on two CPUs in the same instant may share one, each naming only its own
/// process's phase.
#[inline(always)]
pub fn next_gen() -> u64 {
    let Some(p) = TRACE_GEN.get_ptr_mut(0) else { return 0 };
    // SAFETY: the array's one slot.
    unsafe {
        let g = *p + 1;
        *p = g;
        g
    }
}

/// Threads whose fork allocations `TRACE_TALLY` counted since their last failed fork's
/// teardown: that teardown's first free (a free inside a fork syscall, streamed) carries
/// `WHY_FAILED_FORK`, so userspace, which saw none of the allocations, counts each failed
/// fork once. A successful fork leaves its thread here: the next teardown of that thread
/// follows its next fork's allocations all the same.
#[map]
static FORK_TALLIED: LruHashMap<u32, u8> = LruHashMap::with_max_entries(16384, 0);

const BPF_NOEXIST: u64 = 1;
const EEXIST: i64 = 17;

/// Counted in the kernel: the kind is known (`kind` < 2) and the mode counts it. `at`: the
/// process it counts at; `owned`: a scoped trace's object allocated inside the trace (a
/// free of one from before goes to userspace, which knows the command's launcher);
/// `regs`: the syscall in progress is known (`bpf_task_pt_regs`, 5.15+, and its offset).
#[inline(always)]
fn aggregated(at: u32, func: u32, alloc: bool, kind: u32, why: u32, owned: bool, regs: bool) -> bool {
    let mode = global(&TRACE_AGGREGATE);
    if mode == 0 || kind >= AGG_KINDS {
        return false;
    }
    let slot = agg_slot(func, alloc, kind, why);
    if mode & AGG_SERVE != 0 {
        if let Some(p) = SLAB_COUNTS.get_ptr_mut(slot) {
            // SAFETY: this CPU's slot; a BPF program does not migrate while it runs.
            unsafe { *p += 1 };
        }
        return true;
    }
    // Without the syscall a failed fork's teardown (`WHY_FORK` free) is not told from the
    // rest: `trace` streams, its userspace tracker pairing the thread's fork allocations
    // with its frees. The teardown itself always streams (rare, and told per thread).
    if !owned || (func == FN_PREPARE && mode & AGG_STREAM_PREPARE != 0) || !regs || (!alloc && why == WHY_FORK) {
        return false;
    }
    // SAFETY: the array's one slot, read only.
    let gen = TRACE_GEN.get(0).map_or(0, |g| unsafe { core::ptr::read_volatile(g) });
    let key = TallyKey { tgid: at, slot, gen };
    if if global(&TRACE_FRONT) != 0 { front_add(key) } else { tally_add(&key, 1) } {
        return true;
    }
    crate::emit::bump(CTR_TALLY_FULL);
    false
}

/// Whether `TALLY_FRONT` is used: lazyvma can run on every online CPU to flush it.
#[unsafe(no_mangle)]
static TRACE_FRONT: u32 = 0;

/// `TRACE_TALLY`'s front on this CPU (`TallyFront`).
#[map]
static TALLY_FRONT: PerCpuArray<TallyFront> = PerCpuArray::with_max_entries(FRONT_SLOTS, 0);

/// The key's entry in the front: its process and slot mixed, so a parent's fork
/// allocations and its children's exit frees mostly keep entries of their own.
#[inline(always)]
fn front_index(key: &TallyKey) -> u32 {
    ((key.tgid.wrapping_mul(0x9e37_79b1) >> 28) ^ key.slot) & (FRONT_SLOTS - 1)
}

/// One event of `key`, counted in the front; false: neither the front nor the map has
/// room (the map is full and the entry's key is another), the event is to be sent.
#[inline(always)]
fn front_add(key: TallyKey) -> bool {
    let Some(f) = TALLY_FRONT.get_ptr_mut(front_index(&key)) else { return tally_add(&key, 1) };
    // SAFETY: this CPU's entry; a BPF program does not migrate while it runs, and no other
    // runs on this CPU meanwhile (tracepoints run with preemption off; none of these
    // functions frees or allocates in interrupts).
    unsafe {
        let count = (*f).count;
        if count != 0 && (*f).key == key {
            // At the batch the map takes it; if full, the front keeps counting.
            if count + 1 >= FRONT_BATCH && tally_add(&key, count + 1) {
                (*f).count = 0;
            } else {
                (*f).count = count + 1;
            }
            return true;
        }
        if count != 0 {
            let old = (*f).key;
            if !tally_add(&old, count) {
                return false;
            }
        }
        (*f).key = key;
        (*f).count = 1;
    }
    true
}

/// `n` more of `key` in `TRACE_TALLY`; false: the map is full.
#[inline(always)]
fn tally_add(key: &TallyKey, n: u64) -> bool {
    for _ in 0..2 {
        if let Some(p) = TRACE_TALLY.get_ptr_mut(key) {
            // SAFETY: this CPU's value; a BPF program does not migrate while it runs.
            unsafe { *p += n };
            return true;
        }
        match TRACE_TALLY.insert(key, &n, BPF_NOEXIST) {
            Ok(()) => return true,
            // Another CPU made the key first: count in this CPU's value.
            Err(e) if e as i64 == -EEXIST => continue,
            Err(_) => break,
        }
    }
    false
}

/// Every entry of this CPU's front into the map (`MARKER_FLUSH_FRONT`); one the full map
/// cannot take stays, for userspace to read once the programs are detached.
#[inline(never)]
pub fn flush_front() {
    let mut i = 0;
    while i < FRONT_SLOTS {
        if let Some(f) = TALLY_FRONT.get_ptr_mut(i) {
            // SAFETY: this CPU's entry (see `front_add`).
            unsafe {
                let (key, count) = ((*f).key, (*f).count);
                if count != 0 && tally_add(&key, count) {
                    (*f).count = 0;
                }
            }
        }
        i += 1;
    }
}

/// Whether `why` can tell the syscall in progress (else a teardown in a fork is `WHY_FUNCTION`).
#[inline(always)]
fn syscall_known(regs: bool) -> bool {
    regs && crate::why::context(|c| &c.regs_syscall) != NO_FIELD
}

#[inline(always)]
fn current_tid() -> u32 {
    bpf_get_current_pid_tgid() as u32
}

/// Bumped by every `FORK_TALLIED` removal (a failed fork's teardown, rare).
#[map]
static FORK_EPOCH: Array<u64> = Array::with_max_entries(1, 0);
/// This CPU's last thread marked in `FORK_TALLIED`, the epoch it was marked in, and the
/// hits since: a fork's hundreds of allocations mark their thread once, with no hash
/// lookup after, but every `FORK_RECHECK`th: that lookup keeps the entry fresh in the LRU
/// (a thread forking only on this CPU would otherwise age out under others' forks).
#[map]
static FORK_MARKED: PerCpuArray<[u64; 3]> = PerCpuArray::with_max_entries(1, 0);
const FORK_RECHECK: u64 = 256;

#[inline(always)]
fn fork_epoch() -> u64 {
    // SAFETY: the array's one slot, read only.
    FORK_EPOCH.get(0).map_or(0, |e| unsafe { core::ptr::read_volatile(e) })
}

/// This thread's fork allocation went to `TRACE_TALLY`. A removal bumps the epoch before
/// any later mark can be remembered, so a remembered mark is always still in the map: the
/// thread's own teardown (the only remover of its entry) runs on one CPU at a time.
#[inline(always)]
fn tallied_fork(tid: u32) {
    let epoch = fork_epoch();
    let marked = FORK_MARKED.get_ptr_mut(0);
    if let Some(m) = marked {
        // SAFETY: this CPU's value.
        unsafe {
            if (*m)[0] == u64::from(tid) + 1 && (*m)[1] == epoch && (*m)[2] < FORK_RECHECK {
                (*m)[2] += 1;
                return;
            }
        }
    }
    // SAFETY: only presence is read.
    if unsafe { FORK_TALLIED.get(&tid) }.is_none() && FORK_TALLIED.insert(&tid, &1, 0).is_err() {
        return;
    }
    if let Some(m) = marked {
        // SAFETY: this CPU's value.
        unsafe { *m = [u64::from(tid) + 1, epoch, 0] };
    }
}

/// A failed fork's teardown: whether the thread's fork allocations were tallied (its
/// mark is taken, and every CPU's remembered mark forgotten).
#[inline(always)]
fn untally_fork(tid: u32) -> bool {
    if FORK_TALLIED.remove(&tid).is_err() {
        return false;
    }
    if let Some(e) = FORK_EPOCH.get_ptr_mut(0) {
        // SAFETY: the array's one slot; concurrent removals each add one.
        unsafe { core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::SeqCst }>(e, 1) };
    }
    true
}

#[inline(always)]
fn alloc_kind(bytes_req: u64) -> u32 {
    // SAFETY: a read-only global patched by the loader.
    let [av, avc] = unsafe { core::ptr::read_volatile(&TRACE_SIZES) };
    if bytes_req == av { 0 } else if bytes_req == avc { 1 } else { AGG_KINDS }
}

/// Whether this event's reason needs the kernel stack (its function's caller tells why).
#[inline(always)]
fn wants_stack(func: u32) -> bool {
    // SAFETY: read-only global patched by the loader.
    let want = unsafe { core::ptr::read_volatile(&TRACE_STACK_FNS) };
    want & (1 << func) != 0
}

#[inline(always)]
fn stack(ctx: *mut c_void, ev: &mut TraceEvent) {
    let buf = ev.frames.as_mut_ptr().cast();
    // SAFETY: `frames` is STACK_DEPTH u64s of ring buffer memory; flags 0 = kernel stack.
    ev.stack_bytes = unsafe { bpf_get_stack(ctx, buf, (STACK_DEPTH * 8) as u32, 0) };
}

/// The slim record: a third of the full one, no stack. `tgid`: where it counts (a scoped
/// trace's free from elsewhere names the allocating process).
#[inline(always)]
fn emit_slim(alloc: bool, tgid: u32, func: u32, why: u32, ptr: u64, call_site: u64, bytes_req: u64, bytes_alloc: u64) {
    let Some(mut slot) = crate::emit::TRACE_EVENTS.reserve::<SlabEvent>(0) else {
        crate::emit::bump(CTR_LOST);
        return;
    };
    let id = bpf_get_current_pid_tgid();
    // SAFETY: ktime has no preconditions.
    let ktime = unsafe { bpf_ktime_get_ns() };
    slot.write(SlabEvent {
        kind: if alloc { EV_SLAB_ALLOC } else { EV_SLAB_FREE },
        pid: id as u32,
        tgid,
        func,
        ktime,
        ptr,
        call_site,
        bytes_req,
        bytes_alloc,
        why,
        pad: 0,
    });
    slot.submit(crate::emit::wake_flags());
    crate::emit::bump(CTR_SENT);
}

/// With the fork check (`bpf_task_pt_regs`, 5.15+).
#[tracepoint]
pub fn trace_slab_alloc(ctx: TracePointContext) -> u32 {
    slab_alloc_tp(&ctx, true)
}

/// Where `bpf_task_pt_regs` is refused (before 5.15): a clone's reason only with `--stacks`.
#[tracepoint]
pub fn trace_slab_alloc_plain(ctx: TracePointContext) -> u32 {
    slab_alloc_tp(&ctx, false)
}

#[inline(always)]
fn slab_alloc_tp(ctx: &TracePointContext, regs: bool) -> u32 {
    let call_site: u64 = field(ctx, offset(|o| &o.alloc_call_site));
    let Some(func) = function_of(call_site) else { return 0 };
    let ptr = || field(ctx, offset(|o| &o.alloc_ptr));
    let sizes = || (field(ctx, offset(|o| &o.alloc_bytes_req)), field(ctx, offset(|o| &o.alloc_bytes_alloc)));
    slab_alloc(ctx.as_ptr(), func, call_site, regs, false, ptr, sizes)
}

/// `tp_btf` argument `i` read through `bpf_probe_read_kernel`, not a context load: 6.1's
/// verifier refuses a load of kmem_cache_alloc/free's `const void *ptr` ("arg1 type UNKNOWN
/// is not a struct"; later kernels take it), and the whole program with it.
#[inline(always)]
pub(crate) fn void_ptr_arg(ctx: &BtfTracePointContext, i: u64) -> u64 {
    crate::hook::read::<u64>(ctx.as_ptr() as u64, 8 * i)
}

/// One field of the `struct kmem_cache *s` a kmem `tp_btf` program gets (argument 2;
/// `TRACE_CACHE_FIELDS`: 0 object_size, 1 size) by a direct load; 0 if unknown (an unknown
/// kind). Loaded by the 6.1, 6.12 and 6.18 verifiers (tp_btf kmem programs are 6.1+ only).
#[inline(always)]
pub(crate) fn cache_field_btf(ctx: &BtfTracePointContext, i: usize) -> u64 {
    let off = global(&TRACE_CACHE_FIELDS[i]);
    if off == NO_FIELD {
        return 0;
    }
    u64::from(crate::hook::load_btf(ctx.arg(2), off))
}

#[inline(always)]
fn object_size_btf(ctx: &BtfTracePointContext) -> u64 {
    cache_field_btf(ctx, 0)
}

/// `tp_btf/kmem_cache_alloc` (6.1+: call_site, ptr, kmem_cache *s, gfp, node): no
/// tracepoint record is built for it, the cheapest hook the tracepoint has.
#[btf_tracepoint(function = "kmem_cache_alloc")]
pub fn trace_slab_alloc_btf(ctx: BtfTracePointContext) -> u32 {
    let call_site: u64 = ctx.arg(0);
    let Some(func) = function_of(call_site) else { return 0 };
    if serve_alloc(func, || object_size_btf(&ctx)) {
        return 0;
    }
    let sizes = || (cache_field_btf(&ctx, 0), cache_field_btf(&ctx, 1));
    // 6.1+ only (see `trace_slab_free_btf`): `bpf_task_pt_regs` is there.
    slab_alloc(ctx.as_ptr(), func, call_site, true, true, || void_ptr_arg(&ctx, 1), sizes);
    // The feed's prepared VMA, after the allocation's own record (as the separate program
    // attached after this one ordered it).
    if func == FN_PREPARE && global(&TRACE_SLAB_PREPARE) != 0 {
        crate::syscall::prepare_vma_btf(ctx.as_ptr());
    }
    0
}

/// Set when the model is fed and the kmem programs are `tp_btf`: `trace_slab_alloc_btf`
/// also does `trace_prepare_vma`'s work (`syscall.rs`).
#[unsafe(no_mangle)]
static TRACE_SLAB_PREPARE: u32 = 0;

/// `serve` with no scope: slab events are counted in the kernel, nothing else is kept.
#[inline(always)]
pub(crate) fn serve_system() -> bool {
    global(&TRACE_AGGREGATE) & AGG_SERVE != 0 && !scoped()
}

/// `serve` system-wide keeps a count and nothing else: only the cache's object_size (the
/// kind) is read, not the object's address nor the slot size. False: `slab_alloc` decides.
#[inline(always)]
fn serve_alloc(func: u32, object_size: impl Fn() -> u64) -> bool {
    if !serve_system() {
        return false;
    }
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if tgid == global(&TRACE_SELF_TGID) {
        return true;
    }
    let why = crate::why::why(true, func, true, true);
    if wants_stack(func) && crate::why::stack_tells_more(why) {
        return false;
    }
    aggregated(tgid, func, true, alloc_kind(object_size()), why, true, true)
}

/// `sizes`: the event's bytes_req and bytes_alloc, read once the scope keeps it; `ptr`: the
/// object's address, read only where it is used (a `tp_btf` program's is a
/// `bpf_probe_read_kernel`): the lock set's roots, a scoped trace's owners, a record sent.
#[inline(always)]
fn slab_alloc(ctx: *mut c_void, func: u32, call_site: u64, regs: bool, btf: bool, ptr: impl Fn() -> u64, sizes: impl Fn() -> (u64, u64)) -> u32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let scoped = scoped();
    if tgid == global(&TRACE_SELF_TGID) || (scoped && !is_traced(tgid)) {
        return 0;
    }
    let (bytes_req, bytes_alloc) = sizes();
    // Only a prepare's anon_vma enters the lock set (`remember`).
    let known = scoped || func == FN_PREPARE;
    let addr = if known { ptr() } else { 0 };
    crate::lock::remember(addr, func, bytes_req, tgid);
    let ptr = || if known { addr } else { ptr() };
    if scoped {
        // Claiming a slot takes `cmpxchg` (5.12+): the `tp_btf` programs, 6.1+.
        own_object(addr, tgid, btf);
    }
    let why = crate::why::why(true, func, regs, btf);
    if !wants_stack(func) || !crate::why::stack_tells_more(why) {
        if aggregated(tgid, func, true, alloc_kind(bytes_req), why, true, syscall_known(regs)) {
            if (why == WHY_FORK || func == FN_FORK) && global(&TRACE_AGGREGATE) & AGG_SERVE == 0 {
                tallied_fork(current_tid());
            }
            return 0;
        }
        emit_slim(true, tgid, func, why, ptr(), call_site, bytes_req, bytes_alloc);
        return 0;
    }
    emit(EV_ALLOC, |e| {
        e.arg = func;
        e.call_site = call_site;
        e.ptr = ptr();
        e.bytes_req = bytes_req;
        e.bytes_alloc = bytes_alloc;
        stack(ctx, e);
    });
    0
}

#[tracepoint]
pub fn trace_slab_free(ctx: TracePointContext) -> u32 {
    slab_free_tp(&ctx, true)
}

/// Where `bpf_task_pt_regs` is refused (before 5.15): only an exit's teardown is told.
#[tracepoint]
pub fn trace_slab_free_plain(ctx: TracePointContext) -> u32 {
    slab_free_tp(&ctx, false)
}

#[inline(always)]
fn slab_free_tp(ctx: &TracePointContext, regs: bool) -> u32 {
    let call_site: u64 = field(ctx, offset(|o| &o.free_call_site));
    let Some(func) = function_of(call_site) else { return 0 };
    slab_free(ctx.as_ptr(), func, call_site, || field(ctx, offset(|o| &o.free_ptr)), regs, false, || 0)
}

/// `tp_btf/kmem_cache_free` (6.1+: call_site, ptr, kmem_cache *s): the cache tells the
/// kind of every free, whichever function made it.
#[btf_tracepoint(function = "kmem_cache_free")]
pub fn trace_slab_free_btf(ctx: BtfTracePointContext) -> u32 {
    let call_site: u64 = ctx.arg(0);
    let Some(func) = function_of(call_site) else { return 0 };
    // tp_btf kmem programs attach on 6.1+ only, where `bpf_task_pt_regs` (5.15+) exists.
    slab_free(ctx.as_ptr(), func, call_site, || void_ptr_arg(&ctx, 1), true, true, || object_size_btf(&ctx))
}

/// `bytes_req`: the cache's object_size where the tracepoint gives it, else 0; read once
/// the scope keeps the event. `ptr`: the object's address, read only where it is used: the
/// lock set's roots (anon_vmas are freed only through __put_anon_vma, unlink_anon_vmas
/// frees chains), a scoped trace's owners, a record sent (userspace matches it to the
/// allocation's). serve and a system-wide trace count an exit's chains without it.
#[inline(always)]
fn slab_free(ctx: *mut c_void, func: u32, call_site: u64, ptr: impl Fn() -> u64, regs: bool, btf: bool, bytes_req: impl Fn() -> u64) -> u32 {
    let scoped = scoped();
    let known = scoped || (func != FN_UNLINK && crate::lock::tracks());
    let addr = if known { ptr() } else { 0 };
    let ptr = || if known { addr } else { ptr() };
    if func != FN_UNLINK {
        crate::lock::forget(addr);
    }
    let (at, owned) = if scoped {
        match free_owner(addr) {
            Some(o) => o,
            None => return 0,
        }
    } else {
        let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
        if tgid == global(&TRACE_SELF_TGID) {
            return 0;
        }
        (tgid, true)
    };
    let why = crate::why::why(false, func, regs, btf);
    if !wants_stack(func) || !crate::why::stack_tells_more(why) {
        let bytes_req = bytes_req();
        // The cache's size where the tracepoint gives it; else what the function frees:
        // anon_vmas go only through __put_anon_vma, chains through unlink_anon_vmas; the
        // rest (a lost race, error paths) go to userspace, whose pointer map knows.
        let kind = if bytes_req != 0 {
            alloc_kind(bytes_req)
        } else if func == FN_PUT {
            0
        } else if func == FN_UNLINK {
            1
        } else {
            AGG_KINDS
        };
        if aggregated(at, func, false, kind, why, owned, syscall_known(regs)) {
            return 0;
        }
        let flag = if why == WHY_FORK && untally_fork(current_tid()) { WHY_FAILED_FORK } else { 0 };
        emit_slim(false, at, func, why | flag, ptr(), call_site, bytes_req, 0);
        return 0;
    }
    emit(EV_FREE, |e| {
        e.tgid = at;
        e.arg = func;
        e.call_site = call_site;
        e.ptr = ptr();
        stack(ctx, e);
    });
    0
}
