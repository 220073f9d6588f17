//! Tiny programs `lazyvma doctor` loads to find out, by trying, which attach types work.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};

#[tracepoint]
pub fn probe_tracepoint(_ctx: TracePointContext) -> u32 {
    0
}
