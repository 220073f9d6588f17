//! Why a slab event happened, from the task's context instead of its kernel stack: the
//! syscall it is in (`pt_regs`' syscall number, one table lookup) and whether it is
//! exiting. Userspace names the codes (`observer/src/trace/ingest/reason.rs`); what the context
//! cannot tell (a split from a merge inside mprotect) stays ambiguous unless `--stacks`.
use aya_ebpf::helpers::{
    bpf_probe_read_kernel,
    generated::{bpf_get_current_task, bpf_get_current_task_btf, bpf_task_pt_regs},
};
use lazyvma_model::trace_abi::{why_of_class, ContextOffsets, CTX_SYSCALLS, FN_CLONE, FN_PUT, FN_UNLINK, NO_FIELD, PF_EXITING, SC_NONE, WHY_EXIT, WHY_FORK, WHY_FUNCTION};

/// `task_struct.flags`, the syscall number in `pt_regs` and the syscalls' classes, set by userspace.
#[unsafe(no_mangle)]
static TRACE_CONTEXT: ContextOffsets = ContextOffsets::UNSET;

/// One field of `TRACE_CONTEXT`, read alone (the whole struct would not fit the BPF stack);
/// volatile so the loader's value is read, not the default.
#[inline(always)]
pub fn context<T: Copy>(f: impl FnOnce(&ContextOffsets) -> &T) -> T {
    // SAFETY: a read-only global patched by the loader.
    unsafe { core::ptr::read_volatile(f(&TRACE_CONTEXT)) }
}

/// The `WHY_*` of an event of function `func`; `regs`: `bpf_task_pt_regs` may be called
/// (5.15+), else only an exit is told; `btf`: a `tp_btf` program (6.1+), which reads the
/// task's flags and syscall number by direct loads.
#[inline(always)]
pub fn why(alloc: bool, func: u32, regs: bool, btf: bool) -> u32 {
    let teardown = !alloc && (func == FN_UNLINK || func == FN_PUT);
    if !(teardown || (alloc && func == FN_CLONE)) {
        return WHY_FUNCTION;
    }
    let task_flags = context(|c| &c.task_flags);
    if teardown && task_flags != NO_FIELD {
        let flags = if btf {
            // SAFETY: the current task as a trusted BTF pointer.
            crate::hook::load_btf(unsafe { bpf_get_current_task_btf() } as u64, task_flags)
        } else {
            // SAFETY: the current task; the read tolerates any address.
            let task = unsafe { bpf_get_current_task() };
            unsafe { bpf_probe_read_kernel((task + task_flags) as *const u32) }.unwrap_or(0)
        };
        if flags & PF_EXITING != 0 {
            return WHY_EXIT;
        }
    }
    let at = context(|c| &c.regs_syscall);
    if !regs || at == NO_FIELD {
        return WHY_FUNCTION;
    }
    // SAFETY: the current task (a trusted BTF pointer); the read tolerates any address.
    let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf().cast()) } as u64;
    if regs == 0 {
        return WHY_FUNCTION;
    }
    // The low half of x86's `orig_ax`, all of arm64's `s32 syscallno`.
    let nr = if btf { crate::hook::load_btf(regs, at) as i32 } else { unsafe { bpf_probe_read_kernel((regs + at) as *const i32) }.unwrap_or(-1) } as i64 as u64;
    let mut class = SC_NONE;
    let mut i = 0;
    while i < CTX_SYSCALLS {
        if context(|c| &c.syscalls[i]) == nr {
            class = context(|c| &c.classes[i]);
            break;
        }
        i += 1;
    }
    why_of_class(class, alloc, func == FN_PUT)
}

/// Under `--stacks`, whether the stack is still taken: all but a fork's clone and an
/// exit's teardown, whose context is certain (as before `--stacks` was needed).
#[inline(always)]
pub fn stack_tells_more(why: u32) -> bool {
    why != WHY_FORK && why != WHY_EXIT
}
