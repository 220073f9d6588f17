//! Loading and attaching `trace`'s always-on programs (observer-ebpf `slab.rs`, `sched.rs`,
//! `marker.rs`) from the embedded object, with the BTF offsets the function hooks read
//! (attached by `trace::attach`), reading its ring buffer and lost-event counters.
use crate::load::probe::chain;
use crate::load::ebpf;
use anyhow::{bail, Context};
use aya::{
    maps::{MapData, PerCpuArray, RingBuf},
    programs::TracePoint,
    Ebpf, EbpfLoader,
};
use lazyvma_model::trace_abi::{HookOffsets, LockOffsets, TpOffsets, CTR_LOST, CTR_SENT, FN_COUNT};
use std::{os::fd::AsRawFd, time::Duration};

/// `TpOffsets` as the loader wants it (plain integers, `#[repr(C)]`).
#[derive(Clone, Copy)]
#[repr(transparent)]
struct PodOffsets(TpOffsets);
// SAFETY: TpOffsets is #[repr(C)] and only u64 fields.
unsafe impl aya::Pod for PodOffsets {}

#[derive(Clone, Copy)]
#[repr(transparent)]
struct PodHookOffsets(HookOffsets);
// SAFETY: HookOffsets is #[repr(C)] and only u64 fields.
unsafe impl aya::Pod for PodHookOffsets {}

#[derive(Clone, Copy)]
#[repr(transparent)]
struct PodLockOffsets(LockOffsets);
// SAFETY: LockOffsets is #[repr(C)] and only u64 fields.
unsafe impl aya::Pod for PodLockOffsets {}

/// (program, tracepoint category, name, required). Without the madvise tracepoint
/// (no FTRACE_SYSCALLS) only phases are lost.
const PROGRAMS: &[(&str, &str, &str, bool)] = &[
    ("trace_slab_alloc", "kmem", "kmem_cache_alloc", true),
    ("trace_slab_free", "kmem", "kmem_cache_free", true),
    ("trace_newtask", "task", "task_newtask", true),
    ("trace_fork", "sched", "sched_process_fork", true),
    ("trace_exec", "sched", "sched_process_exec", true),
    ("trace_exit", "sched", "sched_process_exit", true),
    ("trace_marker", "syscalls", "sys_enter_madvise", false),
];

/// What `trace::feed` needs (command and -p scopes only): VMA syscalls, the user fault
/// address (x86 only), the prepared VMA. Without them the model is marked incomplete.
const FEED_PROGRAMS: &[(&str, &str, &str)] = &[
    ("trace_feed_fork", "sched", "sched_process_fork"),
    ("trace_sys_enter", "raw_syscalls", "sys_enter"),
    ("trace_sys_exit", "raw_syscalls", "sys_exit"),
    ("trace_user_fault", "exceptions", "page_fault_user"),
    ("trace_kernel_fault", "exceptions", "page_fault_kernel"),
    ("trace_prepare_vma", "kmem", "kmem_cache_alloc"),
    ("trace_mmap_lock", "mmap_lock", "mmap_lock_acquire_returned"),
];

