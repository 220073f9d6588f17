//! The mremap syscall as a caller frame: the unmap of a moved VMA's old range runs after
//! copy_vma returned (move_vma → do_vmi_munmap), so only a frame around the whole call
//! tells its unlink from a munmap's. The arch's syscall entry is hooked (`__x64_sys_mremap`,
//! `__arm64_sys_mremap`): move_vma may be inlined, the syscall entry never is.
use crate::hook::{pop, push};
use aya_ebpf::{
    macros::{fentry, fexit, kprobe, kretprobe},
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext},
};
use lazyvma_model::hook_abi::CALLER_MREMAP;

#[fentry]
pub fn hk_mremap_fentry(_ctx: FEntryContext) -> i32 {
    push(CALLER_MREMAP);
    0
}

#[fexit]
pub fn hk_mremap_fexit(_ctx: FExitContext) -> i32 {
    pop();
    0
}

#[kprobe]
pub fn hk_mremap_kprobe(_ctx: ProbeContext) -> u32 {
    push(CALLER_MREMAP);
    0
}

#[kretprobe]
pub fn hk_mremap_kretprobe(_ctx: RetProbeContext) -> u32 {
    pop();
    0
}
