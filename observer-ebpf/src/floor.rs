//! Bench only (`cargo xtask bench overhead`, mode `floor`, loaded by `lazyvma-floor`):
//! empty programs on the two kmem tracepoints the slab programs use. What they cost the
//! traced machine is the kernel's dispatch alone, the floor under any filter or count.
use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};

#[btf_tracepoint(function = "kmem_cache_alloc")]
pub fn floor_slab_alloc(_ctx: BtfTracePointContext) -> u32 {
    0
}

#[btf_tracepoint(function = "kmem_cache_free")]
pub fn floor_slab_free(_ctx: BtfTracePointContext) -> u32 {
    0
}
