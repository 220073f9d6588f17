//! Process tree events for `trace`: fork (+ clone flags, to tell threads from processes),
//! exec and exit. Userspace follows the traced command's descendants with them; in a scoped
//! trace the kernel does too (a traced parent's child joins `FEED_TRACED` here), so only
//! the scope's records are sent.
//!
//! Each has a `tp_btf` program (the tracepoint's own arguments, no trace record built: the
//! classic tracepoint copies its fields into a perf buffer before the program runs) and a
//! classic one, attached where the kernel refuses `tp_btf` (no BTF, before 5.5).
use crate::{
    emit::{emit, field, in_scope, join, offset, scoped},
    slab::serve_system,
    hook::read,
};
use aya_ebpf::{
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use lazyvma_model::trace_abi::{EV_EXEC, EV_EXIT, EV_FORK, EV_NEWTASK, NO_FIELD};

/// This task's process events are wanted: `serve` system-wide counts slab events in the
/// kernel and keeps no process tree, so it is sent none.
#[inline(always)]
fn followed() -> bool {
    !serve_system() && in_scope()
}

/// `task->pid`, at its BTF offset (`TRACE_CONTEXT`).
#[inline(always)]
fn pid_of(task: u64) -> i32 {
    read::<i32>(task, crate::why::context(|c| &c.task_pid))
}

#[inline(always)]
fn fork(child: i32) {
    if scoped() {
        join(child as u32);
    }
    emit(EV_FORK, |ev| ev.arg = child as u32);
}

#[inline(always)]
fn newtask(pid: i32, flags: u64) {
    emit(EV_NEWTASK, |ev| {
        ev.arg = pid as u32;
        ev.ptr = flags;
    });
}

/// `sched:sched_process_fork`, run by the parent.
#[tracepoint]
pub fn trace_fork(ctx: TracePointContext) -> u32 {
    if followed() {
        fork(field(&ctx, offset(|o| &o.fork_child_pid)));
    }
    0
}

/// `sched_process_fork(struct task_struct *parent, struct task_struct *child)`.
#[btf_tracepoint]
pub fn trace_fork_btf(ctx: BtfTracePointContext) -> i32 {
    if followed() {
        fork(pid_of(ctx.arg::<u64>(1)));
    }
    0
}

/// `task:task_newtask`, run by the parent just before `sched_process_fork`.
#[tracepoint]
pub fn trace_newtask(ctx: TracePointContext) -> u32 {
    if followed() {
        newtask(field(&ctx, offset(|o| &o.newtask_pid)), field(&ctx, offset(|o| &o.newtask_clone_flags)));
    }
    0
}

/// `task_newtask(struct task_struct *task, unsigned long clone_flags)`.
#[btf_tracepoint]
pub fn trace_newtask_btf(ctx: BtfTracePointContext) -> i32 {
    if followed() {
        newtask(pid_of(ctx.arg::<u64>(0)), ctx.arg::<u64>(1));
    }
    0
}

#[tracepoint]
pub fn trace_exec(ctx: TracePointContext) -> u32 {
    if followed() {
        let old: i32 = field(&ctx, offset(|o| &o.exec_old_pid));
        emit(EV_EXEC, |ev| ev.arg = old as u32);
    }
    0
}

/// `sched_process_exec(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)`.
#[btf_tracepoint]
pub fn trace_exec_btf(ctx: BtfTracePointContext) -> i32 {
    if followed() {
        let old = ctx.arg::<u64>(1) as i32;
        emit(EV_EXEC, |ev| ev.arg = old as u32);
    }
    0
}

#[tracepoint]
pub fn trace_exit(ctx: TracePointContext) -> u32 {
    if !followed() {
        return 0;
    }
    let off = offset(|o| &o.exit_group_dead);
    let dead = if off == NO_FIELD { 2 } else { field::<u8>(&ctx, off) as u32 };
    emit(EV_EXIT, |ev| ev.arg = dead);
    0
}

/// `sched_process_exit(struct task_struct *p)`: kernels without `group_dead`.
#[btf_tracepoint]
pub fn trace_exit_btf(_ctx: BtfTracePointContext) -> i32 {
    if followed() {
        emit(EV_EXIT, |ev| ev.arg = 2);
    }
    0
}

/// `sched_process_exit(struct task_struct *p, bool group_dead)` (the classic format has
/// the `group_dead` field exactly when the prototype has the argument).
#[btf_tracepoint]
pub fn trace_exit_btf_dead(ctx: BtfTracePointContext) -> i32 {
    if followed() {
        let dead = (ctx.arg::<u64>(1) & 0xff != 0) as u32;
        emit(EV_EXIT, |ev| ev.arg = dead);
    }
    0
}
