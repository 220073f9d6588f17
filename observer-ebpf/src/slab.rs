//! `kmem:kmem_cache_alloc/free` restricted to objects allocated or freed from the rmap.c
//! functions of `FUNCTIONS` (attribution by `call_site`, spec §4.1). Never by cache name:
//! the anon_vma_chain cache is merged with other 64-byte caches. Userspace tells anon_vma
//! from anon_vma_chain by `bytes_req` and by function. anon_vmas also enter and leave
//! `lock.rs`'s set here.
use crate::emit::{emit, field, offset};
use aya_ebpf::{helpers::{bpf_get_current_pid_tgid, generated::bpf_get_stack}, macros::tracepoint, programs::TracePointContext, EbpfContext};
use lazyvma_model::trace_abi::{TraceEvent, EV_ALLOC, EV_FREE, FN_COUNT, STACK_DEPTH};

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

#[inline(always)]
fn stack(ctx: &TracePointContext, func: u32, ev: &mut TraceEvent) {
    // SAFETY: read-only global patched by the loader.
    let want = unsafe { core::ptr::read_volatile(&TRACE_STACK_FNS) };
    if want & (1 << func) == 0 {
        return;
    }
    let buf = ev.frames.as_mut_ptr().cast();
    // SAFETY: `frames` is STACK_DEPTH u64s of ring buffer memory; flags 0 = kernel stack.
    ev.stack_bytes = unsafe { bpf_get_stack(ctx.as_ptr(), buf, (STACK_DEPTH * 8) as u32, 0) };
}

#[tracepoint]
pub fn trace_slab_alloc(ctx: TracePointContext) -> u32 {
    let call_site: u64 = field(&ctx, offset(|o| &o.alloc_call_site));
    let Some(func) = function_of(call_site) else { return 0 };
    let ptr: u64 = field(&ctx, offset(|o| &o.alloc_ptr));
    let bytes_req: u64 = field(&ctx, offset(|o| &o.alloc_bytes_req));
    crate::lock::remember(ptr, bytes_req, (bpf_get_current_pid_tgid() >> 32) as u32);
    emit(EV_ALLOC, |ev| {
        ev.arg = func;
        ev.call_site = call_site;
        ev.ptr = ptr;
        ev.bytes_req = bytes_req;
        ev.bytes_alloc = field(&ctx, offset(|o| &o.alloc_bytes_alloc));
        stack(&ctx, func, ev);
    });
    0
}

#[tracepoint]
pub fn trace_slab_free(ctx: TracePointContext) -> u32 {
    let call_site: u64 = field(&ctx, offset(|o| &o.free_call_site));
    let Some(func) = function_of(call_site) else { return 0 };
    let ptr: u64 = field(&ctx, offset(|o| &o.free_ptr));
    crate::lock::forget(ptr);
    emit(EV_FREE, |ev| {
        ev.arg = func;
        ev.call_site = call_site;
        ev.ptr = ptr;
        stack(&ctx, func, ev);
    });
    0
}
