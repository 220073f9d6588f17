//! Teardown: `unlink_anon_vmas` (entry: the vma, its anon_vma and chain: L AVCs will be
//! freed), `__put_anon_vma` (entry: the anon_vma, its root and their refcounts: the root
//! goes too when its count is 1) and `exit_mmap` (entry: mm).
use crate::hook::{emit_hook, read, snap};
use crate::offsets::{AV_REFCOUNT, AV_ROOT};
use aya_ebpf::{
    macros::{fentry, kprobe},
    programs::{FEntryContext, ProbeContext},
};
use lazyvma_model::hook_abi::{BK_FENTRY, BK_KPROBE, HK_EXIT_MMAP, HK_PUT, HK_UNLINK, PH_ENTRY};

fn unlink_entry(backend: u8, vma: u64) {
    emit_hook(HK_UNLINK, PH_ENTRY, backend, |ev| snap(&mut ev.a, vma));
}

#[fentry]
pub fn hk_unlink_fentry(ctx: FEntryContext) -> i32 {
    unlink_entry(BK_FENTRY, ctx.arg(0));
    0
}

#[kprobe]
pub fn hk_unlink_kprobe(ctx: ProbeContext) -> u32 {
    unlink_entry(BK_KPROBE, ctx.arg(0).unwrap_or(0));
    0
}

fn put_entry(backend: u8, av: u64) {
    emit_hook(HK_PUT, PH_ENTRY, backend, |ev| {
        let root: u64 = read(av, AV_ROOT.load());
        ev.args[0] = av;
        ev.args[1] = root;
        ev.args[2] = read::<i32>(root, AV_REFCOUNT.load()) as i64 as u64;
        ev.args[3] = read::<i32>(av, AV_REFCOUNT.load()) as i64 as u64;
    });
}

#[fentry]
pub fn hk_put_fentry(ctx: FEntryContext) -> i32 {
    put_entry(BK_FENTRY, ctx.arg(0));
    0
}

#[kprobe]
pub fn hk_put_kprobe(ctx: ProbeContext) -> u32 {
    put_entry(BK_KPROBE, ctx.arg(0).unwrap_or(0));
    0
}

fn exit_mmap_entry(backend: u8, mm: u64) {
    emit_hook(HK_EXIT_MMAP, PH_ENTRY, backend, |ev| ev.args[0] = mm);
}

#[fentry]
pub fn hk_exit_mmap_fentry(ctx: FEntryContext) -> i32 {
    exit_mmap_entry(BK_FENTRY, ctx.arg(0));
    0
}

#[kprobe]
pub fn hk_exit_mmap_kprobe(ctx: ProbeContext) -> u32 {
    exit_mmap_entry(BK_KPROBE, ctx.arg(0).unwrap_or(0));
    0
}
