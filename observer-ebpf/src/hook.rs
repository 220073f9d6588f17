//! What every function hook shares: the per-task caller stack, the kretprobe argument
//! stash, VMA snapshots at BTF offsets, and emitting a `HookEvent` into trace's ring buffer.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel},
    macros::map,
    maps::HashMap,
};
use lazyvma_model::hook_abi::{HookEvent, HookOffsets, VmaSnap, EV_HOOK, FEXIT_RET_HELPER, FEXIT_RET_PROGRAMS, HOOK_CHAIN_MAX};

use crate::{emit, offsets::*};

/// Set by userspace from BTF (struct folio, vma_merge_struct); absent fields stay u64::MAX.
#[unsafe(no_mangle)]
pub static HOOK_OFFSETS: HookOffsets = HookOffsets::UNSET;

#[inline(always)]
pub fn hook_offset(f: impl FnOnce(&HookOffsets) -> &u64) -> u64 {
    // SAFETY: a read-only global patched by the loader; volatile so the loader's value is read.
    unsafe { core::ptr::read_volatile(f(&HOOK_OFFSETS)) }
}

/// pid_tgid → caller stack, one `CALLER_*` code per byte (innermost lowest). Entries
/// are removed when the stack empties.
#[map]
static HOOK_CALLERS: HashMap<u64, u64> = HashMap::with_max_entries(16384, 0);

/// (pid_tgid, hook slot) → entry arguments, for kretprobes (they see no arguments).
#[map]
static HOOK_STASH: HashMap<StashKey, [u64; 4]> = HashMap::with_max_entries(16384, 0);

#[repr(C)]
#[derive(Clone, Copy)]
pub struct StashKey {
    id: u64,
    slot: u64,
}

#[inline(always)]
pub fn read<T: Copy + Default>(base: u64, off: u64) -> T {
    if base == 0 || off == u64::MAX {
        return T::default();
    }
    // SAFETY: probe_read_kernel tolerates any address; a fault yields the default.
    unsafe { bpf_probe_read_kernel((base + off) as *const T) }.unwrap_or_default()
}

/// A `u32` at `off` in a BTF-typed kernel object (`tp_btf` programs only: a trusted
/// pointer, `off` a frozen read-only global the verifier sees as a constant): a plain load
/// instead of `read`'s `bpf_probe_read_kernel` call.
#[inline(always)]
pub fn load_btf(base: u64, off: u64) -> u32 {
    // SAFETY: the verifier checks the access against the object's BTF type.
    unsafe { core::ptr::read_volatile((base + off) as *const u32) }
}

/// Per `FEXIT_RET_PROGRAMS` entry: `FEXIT_RET_HELPER`, or the traced function's argument
/// count (set by userspace from BTF where `bpf_get_func_ret` is missing, before 5.17).
#[unsafe(no_mangle)]
static FEXIT_ARGS: [u64; FEXIT_RET_PROGRAMS.len()] = [FEXIT_RET_HELPER; FEXIT_RET_PROGRAMS.len()];

/// The traced function's return value in fexit program `i` of `FEXIT_RET_PROGRAMS`: the
/// trampoline stores it in the context right after the arguments, which is where
/// `bpf_get_func_ret` reads it; the helper's branch is pruned where it is missing.
#[inline(always)]
pub fn fexit_ret<T: Copy + Default + aya_ebpf::Argument>(ctx: &aya_ebpf::programs::FExitContext, i: usize) -> T {
    // SAFETY: a read-only global patched by the loader.
    let n = unsafe { core::ptr::read_volatile(&FEXIT_ARGS[i]) };
    if n == FEXIT_RET_HELPER {
        return ctx.ret().unwrap_or_default();
    }
    read::<T>(aya_ebpf::EbpfContext::as_ptr(ctx) as u64, 8 * n)
}

/// Argument `n` of an fentry program as a plain value (the verifier refuses a direct ctx
/// read of a pointer to a pointer: "arg0 type PTR is not a struct"): `bpf_get_func_arg`
/// where the kernel has it (5.17, with `bpf_get_func_ret`: `FEXIT_ARGS[i]` says, `i` the
/// function's fexit program), else the trampoline's context, where the helper reads it.
#[inline(always)]
pub fn fentry_arg(ctx: &aya_ebpf::programs::FEntryContext, i: usize, n: u32) -> u64 {
    let ctx = aya_ebpf::EbpfContext::as_ptr(ctx);
    // SAFETY: a read-only global patched by the loader.
    if unsafe { core::ptr::read_volatile(&FEXIT_ARGS[i]) } == FEXIT_RET_HELPER {
        let mut v = 0u64;
        // SAFETY: ctx is this fentry program's context; v a u64 on our stack.
        unsafe { aya_ebpf::helpers::generated::bpf_get_func_arg(ctx, n, &mut v) };
        return v;
    }
    read::<u64>(ctx as u64, 8 * n as u64)
}

