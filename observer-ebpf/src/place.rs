//! Whether a prepare may be placed at the thread's last fault address: only when it runs
//! inside that fault's handler. GUP (MADV_POPULATE_WRITE, mlock's populate, a FOLL_FORCE
//! write through /proc/PID/mem, process_vm_writev) and uprobes prepare with no fault of
//! their own, and the address left by an earlier fault would name another VMA. The
//! kernel stack tells: a fault handler's prepare has `exc_page_fault` below it.
use aya_ebpf::{helpers::generated::bpf_get_stack, macros::map, maps::PerCpuArray, programs::TracePointContext, EbpfContext};

/// [start, end) of the page fault entry (`exc_page_fault`), from /proc/kallsyms; 0/0 when
/// unknown: then no prepare is placed by a fault address.
#[unsafe(no_mangle)]
static PLACE_FAULT_FN: [u64; 2] = [0, 0];

/// Frames read: a fault's prepare is ~10 frames above `exc_page_fault`.
const DEPTH: usize = 32;

#[map]
static PLACE_STACK: PerCpuArray<[u64; DEPTH]> = PerCpuArray::with_max_entries(1, 0);

/// Is this tracepoint (a prepare's slab allocation) inside a page fault's handler?
#[inline(always)]
pub fn in_fault(ctx: &TracePointContext) -> bool {
    // SAFETY: a read-only global patched by the loader.
    let [start, end] = unsafe { core::ptr::read_volatile(&PLACE_FAULT_FN) };
    if start == 0 || end <= start {
        return false;
    }
    let Some(buf) = PLACE_STACK.get_ptr_mut(0) else { return false };
    // SAFETY: `buf` is this CPU's DEPTH u64s; flags 0: the kernel stack.
    let n = unsafe { bpf_get_stack(ctx.as_ptr(), buf.cast(), (DEPTH * 8) as u32, 0) };
    if n <= 0 {
        return false;
    }
    let frames = (n as usize / 8).min(DEPTH);
    let mut i = 0;
    while i < DEPTH {
        if i >= frames {
            break;
        }
        // SAFETY: i < DEPTH, inside this CPU's buffer.
        let ip = unsafe { (*buf)[i] };
        if ip >= start && ip < end {
            return true;
        }
        i += 1;
    }
    false
}
