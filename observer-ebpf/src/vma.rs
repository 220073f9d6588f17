//! VMA surgery that clones or unlinks chains: `__split_vma`, the merge functions of each
//! kernel (6.1: vma_merge / __vma_adjust / vma_expand with plain arguments; 6.12:
//! vma_merge_new_range / vma_expand / commit_merge on a `vma_merge_struct`) and `copy_vma`
//! (mremap). Each is a caller frame, so the clones and unlinks inside carry it.
use crate::hook::{emit_hook, fentry_arg, hook_offset, pop, push, read, snap, stash, unstash};
use aya_ebpf::{
    macros::{fentry, fexit, kprobe, kretprobe},
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext},
};
use lazyvma_model::hook_abi::{
    BK_FENTRY, BK_KPROBE, CALLER_COPY_VMA, CALLER_MERGE, CALLER_SPLIT, HK_COPY_VMA, HK_MERGE, HK_SPLIT, PH_ENTRY, PH_EXIT, VMG_SHAPE,
};

fn split_entry(backend: u8, first: u64, vma: u64, addr: u64, new_below: u64) {
    emit_hook(HK_SPLIT, PH_ENTRY, backend, |ev| {
        snap(&mut ev.a, vma);
        ev.args[0] = first;
        ev.args[1] = addr;
        ev.args[2] = new_below;
    });
    push(CALLER_SPLIT);
}

fn split_exit(backend: u8, vma: u64, ret: u64) {
    pop();
    emit_hook(HK_SPLIT, PH_EXIT, backend, |ev| {
        ev.ret = ret;
        snap(&mut ev.a, vma);
    });
}

// 6.1: (mm, vma, addr, new_below); 6.12: (vmi, vma, addr, new_below).
#[fentry]
pub fn hk_split_fentry(ctx: FEntryContext) -> i32 {
    split_entry(BK_FENTRY, ctx.arg(0), ctx.arg(1), ctx.arg(2), ctx.arg::<i32>(3) as u64);
    0
}

#[fexit]
pub fn hk_split_fexit(ctx: FExitContext) -> i32 {
    split_exit(BK_FENTRY, ctx.arg(1), crate::hook::fexit_ret(&ctx, 7));
    0
}

#[kprobe]
pub fn hk_split_kprobe(ctx: ProbeContext) -> u32 {
    let vma = ctx.arg(1).unwrap_or(0);
    stash(HK_SPLIT as u64, [vma, 0, 0, 0]);
    split_entry(BK_KPROBE, ctx.arg(0).unwrap_or(0), vma, ctx.arg(2).unwrap_or(0), ctx.arg::<u32>(3).unwrap_or(0) as u64);
    0
}

#[kretprobe]
pub fn hk_split_kretprobe(ctx: RetProbeContext) -> u32 {
    let vma = unstash(HK_SPLIT as u64).map_or(0, |a| a[0]);
    split_exit(BK_KPROBE, vma, ctx.ret());
    0
}

#[inline(always)]
fn merge_entry(backend: u8, func: u64, vmg: bool, raw: [u64; 6]) {
    emit_hook(HK_MERGE, PH_ENTRY, backend, |ev| {
        if vmg {
            let g = raw[0];
            snap(&mut ev.a, read(g, hook_offset(|o| &o.vmg_prev)));
            snap(&mut ev.b, read(g, hook_offset(|o| &o.vmg_vma)));
            ev.args[0] = g;
            ev.args[1] = read(g, hook_offset(|o| &o.vmg_start));
            ev.args[2] = read(g, hook_offset(|o| &o.vmg_end));
            ev.args[3] = read(g, hook_offset(|o| &o.vmg_next));
            ev.args[4] = VMG_SHAPE;
        } else {
            // vma_merge(mm, prev, ...): prev; __vma_adjust(vma, ...): vma; vma_expand(mas, vma, .., next).
            match func {
                0 => snap(&mut ev.a, raw[1]),
                1 => snap(&mut ev.a, raw[0]),
                _ => {
                    snap(&mut ev.a, raw[1]);
                    snap(&mut ev.b, raw[5]);
                }
            }
            ev.args[0] = raw[0];
            ev.args[1] = raw[1];
            ev.args[2] = raw[2];
            ev.args[3] = raw[3];
            ev.args[4] = raw[4];
        }
        ev.args[5] = func;
    });
    push(CALLER_MERGE);
}

fn merge_exit(backend: u8, func: u64, ret: u64) {
    pop();
    emit_hook(HK_MERGE, PH_EXIT, backend, |ev| {
        ev.ret = ret;
        ev.args[5] = func;
    });
}