pub fn callers() -> u64 {
    let id = bpf_get_current_pid_tgid();
    // SAFETY: a plain u64 value; copied out at once.
    unsafe { HOOK_CALLERS.get(id) }.copied().unwrap_or(0)
}

/// Entry of an operation whose inner clones, unlinks or walks should carry it.
pub fn push(code: u8) {
    let id = bpf_get_current_pid_tgid();
    let _ = HOOK_CALLERS.insert(id, (callers() << 8) | code as u64, 0);
}

/// Its exit. An exit without its entry (attached mid-call) only shifts the stack.
pub fn pop() {
    let id = bpf_get_current_pid_tgid();
    let rest = callers() >> 8;
    if rest == 0 {
        let _ = HOOK_CALLERS.remove(id);
    } else {
        let _ = HOOK_CALLERS.insert(id, rest, 0);
    }
}

pub fn stash(slot: u64, args: [u64; 4]) {
    let key = StashKey { id: bpf_get_current_pid_tgid(), slot };
    let _ = HOOK_STASH.insert(key, args, 0);
}

/// The arguments stashed at entry, removed; `None` if the entry was missed.
pub fn unstash(slot: u64) -> Option<[u64; 4]> {
    let key = StashKey { id: bpf_get_current_pid_tgid(), slot };
    // SAFETY: plain integers, copied out before the remove.
    let v = unsafe { HOOK_STASH.get(key) }.copied();
    if v.is_some() {
        let _ = HOOK_STASH.remove(key);
    }
    v
}

#[inline(always)]
fn chain_len(vma: u64) -> u64 {
    let head = vma + VMA_ANON_VMA_CHAIN.load();
    let mut node: u64 = read(head, 0);
    let mut n = 0;
    while n < HOOK_CHAIN_MAX && node != head && node != 0 {
        n += 1;
        node = read(node, 0);
    }
    n
}

#[inline(always)]
pub fn snap(out: &mut VmaSnap, vma: u64) {
    if vma == 0 {
        return;
    }
    out.vma = vma;
    out.mm = read(vma, VMA_VM_MM.load());
    out.start = read(vma, VMA_VM_START.load());
    out.end = read(vma, VMA_VM_END.load());
    out.pgoff = read(vma, VMA_VM_PGOFF.load());
    out.flags = read(vma, VMA_VM_FLAGS.load());
    out.anon_vma = read(vma, VMA_ANON_VMA.load());
    out.chain_len = chain_len(vma);
}

/// Reserve one `HookEvent`, zero it, set the common fields, let `fill` write the rest.
/// A full ring buffer is counted as lost, like trace's other events.
#[inline(always)]
pub fn emit_hook(hook: u16, phase: u8, backend: u8, fill: impl FnOnce(&mut HookEvent)) {
    let Some(mut slot) = emit::TRACE_EVENTS.reserve::<HookEvent>(0) else {
        emit::bump(lazyvma_model::trace_abi::CTR_LOST);
        return;
    };
    let id = bpf_get_current_pid_tgid();
    let p = slot.as_mut_ptr();
    // SAFETY: `p` is one reserved, exclusively ours HookEvent of ring buffer memory; zeroed
    // first, so every field is initialised before the reference is made.
    let ev = unsafe {
        core::ptr::write_bytes(p, 0, 1);
        &mut *p
    };
    ev.kind = EV_HOOK;
    ev.pid = id as u32;
    ev.tgid = (id >> 32) as u32;
    ev.hook = hook;
    ev.phase = phase;
    ev.backend = backend;
    // SAFETY: no preconditions.
    ev.ktime = unsafe { bpf_ktime_get_ns() };
    ev.callers = callers();
    fill(ev);
    slot.submit(crate::emit::wake_flags());
    emit::bump(lazyvma_model::trace_abi::CTR_SENT);
}
