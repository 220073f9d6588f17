//! rmap walks: the callers (folio_referenced, try_to_unmap, try_to_migrate,
//! remove_migration_ptes) are frames of the caller stack; `rmap_walk[_locked]` entry sends
//! the folio and its mapping; `folio_lock_anon_vma_read` entry and exit bracket the wait
//! for the root anon_vma's rwsem (exit 0 = the try-lock failed: contended).
use crate::hook::{emit_hook, hook_offset, pop, push, read};
use aya_ebpf::{
    helpers::generated::bpf_get_stack,
    macros::{fentry, fexit, kprobe, kretprobe},
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext},
    EbpfContext,
};
use lazyvma_model::hook_abi::{
    BK_FENTRY, BK_KPROBE, CALLER_FOLIO_REFERENCED, CALLER_REMOVE_MIGRATION_PTES, CALLER_TRY_TO_MIGRATE, CALLER_TRY_TO_UNMAP,
    HK_FOLIO_LOCK, HK_RMAP_WALK, HOOK_STACK_DEPTH, PH_ENTRY, PH_EXIT,
};

macro_rules! caller_hooks {
    ($code:expr, $fentry:ident, $fexit:ident, $kprobe:ident, $kret:ident) => {
        #[fentry]
        pub fn $fentry(_ctx: FEntryContext) -> i32 {
            push($code);
            0
        }

        #[fexit]
        pub fn $fexit(_ctx: FExitContext) -> i32 {
            pop();
            0
        }

        #[kprobe]
        pub fn $kprobe(_ctx: ProbeContext) -> u32 {
            push($code);
            0
        }

        #[kretprobe]
        pub fn $kret(_ctx: RetProbeContext) -> u32 {
            pop();
            0
        }
    };
}

caller_hooks!(CALLER_FOLIO_REFERENCED, hk_referenced_fentry, hk_referenced_fexit, hk_referenced_kprobe, hk_referenced_kretprobe);
caller_hooks!(CALLER_TRY_TO_UNMAP, hk_unmap_fentry, hk_unmap_fexit, hk_unmap_kprobe, hk_unmap_kretprobe);
caller_hooks!(CALLER_TRY_TO_MIGRATE, hk_migrate_fentry, hk_migrate_fexit, hk_migrate_kprobe, hk_migrate_kretprobe);
caller_hooks!(CALLER_REMOVE_MIGRATION_PTES, hk_rmptes_fentry, hk_rmptes_fexit, hk_rmptes_kprobe, hk_rmptes_kretprobe);

/// With the kernel stack: when the caller of rmap_walk was inlined (remove_migration_ptes
/// into migrate.c's callers) its frame is missing, and a return address names it. `ret`:
/// the return address a kprobe sees in its registers (at function entry the unwinder can
/// miss the immediate caller, arm64's LR not being saved yet); it goes first.
#[inline(always)]
fn walk_entry(ctx: *mut core::ffi::c_void, hook: u16, backend: u8, folio: u64, locked: u64, ret: u64) {
    emit_hook(hook, PH_ENTRY, backend, |ev| {
        ev.args[0] = folio;
        ev.args[1] = read(folio, hook_offset(|o| &o.folio_mapping));
        ev.args[2] = locked;
        let skip = (ret != 0) as usize;
        ev.stack[0] = ret;
        let buf = ev.stack[skip..].as_mut_ptr().cast();
        let len = ((HOOK_STACK_DEPTH - skip) * 8) as u32;
        // SAFETY: `stack[skip..]` is `len` bytes of ring buffer memory; flags 0 = kernel
        // stack. A failure leaves zeros.
        unsafe { bpf_get_stack(ctx, buf, len, 0) };
    });
}

/// The caller's return address at a kprobe on a function's first instruction.
#[inline(always)]
fn return_address(ctx: &ProbeContext) -> u64 {
    #[cfg(bpf_target_arch = "aarch64")]
    // SAFETY: the kprobe's pt_regs; x30 is the link register.
    return unsafe { (*ctx.regs).regs[30] };
    #[cfg(bpf_target_arch = "x86_64")]
    // SAFETY: the return address is the word at the stack pointer; probe_read tolerates faults.
    return unsafe { aya_ebpf::helpers::bpf_probe_read_kernel((*ctx.regs).rsp as *const u64) }.unwrap_or(0);
    #[allow(unreachable_code)]
    {
        let _ = ctx;
        0
    }
}

#[fentry]
pub fn hk_walk_fentry(ctx: FEntryContext) -> i32 {
    walk_entry(ctx.as_ptr(), HK_RMAP_WALK, BK_FENTRY, ctx.arg(0), 0, 0);
    0
}

#[kprobe]
pub fn hk_walk_kprobe(ctx: ProbeContext) -> u32 {
    walk_entry(ctx.as_ptr(), HK_RMAP_WALK, BK_KPROBE, ctx.arg(0).unwrap_or(0), 0, return_address(&ctx));
    0
}

#[fentry]
pub fn hk_walk_locked_fentry(ctx: FEntryContext) -> i32 {
    walk_entry(ctx.as_ptr(), HK_RMAP_WALK, BK_FENTRY, ctx.arg(0), 1, 0);
    0
}

#[kprobe]
pub fn hk_walk_locked_kprobe(ctx: ProbeContext) -> u32 {
    walk_entry(ctx.as_ptr(), HK_RMAP_WALK, BK_KPROBE, ctx.arg(0).unwrap_or(0), 1, return_address(&ctx));
    0
}

#[fentry]
pub fn hk_lock_fentry(ctx: FEntryContext) -> i32 {
    walk_entry(ctx.as_ptr(), HK_FOLIO_LOCK, BK_FENTRY, ctx.arg(0), 0, 0);
    0
}

#[kprobe]
pub fn hk_lock_kprobe(ctx: ProbeContext) -> u32 {
    walk_entry(ctx.as_ptr(), HK_FOLIO_LOCK, BK_KPROBE, ctx.arg(0).unwrap_or(0), 0, return_address(&ctx));
    0
}

fn lock_exit(backend: u8, ret: u64) {
    emit_hook(HK_FOLIO_LOCK, PH_EXIT, backend, |ev| ev.ret = ret);
}

#[fexit]
pub fn hk_lock_fexit(ctx: FExitContext) -> i32 {
    lock_exit(BK_FENTRY, crate::hook::fexit_ret(&ctx, 6));
    0
}

#[kretprobe]
pub fn hk_lock_kretprobe(ctx: RetProbeContext) -> u32 {
    lock_exit(BK_KPROBE, ctx.ret());
    0
}
