//! Phase markers: `madvise(0, 0, 1000 + id)` from lazyvma-workload. The advice is invalid,
//! so the call changes nothing; only behaviors >= MARKER_BASE are sent.
use crate::emit::{emit, field, in_scope, is_self, offset};
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use lazyvma_model::trace_abi::{EV_MARKER, MARKER_BASE, MARKER_FLUSH_FRONT};

/// `syscalls:sys_enter_madvise`.
#[tracepoint]
pub fn trace_marker(ctx: TracePointContext) -> u32 {
    // Syscall args are stored as 8-byte slots; the advice is the low int.
    let behavior = field::<u64>(&ctx, offset(|o| &o.madvise_behavior)) as u32 as i32;
    // lazyvma's own markers bracket its snapshot pass (trace/feed/seed.rs): always sent.
    if (behavior as i64) < MARKER_BASE as i64 || !(in_scope() || is_self()) {
        return 0;
    }
    // lazyvma's own ids (trace/feed/seed.rs, 0x5e_edXX) count only from this lazyvma: another's
    // end of trace or seeding pass, in scope system-wide, ended this trace (nothing counted
    // after it) or re-marked its seed.
    if (behavior as i64 - MARKER_BASE as i64) >> 8 == 0x5eed && !is_self() {
        return 0;
    }
    if behavior as i64 - MARKER_BASE as i64 == i64::from(MARKER_FLUSH_FRONT) {
        crate::slab::flush_front();
        return 0;
    }
    // Its generation orders the kernel's slab counts against it (`slab.rs` TRACE_TALLY).
    let gen = crate::slab::next_gen();
    emit(EV_MARKER, |ev| {
        ev.ptr = behavior as u64;
        ev.call_site = gen;
    });
    0
}