/// One fentry/fexit/kprobe/kretprobe quartet per merge function and argument shape
/// (fentry may only read the arguments a function has).
macro_rules! merge_hooks {
    ($func:expr, $ret:expr, $vmg:expr, $fentry:ident, $fexit:ident, $kprobe:ident, $kret:ident) => {
        #[fentry]
        pub fn $fentry(ctx: FEntryContext) -> i32 {
            let raw = if $vmg {
                [ctx.arg(0), 0, 0, 0, 0, 0]
            } else {
                [ctx.arg(0), ctx.arg(1), ctx.arg(2), ctx.arg(3), ctx.arg(4), ctx.arg(5)]
            };
            merge_entry(BK_FENTRY, $func, $vmg, raw);
            0
        }

        #[fexit]
        pub fn $fexit(ctx: FExitContext) -> i32 {
            merge_exit(BK_FENTRY, $func, crate::hook::fexit_ret(&ctx, $ret));
            0
        }

        #[kprobe]
        pub fn $kprobe(ctx: ProbeContext) -> u32 {
            let a = |i| ctx.arg(i).unwrap_or(0);
            merge_entry(BK_KPROBE, $func, $vmg, [a(0), a(1), a(2), a(3), a(4), a(5)]);
            0
        }

        #[kretprobe]
        pub fn $kret(ctx: RetProbeContext) -> u32 {
            merge_exit(BK_KPROBE, $func, ctx.ret());
            0
        }
    };
}

// Indices into MERGE_FUNCTIONS.
merge_hooks!(0, 9, false, hk_merge_vma_merge_fentry, hk_merge_vma_merge_fexit, hk_merge_vma_merge_kprobe, hk_merge_vma_merge_kretprobe);
merge_hooks!(1, 10, false, hk_merge_adjust_fentry, hk_merge_adjust_fexit, hk_merge_adjust_kprobe, hk_merge_adjust_kretprobe);
merge_hooks!(2, 11, false, hk_merge_expand_fentry, hk_merge_expand_fexit, hk_merge_expand_kprobe, hk_merge_expand_kretprobe);
merge_hooks!(2, 12, true, hk_merge_expand_vmg_fentry, hk_merge_expand_vmg_fexit, hk_merge_expand_vmg_kprobe, hk_merge_expand_vmg_kretprobe);
merge_hooks!(3, 13, true, hk_merge_new_range_fentry, hk_merge_new_range_fexit, hk_merge_new_range_kprobe, hk_merge_new_range_kretprobe);
merge_hooks!(4, 14, true, hk_merge_commit_fentry, hk_merge_commit_fexit, hk_merge_commit_kprobe, hk_merge_commit_kretprobe);

fn copy_vma_entry(backend: u8, vmap: u64, addr: u64, len: u64, pgoff: u64) {
    emit_hook(HK_COPY_VMA, PH_ENTRY, backend, |ev| {
        snap(&mut ev.a, read(vmap, 0));
        ev.args[0] = addr;
        ev.args[1] = len;
        ev.args[2] = pgoff;
    });
    push(CALLER_COPY_VMA);
}

fn copy_vma_exit(backend: u8, new: u64) {
    pop();
    emit_hook(HK_COPY_VMA, PH_EXIT, backend, |ev| {
        ev.ret = new;
        snap(&mut ev.a, new);
    });
}

// (struct vm_area_struct **vmap, addr, len, pgoff, bool *need_rmap_locks[, keep_source])
#[fentry]
pub fn hk_copy_vma_fentry(ctx: FEntryContext) -> i32 {
    // 8: hk_copy_vma_fexit in FEXIT_RET_PROGRAMS.
    copy_vma_entry(BK_FENTRY, fentry_arg(&ctx, 8, 0), ctx.arg(1), ctx.arg(2), ctx.arg(3));
    0
}

#[fexit]
pub fn hk_copy_vma_fexit(ctx: FExitContext) -> i32 {
    copy_vma_exit(BK_FENTRY, crate::hook::fexit_ret(&ctx, 8));
    0
}

#[kprobe]
pub fn hk_copy_vma_kprobe(ctx: ProbeContext) -> u32 {
    let a = |i| ctx.arg(i).unwrap_or(0);
    copy_vma_entry(BK_KPROBE, a(0), a(1), a(2), a(3));
    0
}

#[kretprobe]
pub fn hk_copy_vma_kretprobe(ctx: RetProbeContext) -> u32 {
    copy_vma_exit(BK_KPROBE, ctx.ret());
    0
}
