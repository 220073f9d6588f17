//! Tiny programs `lazyvma doctor` loads to find out, by trying, which attach types work.
//! None names its target: userspace picks the function or tracepoint at load/attach
//! time (`observer/src/load/probe.rs`), so one object serves every kernel.
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{btf_tracepoint, fentry, fexit, kprobe, kretprobe, map, raw_tracepoint, tracepoint},
    maps::RingBuf,
    programs::{
        BtfTracePointContext, FEntryContext, FExitContext, ProbeContext, RawTracePointContext,
        RetProbeContext, TracePointContext,
    },
};

/// The tgid whose forks `probe_ringbuf` reports; set by userspace before load.
#[unsafe(no_mangle)]
static PROBE_TGID: u32 = 0;

/// `probe_ringbuf` writes the forking tgid here, so userspace can see a record arrive.
#[map]
static PROBE_RINGBUF: RingBuf = RingBuf::with_byte_size(4096, 0);

#[fentry]
pub fn probe_fentry(_ctx: FEntryContext) -> i32 {
    0
}

#[fexit]
pub fn probe_fexit(_ctx: FExitContext) -> i32 {
    0
}

#[kprobe]
pub fn probe_kprobe(_ctx: ProbeContext) -> u32 {
    0
}

#[kretprobe]
pub fn probe_kretprobe(_ctx: RetProbeContext) -> u32 {
    0
}

#[tracepoint]
pub fn probe_tracepoint(_ctx: TracePointContext) -> u32 {
    0
}

#[raw_tracepoint]
pub fn probe_raw_tp(_ctx: RawTracePointContext) -> i32 {
    0
}

#[btf_tracepoint]
pub fn probe_tp_btf(_ctx: BtfTracePointContext) -> i32 {
    0
}

/// aya-ebpf 0.2 has no `#[iter]` macro; ctx[0]=meta, ctx[1]=task, ctx[2]=vma.
#[unsafe(link_section = "iter/task_vma")]
#[unsafe(no_mangle)]
pub extern "C" fn probe_iter_task_vma(_ctx: *const u64) -> i32 {
    0
}

/// Attached to `sched:sched_process_fork`; runs in the parent, so the current tgid is the forker.
#[tracepoint]
pub fn probe_ringbuf(_ctx: TracePointContext) -> u32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: a read-only global patched by the loader; volatile so it is not folded to 0.
    let want = unsafe { core::ptr::read_volatile(&PROBE_TGID) };
    if tgid == want {
        if let Some(mut slot) = PROBE_RINGBUF.reserve::<u32>(0) {
            slot.write(tgid);
            slot.submit(0);
        }
    }
    0
}
