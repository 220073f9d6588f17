//! `kmem:kmem_cache_alloc/free` restricted to objects allocated or freed from the rmap.c
//! functions of `FUNCTIONS` (attribution by `call_site`, spec §4.1). Never by cache name:
//! the anon_vma_chain cache is merged with other 64-byte caches. Userspace tells anon_vma
//! from anon_vma_chain by `bytes_req` and by function. anon_vmas also enter and leave
//! `lock.rs`'s set here. Scope first: after the call-site check (no map work), a scoped
//! trace drops any other process's event with one lookup.
use crate::emit::{emit, field, free_in_scope, global, is_traced, offset, own_object, scoped, TRACE_SELF_TGID};
use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_ktime_get_ns,
        generated::bpf_get_stack,
    },
    macros::{map, tracepoint},
    maps::PerCpuArray,
    programs::TracePointContext,
    EbpfContext,
};
use lazyvma_model::trace_abi::{
    agg_slot, SlabEvent, AGG_KINDS, AGG_SLOTS, TraceEvent, CTR_LOST, CTR_SENT, EV_ALLOC, EV_FREE, EV_SLAB_ALLOC, EV_SLAB_FREE, FN_COUNT, FN_PUT,
    FN_UNLINK, NO_FIELD, STACK_DEPTH,
};

/// [start, end) of each function, from /proc/kallsyms; 0/0 never matches.
#[unsafe(no_mangle)]
static TRACE_FN_START: [u64; FN_COUNT] = [0; FN_COUNT];
#[unsafe(no_mangle)]
static TRACE_FN_END: [u64; FN_COUNT] = [0; FN_COUNT];
/// Bit i set: take the kernel stack for events from function i (its caller tells why).
#[unsafe(no_mangle)]
static TRACE_STACK_FNS: u32 = 0;

#[inline(always)]
pub(crate) fn function_of(call_site: u64) -> Option<u32> {
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

/// Count in `SLAB_COUNTS` what needs no stack and whose kind is certain, send nothing
/// for it (`serve`: it only sums). 0: send every event.
#[unsafe(no_mangle)]
static TRACE_AGGREGATE: u32 = 0;
/// object_size of anon_vma and anon_vma_chain (the kind of an allocation).
#[unsafe(no_mangle)]
static TRACE_SIZES: [u64; 2] = [NO_FIELD; 2];

#[map]
static SLAB_COUNTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(AGG_SLOTS, 0);

/// Counted in the kernel if aggregating and the kind is known (`kind` < 2).
#[inline(always)]
fn aggregated(func: u32, alloc: bool, kind: u32, why: u32) -> bool {
    // SAFETY: a read-only global patched by the loader.
    if unsafe { core::ptr::read_volatile(&TRACE_AGGREGATE) } == 0 || kind >= AGG_KINDS {
        return false;
    }
    if let Some(p) = SLAB_COUNTS.get_ptr_mut(agg_slot(func, alloc, kind, why)) {
        // SAFETY: this CPU's slot; a BPF program does not migrate while it runs.
        unsafe { *p += 1 };
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
fn stack(ctx: &TracePointContext, ev: &mut TraceEvent) {
    let buf = ev.frames.as_mut_ptr().cast();
    // SAFETY: `frames` is STACK_DEPTH u64s of ring buffer memory; flags 0 = kernel stack.
    ev.stack_bytes = unsafe { bpf_get_stack(ctx.as_ptr(), buf, (STACK_DEPTH * 8) as u32, 0) };
}

/// The slim record: a third of the full one, no stack.
#[inline(always)]
fn emit_slim(alloc: bool, func: u32, why: u32, ptr: u64, call_site: u64, bytes_req: u64, bytes_alloc: u64) {
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
        tgid: (id >> 32) as u32,
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
    slab_alloc(&ctx, true)
}

/// Where `bpf_task_pt_regs` is refused (before 5.15): a clone's reason only with `--stacks`.
#[tracepoint]
pub fn trace_slab_alloc_plain(ctx: TracePointContext) -> u32 {
    slab_alloc(&ctx, false)
}

#[inline(always)]
fn slab_alloc(ctx: &TracePointContext, regs: bool) -> u32 {
    let ctx = TracePointContext::new(ctx.as_ptr());
    let call_site: u64 = field(&ctx, offset(|o| &o.alloc_call_site));
    let Some(func) = function_of(call_site) else { return 0 };
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let scoped = scoped();
    if tgid == global(&TRACE_SELF_TGID) || (scoped && !is_traced(tgid)) {
        return 0;
    }
    let ptr: u64 = field(&ctx, offset(|o| &o.alloc_ptr));
    let bytes_req: u64 = field(&ctx, offset(|o| &o.alloc_bytes_req));
    crate::lock::remember(ptr, bytes_req, tgid);
    if scoped {
        own_object(ptr, tgid);
    }
    let bytes_alloc = field(&ctx, offset(|o| &o.alloc_bytes_alloc));
    let why = crate::why::why(true, func, regs);
    if !wants_stack(func) || !crate::why::stack_tells_more(why) {
        if aggregated(func, true, alloc_kind(bytes_req), why) {
            return 0;
        }
        emit_slim(true, func, why, ptr, call_site, bytes_req, bytes_alloc);
        return 0;
    }
    emit(EV_ALLOC, |ev| {
        ev.arg = func;
        ev.call_site = call_site;
        ev.ptr = ptr;
        ev.bytes_req = bytes_req;
        ev.bytes_alloc = bytes_alloc;
        stack(&ctx, ev);
    });
    0
}

#[tracepoint]
pub fn trace_slab_free(ctx: TracePointContext) -> u32 {
    slab_free(&ctx, true)
}

/// Where `bpf_task_pt_regs` is refused (before 5.15): only an exit's teardown is told.
#[tracepoint]
pub fn trace_slab_free_plain(ctx: TracePointContext) -> u32 {
    slab_free(&ctx, false)
}

#[inline(always)]
fn slab_free(ctx: &TracePointContext, regs: bool) -> u32 {
    let ctx = TracePointContext::new(ctx.as_ptr());
    let call_site: u64 = field(&ctx, offset(|o| &o.free_call_site));
    let Some(func) = function_of(call_site) else { return 0 };
    let ptr: u64 = field(&ctx, offset(|o| &o.free_ptr));
    // anon_vmas are freed only through __put_anon_vma; unlink_anon_vmas frees chains.
    if func != FN_UNLINK {
        crate::lock::forget(ptr);
    }
    if scoped() {
        if !free_in_scope(ptr) {
            return 0;
        }
    } else if (bpf_get_current_pid_tgid() >> 32) as u32 == global(&TRACE_SELF_TGID) {
        return 0;
    }
    let why = crate::why::why(false, func, regs);
    if !wants_stack(func) || !crate::why::stack_tells_more(why) {
        // anon_vmas are freed only by __put_anon_vma, unlink_anon_vmas frees chains; the
        // rest (a lost race, error paths) go to userspace, whose pointer map knows.
        let kind = if func == FN_PUT { 0 } else if func == FN_UNLINK { 1 } else { AGG_KINDS };
        if aggregated(func, false, kind, why) {
            return 0;
        }
        emit_slim(false, func, why, ptr, call_site, 0, 0);
        return 0;
    }
    emit(EV_FREE, |ev| {
        ev.arg = func;
        ev.call_site = call_site;
        ev.ptr = ptr;
        stack(&ctx, ev);
    });
    0
}
