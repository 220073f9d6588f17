//! fork: `dup_mmap` (entry: mm, oldmm), `anon_vma_fork` per copied VMA (a caller frame, so
//! its clone carries "fork"; exit: child and parent vma, the child anon_vma's parent) and
//! `anon_vma_clone` (exit: dst, src and their chains; its caller tells why it ran).
use crate::hook::{emit_hook, pop, push, read, snap, stash, unstash};
use crate::offsets::{AV_PARENT, VMA_ANON_VMA};
use aya_ebpf::{
    macros::{fentry, fexit, kprobe, kretprobe},
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext},
};
use lazyvma_model::hook_abi::{BK_FENTRY, BK_KPROBE, CALLER_FORK, HK_CLONE, HK_DUP_MMAP, HK_FORK, PH_ENTRY, PH_EXIT};

fn fork_exit(backend: u8, vma: u64, pvma: u64, ret: u64) {
    pop();
    emit_hook(HK_FORK, PH_EXIT, backend, |ev| {
        ev.ret = ret;
        snap(&mut ev.a, vma);
        snap(&mut ev.b, pvma);
        let av: u64 = read(vma, VMA_ANON_VMA.load());
        ev.args[0] = read(av, AV_PARENT.load());
    });
}

#[fentry]
pub fn hk_fork_fentry(_ctx: FEntryContext) -> i32 {
    push(CALLER_FORK);
    0
}

#[fexit]
pub fn hk_fork_fexit(ctx: FExitContext) -> i32 {
    fork_exit(BK_FENTRY, ctx.arg(0), ctx.arg(1), crate::hook::fexit_ret(&ctx, 2));
    0
}

#[kprobe]
pub fn hk_fork_kprobe(ctx: ProbeContext) -> u32 {
    stash(HK_FORK as u64, [ctx.arg(0).unwrap_or(0), ctx.arg(1).unwrap_or(0), 0, 0]);
    push(CALLER_FORK);
    0
}

#[kretprobe]
pub fn hk_fork_kretprobe(ctx: RetProbeContext) -> u32 {
    match unstash(HK_FORK as u64) {
        Some(a) => fork_exit(BK_KPROBE, a[0], a[1], ctx.ret()),
        None => pop(),
    }
    0
}

fn clone_exit(backend: u8, dst: u64, src: u64, ret: u64) {
    emit_hook(HK_CLONE, PH_EXIT, backend, |ev| {
        ev.ret = ret;
        snap(&mut ev.a, dst);
        snap(&mut ev.b, src);
    });
}

#[fexit]
pub fn hk_clone_fexit(ctx: FExitContext) -> i32 {
    clone_exit(BK_FENTRY, ctx.arg(0), ctx.arg(1), crate::hook::fexit_ret(&ctx, 3));
    0
}

#[kprobe]
pub fn hk_clone_kprobe(ctx: ProbeContext) -> u32 {
    stash(HK_CLONE as u64, [ctx.arg(0).unwrap_or(0), ctx.arg(1).unwrap_or(0), 0, 0]);
    0
}

#[kretprobe]
pub fn hk_clone_kretprobe(ctx: RetProbeContext) -> u32 {
    if let Some(a) = unstash(HK_CLONE as u64) {
        clone_exit(BK_KPROBE, a[0], a[1], ctx.ret());
    }
    0
}

fn dup_mmap_entry(backend: u8, mm: u64, oldmm: u64) {
    emit_hook(HK_DUP_MMAP, PH_ENTRY, backend, |ev| {
        ev.args[0] = mm;
        ev.args[1] = oldmm;
    });
}

#[fentry]
pub fn hk_dup_mmap_fentry(ctx: FEntryContext) -> i32 {
    dup_mmap_entry(BK_FENTRY, ctx.arg(0), ctx.arg(1));
    0
}

#[kprobe]
pub fn hk_dup_mmap_kprobe(ctx: ProbeContext) -> u32 {
    dup_mmap_entry(BK_KPROBE, ctx.arg(0).unwrap_or(0), ctx.arg(1).unwrap_or(0));
    0
}