pub struct Config {
    pub offsets: TpOffsets,
    pub ranges: [(u64, u64); FN_COUNT],
    /// Bit i: take the kernel stack for events of FUNCTIONS[i].
    pub stack_fns: u32,
    pub ringbuf_bytes: u32,
    /// `offsets.rs` globals from BTF (`load::btf::Offsets`); empty when BTF did not resolve
    /// (then no function hook is attached).
    pub btf_globals: Vec<(&'static str, u64)>,
    pub hook_offsets: HookOffsets,
    /// The lock programs' offsets and set size; None leaves them inert (never attached).
    pub locks: Option<super::locks::Setup>,
    /// Attach `FEED_PROGRAMS` (the model is fed).
    pub feed: bool,
    /// `vm_area_struct.vm_file` from BTF (u64::MAX: unknown).
    pub vm_file: u64,
    /// [start, end) of the page fault entry: a prepare below it may use the fault address.
    pub fault_fn: (u64, u64),
}

pub struct Loaded {
    /// Owns the programs and their links: dropping it detaches them. The maps were taken
    /// out, so they outlive it for the final drain.
    ebpf: Option<Ebpf>,
    ring: RingBuf<MapData>,
    counters: PerCpuArray<MapData, u64>,
    /// `category:name` of each tracepoint attached.
    pub attached: Vec<String>,
    /// Optional tracepoints that did not attach, with why.
    pub missing: Vec<(String, String)>,
}

pub fn load(cfg: &Config) -> anyhow::Result<Loaded> {
    let starts: [u64; FN_COUNT] = cfg.ranges.map(|r| r.0);
    let ends: [u64; FN_COUNT] = cfg.ranges.map(|r| r.1);
    let offsets = PodOffsets(cfg.offsets);
    let hook_offsets = PodHookOffsets(cfg.hook_offsets);
    let syscall_ids = super::feed::syscall_ids();
    let lock_fields = super::order::lock_fields();
    let fault_fn = [cfg.fault_fn.0, cfg.fault_fn.1];
    let mut loader = EbpfLoader::new();
    for (name, value) in &cfg.btf_globals {
        loader.override_global(name, value, true);
    }
    loader.override_global("HOOK_OFFSETS", &hook_offsets, true);
    let lock_offsets = PodLockOffsets(cfg.locks.map_or(LockOffsets::UNSET, |l| l.offsets));
    loader.override_global("LOCK_OFFSETS", &lock_offsets, true);
    let ksm_offsets = super::ksm::Pod(super::ksm::offsets());
    loader.override_global("KSM_OFFSETS", &ksm_offsets, true);
    if let Some(l) = cfg.locks {
        loader.map_max_entries("LOCK_ANON_VMAS", l.set_entries);
    }
    loader
        .override_global("TRACE_TP_OFFSETS", &offsets, true)
        .override_global("TRACE_FN_START", &starts, true)
        .override_global("TRACE_FN_END", &ends, true)
        .override_global("TRACE_STACK_FNS", &cfg.stack_fns, true)
        .override_global("SYSCALL_IDS", &syscall_ids, true)
        .override_global("FEED_VM_FILE", &cfg.vm_file, true)
        .override_global("FEED_LOCK_FIELDS", &lock_fields, true)
        .override_global("PLACE_FAULT_FN", &fault_fn, true)
        .map_max_entries("TRACE_EVENTS", cfg.ringbuf_bytes);
    let mut bpf = loader.load(ebpf::object()).map_err(|e| anyhow::anyhow!("loading the BPF object: {}", chain(&e)))?;
    let mut attached = Vec::new();
    let mut missing = Vec::new();
    for &(prog, cat, name, required) in PROGRAMS {
        let tp = format!("{cat}:{name}");
        match attach(&mut bpf, prog, cat, name) {
            Ok(()) => attached.push(tp),
            Err(e) if required => bail!("tracepoint {tp}: {e}"),
            Err(e) => missing.push((tp, e)),
        }
    }
    for &(prog, cat, name) in FEED_PROGRAMS.iter().filter(|_| cfg.feed) {
        let tp = format!("{cat}:{name}");
        if prog == "trace_mmap_lock" && lock_fields.contains(&lazyvma_model::trace_abi::NO_FIELD) {
            missing.push((tp, "no `write`/`success` field in its format; the model is not fed what it needs".into()));
            continue;
        }
        match attach(&mut bpf, prog, cat, name) {
            Ok(()) => attached.push(tp),
            Err(e) => missing.push((tp, format!("{e}; the model is not fed what it needs"))),
        }
    }
    let ring = RingBuf::try_from(bpf.take_map("TRACE_EVENTS").context("map TRACE_EVENTS missing from the BPF object")?)?;
    let counters = PerCpuArray::try_from(bpf.take_map("TRACE_COUNTERS").context("map TRACE_COUNTERS missing from the BPF object")?)?;
    Ok(Loaded { ebpf: Some(bpf), ring, counters, attached, missing })
}

fn attach(bpf: &mut Ebpf, prog: &str, cat: &str, name: &str) -> Result<(), String> {
    let p: &mut TracePoint = bpf
        .program_mut(prog)
        .ok_or_else(|| format!("program {prog} missing from the BPF object"))?
        .try_into()
        .map_err(|e| format!("program {prog}: {e}"))?;
    p.load().map_err(|e| format!("loading {prog}: {}", chain(&e)))?;
    p.attach(cat, name).map_err(|e| format!("attaching {prog}: {}", chain(&e)))?;
    Ok(())
}

impl Loaded {
    /// Processes whose records the feed programs send (their forks join in BPF).
    pub fn feed_traced(&mut self, tgids: &[u32]) -> anyhow::Result<()> {
        let map = self.ebpf_mut().map_mut("FEED_TRACED").context("map FEED_TRACED missing from the BPF object")?;
        let mut m: aya::maps::HashMap<_, u32, u8> = aya::maps::HashMap::try_from(map)?;
        for t in tgids {
            m.insert(t, 1, 0).with_context(|| format!("FEED_TRACED: inserting {t}"))?;
        }
        Ok(())
    }

    /// The object, to attach the function hooks to (`trace::attach`).
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        self.ebpf.as_mut().expect("attached before detach")
    }

    /// Detach every program: after this no event is sent, so a final drain sees them all and
    /// received = sent holds exactly (a lost record was never sent).
    pub fn detach(&mut self) {
        self.ebpf = None;
    }

    /// Wait up to `timeout` for records, then hand every available one to `f`.
    pub fn poll(&mut self, timeout: Duration, mut f: impl FnMut(&[u8])) {
        let mut pfd = libc::pollfd { fd: self.ring.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd; EINTR (a signal) just ends the wait early.
        unsafe { libc::poll(&mut pfd, 1, timeout.as_millis().min(i32::MAX as u128) as i32) };
        self.drain(&mut f);
    }

    pub fn drain(&mut self, f: &mut impl FnMut(&[u8])) {
        while let Some(item) = self.ring.next() {
            f(&item);
        }
    }

    fn counter(&self, slot: u32) -> anyhow::Result<u64> {
        Ok(self.counters.get(&slot, 0).context("reading TRACE_COUNTERS")?.iter().sum())
    }

    /// (sent, lost) summed over CPUs.
    pub fn counters(&self) -> anyhow::Result<(u64, u64)> {
        Ok((self.counter(CTR_SENT)?, self.counter(CTR_LOST)?))
    }
}
