//! First anonymous fault: `__anon_vma_prepare` (exit: the vma with its anon_vma, the
//! return) and `find_mergeable_anon_vma` (exit: the neighbour's anon_vma it lends, or 0).
use crate::hook::{emit_hook, read, snap, stash, unstash};
use crate::offsets::TASK_MM;
use aya_ebpf::{
    helpers::generated::bpf_get_current_task,
    macros::{fexit, kprobe, kretprobe},
    programs::{FExitContext, ProbeContext, RetProbeContext},
};
use lazyvma_model::hook_abi::{BK_FENTRY, BK_KPROBE, HK_MERGEABLE, HK_PREPARE, PH_EXIT};

fn vma_exit(hook: u16, backend: u8, vma: u64, ret: u64) {
    emit_hook(hook, PH_EXIT, backend, |ev| {
        ev.ret = ret;
        snap(&mut ev.a, vma);
    });
}

/// `__anon_vma_prepare`'s exit, with the task's own mm (`args[0]`): a prepare with no fault
/// address (GUP) is placed on this VMA only when it is in the task's mm (not a write to
/// another process's /proc/PID/mem).
fn prepare_exit(backend: u8, vma: u64, ret: u64) {
    emit_hook(HK_PREPARE, PH_EXIT, backend, |ev| {
        ev.ret = ret;
        snap(&mut ev.a, vma);
        // SAFETY: no preconditions; the read tolerates any address.
        ev.args[0] = read(unsafe { bpf_get_current_task() } as u64, TASK_MM.load());
    });
}

#[fexit]
pub fn hk_prepare_fexit(ctx: FExitContext) -> i32 {
    prepare_exit(BK_FENTRY, ctx.arg(0), crate::hook::fexit_ret(&ctx, 0));
    0
}

#[kprobe]
pub fn hk_prepare_kprobe(ctx: ProbeContext) -> u32 {
    stash(HK_PREPARE as u64, [ctx.arg(0).unwrap_or(0), 0, 0, 0]);
    0
}

#[kretprobe]
pub fn hk_prepare_kretprobe(ctx: RetProbeContext) -> u32 {
    if let Some(a) = unstash(HK_PREPARE as u64) {
        prepare_exit(BK_KPROBE, a[0], ctx.ret());
    }
    0
}

#[fexit]
pub fn hk_mergeable_fexit(ctx: FExitContext) -> i32 {
    vma_exit(HK_MERGEABLE, BK_FENTRY, ctx.arg(0), crate::hook::fexit_ret(&ctx, 1));
    0
}

#[kprobe]
pub fn hk_mergeable_kprobe(ctx: ProbeContext) -> u32 {
    stash(HK_MERGEABLE as u64, [ctx.arg(0).unwrap_or(0), 0, 0, 0]);
    0
}

#[kretprobe]
pub fn hk_mergeable_kretprobe(ctx: RetProbeContext) -> u32 {
    if let Some(a) = unstash(HK_MERGEABLE as u64) {
        vma_exit(HK_MERGEABLE, BK_KPROBE, a[0], ctx.ret());
    }
    0
}
