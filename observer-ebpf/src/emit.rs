//! `trace`'s transport: one ring buffer, and per-CPU counters of what was sent and what
//! could not be reserved, so userspace can show every lost event.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::map,
    maps::{PerCpuArray, RingBuf},
};
use lazyvma_model::trace_abi::{TpOffsets, TraceEvent, CTR_COUNT, CTR_LOST, CTR_SENT, NO_FIELD};

/// Small here, so loading the object for `doctor` costs little; `trace` sets its size.
#[map]
pub static TRACE_EVENTS: RingBuf = RingBuf::with_byte_size(64 * 1024, 0);

#[map]
pub static TRACE_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(CTR_COUNT, 0);

/// Tracepoint field offsets from tracefs `format` files, set by userspace before load.
#[unsafe(no_mangle)]
pub static TRACE_TP_OFFSETS: TpOffsets = TpOffsets::UNSET;

/// One field offset; volatile so the loader's value is read, not the default.
#[inline(always)]
pub fn offset(f: impl FnOnce(&TpOffsets) -> &u64) -> u64 {
    // SAFETY: a read-only global patched by the loader.
    unsafe { core::ptr::read_volatile(f(&TRACE_TP_OFFSETS)) }
}

/// Reads a tracepoint field at an injected offset; 0 when the kernel has no such field.
#[inline(always)]
pub fn field<T: Default>(ctx: &aya_ebpf::programs::TracePointContext, off: u64) -> T {
    if off == NO_FIELD {
        return T::default();
    }
    // SAFETY: bpf_probe_read_kernel of the tracepoint record; a failed read yields 0.
    unsafe { ctx.read_at::<T>(off as usize) }.unwrap_or_default()
}

pub fn bump(slot: u32) {
    if let Some(p) = TRACE_COUNTERS.get_ptr_mut(slot) {
        // SAFETY: this CPU's slot; BPF programs do not migrate CPU while running.
        unsafe { *p += 1 };
    }
}

/// Reserve one event, let `fill` write it (after the common fields), commit. A full ring
/// buffer is counted in `CTR_LOST`, never dropped silently. False when lost.
#[inline(always)]
pub fn emit(kind: u32, fill: impl FnOnce(&mut TraceEvent)) -> bool {
    let Some(mut slot) = TRACE_EVENTS.reserve::<TraceEvent>(0) else {
        bump(CTR_LOST);
        return false;
    };
    let id = bpf_get_current_pid_tgid();
    // SAFETY: ktime has no preconditions.
    let ktime = unsafe { bpf_ktime_get_ns() };
    let ev = slot.write(TraceEvent { kind, pid: id as u32, tgid: (id >> 32) as u32, ktime, ..TraceEvent::default() });
    fill(ev);
    slot.submit(0);
    bump(CTR_SENT);
    true
}
