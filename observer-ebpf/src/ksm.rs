//! KSM and THP faults. ksmd runs the KSM programs, so the process is the rmap_item's mm,
//! named by `mm->owner`'s tgid; userspace attributes (and filters) by it, because ksmd's
//! rate is bounded by its own scan budget and a BPF filter on mms would need a map of the
//! traced mms kept in step with every fork and exec. Tracepoints (6.4+):
//! `ksm:ksm_merge_with_ksm_page`, `ksm:ksm_remove_rmap_item`; function hooks where they
//! are absent: `try_to_merge_with_ksm_page` (exit), `remove_rmap_item_from_tree` (entry),
//! and `do_huge_pmd_anonymous_page` (exit) for the THP fault.
use crate::emit::{self, field, TRACE_EVENTS};
use crate::hook::{emit_hook, hook_offset, read, snap, stash, unstash};
use crate::offsets::TASK_TGID;
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::{fentry, fexit, kprobe, kretprobe, tracepoint},
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext, TracePointContext},
};
use lazyvma_model::hook_abi::{BK_FENTRY, BK_KPROBE, HK_KSM_MERGE, HK_KSM_REMOVE, HK_THP_FAULT, PH_ENTRY, PH_EXIT};
use lazyvma_model::trace_abi::{KsmEvent, KsmOffsets, CTR_LOST, CTR_SENT, EV_KSM_MERGE, EV_KSM_REMOVE};

/// Tracepoint field offsets from tracefs, set by userspace before load.
#[unsafe(no_mangle)]
static KSM_OFFSETS: KsmOffsets = KsmOffsets::UNSET;

#[inline(always)]
fn off(f: impl FnOnce(&KsmOffsets) -> &u64) -> u64 {
    // SAFETY: a read-only global patched by the loader; volatile so the loader's value is read.
    unsafe { core::ptr::read_volatile(f(&KSM_OFFSETS)) }
}

#[inline(always)]
fn owner_tgid(mm: u64) -> u64 {
    let task: u64 = read(mm, hook_offset(|o| &o.mm_owner));
    read::<i32>(task, TASK_TGID.load()) as u32 as u64
}

#[inline(always)]
fn send(kind: u32, mm: u64, rmap_item: u64, pfn: u64, ksm_page: u64, err: i32) {
    let Some(mut slot) = TRACE_EVENTS.reserve::<KsmEvent>(0) else {
        emit::bump(CTR_LOST);
        return;
    };
    let id = bpf_get_current_pid_tgid();
    let ev = KsmEvent {
        kind,
        pid: id as u32,
        tgid: (id >> 32) as u32,
        err,
        // SAFETY: no preconditions.
        ktime: unsafe { bpf_ktime_get_ns() },
        mm,
        owner_tgid: owner_tgid(mm),
        rmap_item,
        address: read(rmap_item, hook_offset(|o| &o.rmap_item_address)),
        pfn,
        ksm_page,
    };
    slot.write(ev);
    slot.submit(crate::emit::wake_flags());
    emit::bump(CTR_SENT);
}

#[tracepoint]
pub fn trace_ksm_merge(ctx: TracePointContext) -> u32 {
    let mm = field(&ctx, off(|o| &o.merge_mm));
    let item = field(&ctx, off(|o| &o.merge_rmap_item));
    send(EV_KSM_MERGE, mm, item, field(&ctx, off(|o| &o.merge_pfn)), field(&ctx, off(|o| &o.merge_ksm_page)), field(&ctx, off(|o| &o.merge_err)));
    0
}

#[tracepoint]
pub fn trace_ksm_remove(ctx: TracePointContext) -> u32 {
    let mm = field(&ctx, off(|o| &o.remove_mm));
    send(EV_KSM_REMOVE, mm, field(&ctx, off(|o| &o.remove_rmap_item)), field(&ctx, off(|o| &o.remove_pfn)), 0, 0);
    0
}

/// One rmap_item's fields, as both KSM hooks send them.
#[inline(always)]
fn item_hook(hook: u16, phase: u8, backend: u8, item: u64, kpage: u64, ret: u64) {
    emit_hook(hook, phase, backend, |ev| {
        let mm: u64 = read(item, hook_offset(|o| &o.rmap_item_mm));
        ev.ret = ret;
        ev.args = [item, mm, read(item, hook_offset(|o| &o.rmap_item_address)), kpage, owner_tgid(mm), read(item, hook_offset(|o| &o.rmap_item_anon_vma))];
    });
}

#[fexit]
pub fn hk_ksm_merge_fexit(ctx: FExitContext) -> i32 {
    let ret: i32 = crate::hook::fexit_ret(&ctx, 4);
    item_hook(HK_KSM_MERGE, PH_EXIT, BK_FENTRY, ctx.arg(0), ctx.arg(2), ret as i64 as u64);
    0
}

#[kprobe]
pub fn hk_ksm_merge_kprobe(ctx: ProbeContext) -> u32 {
    stash(HK_KSM_MERGE as u64, [ctx.arg(0).unwrap_or(0), ctx.arg(2).unwrap_or(0), 0, 0]);
    0
}

#[kretprobe]
pub fn hk_ksm_merge_kretprobe(ctx: RetProbeContext) -> u32 {
    if let Some(a) = unstash(HK_KSM_MERGE as u64) {
        let ret: i32 = ctx.ret();
        item_hook(HK_KSM_MERGE, PH_EXIT, BK_KPROBE, a[0], a[1], ret as i64 as u64);
    }
    0
}

#[fentry]
pub fn hk_ksm_remove_fentry(ctx: FEntryContext) -> i32 {
    item_hook(HK_KSM_REMOVE, PH_ENTRY, BK_FENTRY, ctx.arg(0), 0, 0);
    0
}

#[kprobe]
pub fn hk_ksm_remove_kprobe(ctx: ProbeContext) -> u32 {
    item_hook(HK_KSM_REMOVE, PH_ENTRY, BK_KPROBE, ctx.arg(0).unwrap_or(0), 0, 0);
    0
}

fn thp_exit(backend: u8, vmf: u64, ret: u64) {
    emit_hook(HK_THP_FAULT, PH_EXIT, backend, |ev| {
        ev.ret = ret;
        ev.args[0] = read(vmf, hook_offset(|o| &o.vmf_address));
        ev.args[1] = read::<u32>(vmf, hook_offset(|o| &o.vmf_flags)) as u64;
        snap(&mut ev.a, read(vmf, hook_offset(|o| &o.vmf_vma)));
    });
}

#[fexit]
pub fn hk_thp_fexit(ctx: FExitContext) -> i32 {
    let ret: u32 = crate::hook::fexit_ret(&ctx, 5);
    thp_exit(BK_FENTRY, ctx.arg(0), ret as u64);
    0
}

#[kprobe]
pub fn hk_thp_kprobe(ctx: ProbeContext) -> u32 {
    stash(HK_THP_FAULT as u64, [ctx.arg(0).unwrap_or(0), 0, 0, 0]);
    0
}

#[kretprobe]
pub fn hk_thp_kretprobe(ctx: RetProbeContext) -> u32 {
    if let Some(a) = unstash(HK_THP_FAULT as u64) {
        let ret: u32 = ctx.ret();
        thp_exit(BK_KPROBE, a[0], ret as u64);
    }
    0
}
