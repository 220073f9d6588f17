//! Process tree events for `trace`: fork (+ clone flags, to tell threads from processes),
//! exec and exit. Userspace follows the traced command's descendants with them; in a scoped
//! trace the kernel does too (a traced parent's child joins `FEED_TRACED` here), so only
//! the scope's records are sent.
use crate::emit::{emit, field, in_scope, join, offset, scoped};
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use lazyvma_model::trace_abi::{EV_EXEC, EV_EXIT, EV_FORK, EV_NEWTASK, NO_FIELD};

/// `sched:sched_process_fork`, run by the parent.
#[tracepoint]
pub fn trace_fork(ctx: TracePointContext) -> u32 {
    if !in_scope() {
        return 0;
    }
    let child: i32 = field(&ctx, offset(|o| &o.fork_child_pid));
    if scoped() {
        join(child as u32);
    }
    emit(EV_FORK, |ev| ev.arg = child as u32);
    0
}

/// `task:task_newtask`, run by the parent just before `sched_process_fork`.
#[tracepoint]
pub fn trace_newtask(ctx: TracePointContext) -> u32 {
    if !in_scope() {
        return 0;
    }
    let pid: i32 = field(&ctx, offset(|o| &o.newtask_pid));
    let flags: u64 = field(&ctx, offset(|o| &o.newtask_clone_flags));
    emit(EV_NEWTASK, |ev| {
        ev.arg = pid as u32;
        ev.ptr = flags;
    });
    0
}

#[tracepoint]
pub fn trace_exec(ctx: TracePointContext) -> u32 {
    if !in_scope() {
        return 0;
    }
    let old: i32 = field(&ctx, offset(|o| &o.exec_old_pid));
    emit(EV_EXEC, |ev| ev.arg = old as u32);
    0
}

#[tracepoint]
pub fn trace_exit(ctx: TracePointContext) -> u32 {
    if !in_scope() {
        return 0;
    }
    let off = offset(|o| &o.exit_group_dead);
    let dead = if off == NO_FIELD { 2 } else { field::<u8>(&ctx, off) as u32 };
    emit(EV_EXIT, |ev| ev.arg = dead);
    0
}
