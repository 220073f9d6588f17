//! Which BPF attach types this kernel allows, found by loading and attaching the tiny
//! programs of `observer-ebpf/src/probe.rs` — never guessed from version numbers.
//! Each attach type is tried on its own, so one refusal does not hide another.
use aya::{
    maps::RingBuf,
    programs::{BtfTracePoint, FEntry, FExit, Iter, KProbe, Program, ProgramError, RawTracePoint, TracePoint},
    Btf, Ebpf, EbpfLoader,
};
use std::path::Path;

use super::btf;

/// The function fentry/fexit/kprobe/kretprobe are tried on: global, in BTF and traceable on
/// every kernel lazyvma targets. The hooks' own functions are checked against kallsyms apart.
pub const PROBE_FUNCTION: &str = "vfs_read";
/// The tracepoint tracepoint/raw_tp/tp_btf (and the ringbuf writer) are tried on.
pub const PROBE_TRACEPOINT: (&str, &str) = ("sched", "sched_process_fork");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachType {
    Fentry,
    Fexit,
    Kprobe,
    Kretprobe,
    Tracepoint,
    RawTp,
    TpBtf,
    IterTaskVma,
    Ringbuf,
}

impl AttachType {
    pub const ALL: [AttachType; 9] =
        [Self::Fentry, Self::Fexit, Self::Kprobe, Self::Kretprobe, Self::Tracepoint, Self::RawTp, Self::TpBtf, Self::IterTaskVma, Self::Ringbuf];

    pub fn name(self) -> &'static str {
        match self {
            Self::Fentry => "fentry",
            Self::Fexit => "fexit",
            Self::Kprobe => "kprobe",
            Self::Kretprobe => "kretprobe",
            Self::Tracepoint => "tracepoint",
            Self::RawTp => "raw_tp",
            Self::TpBtf => "tp_btf",
            Self::IterTaskVma => "iter/task_vma",
            Self::Ringbuf => "ringbuf",
        }
    }

    /// What the attempt loads and attaches to, for the report.
    pub fn target(self) -> String {
        let (cat, tp) = PROBE_TRACEPOINT;
        match self {
            Self::Fentry | Self::Fexit | Self::Kprobe | Self::Kretprobe => PROBE_FUNCTION.into(),
            Self::Tracepoint => format!("{cat}:{tp}"),
            Self::RawTp | Self::TpBtf => tp.into(),
            Self::IterTaskVma => "task_vma (one pass read)".into(),
            Self::Ringbuf => format!("write from {cat}:{tp}, read back after a fork"),
        }
    }

    fn program(self) -> &'static str {
        match self {
            Self::Fentry => "probe_fentry",
            Self::Fexit => "probe_fexit",
            Self::Kprobe => "probe_kprobe",
            Self::Kretprobe => "probe_kretprobe",
            Self::Tracepoint => "probe_tracepoint",
            Self::RawTp => "probe_raw_tp",
            Self::TpBtf => "probe_tp_btf",
            Self::IterTaskVma => "probe_iter_task_vma",
            Self::Ringbuf => "probe_ringbuf",
        }
    }

    fn needs_btf(self) -> bool {
        matches!(self, Self::Fentry | Self::Fexit | Self::TpBtf | Self::IterTaskVma)
    }

    fn needs_tracefs(self) -> bool {
        matches!(self, Self::Tracepoint | Self::Ringbuf)
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct ProbeResult {
    pub ok: bool,
    pub error: Option<String>,
}

/// The outcome per attach type, in [`AttachType::ALL`] order.
#[derive(Clone, Debug)]
pub struct Probes(pub Vec<(AttachType, ProbeResult)>);

impl Probes {
    pub fn get(&self, t: AttachType) -> &ProbeResult {
        &self.0.iter().find(|(k, _)| *k == t).expect("every attach type is probed").1
    }
}

impl serde::Serialize for Probes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (t, o) in &self.0 {
            m.serialize_entry(t.name(), o)?;
        }
        m.end()
    }
}

/// Why the kernel BTF or tracefs is missing, when it is; probes that need it report that.
pub struct Prereqs<'a> {
    pub btf: Result<&'a Btf, String>,
    pub tracefs: Result<(), String>,
}

/// Try every attach type. Needs root. The programs are unloaded when this returns.
pub fn probe_all(object: &[u8], pre: &Prereqs<'_>) -> Probes {
    let tgid = std::process::id();
    let mut loader = EbpfLoader::new();
    loader.btf(pre.btf.as_ref().ok().copied()).override_global("PROBE_TGID", &tgid, true);
    let mut ebpf = match loader.load(object) {
        Ok(e) => Some(e),
        Err(e) => {
            let msg = format!("the BPF object did not load: {}", chain(&e));
            return Probes(AttachType::ALL.iter().map(|t| (*t, fail(msg.clone()))).collect());
        }
    };
    let outcomes = AttachType::ALL
        .iter()
        .map(|&t| {
            let out = if t.needs_btf() && pre.btf.is_err() {
                fail("needs kernel BTF, which did not load (see btf)".into())
            } else if let (true, Err(why)) = (t.needs_tracefs(), &pre.tracefs) {
                fail(why.clone())
            } else {
                match try_one(ebpf.as_mut().expect("loaded above"), t, pre.btf.as_ref().ok().copied()) {
                    Ok(()) => ProbeResult { ok: true, error: None },
                    Err(e) => fail(e),
                }
            };
            (t, out)
        })
        .collect();
    Probes(outcomes)
}

fn fail(error: String) -> ProbeResult {
    ProbeResult { ok: false, error: Some(error) }
}

fn prog<'a, T>(ebpf: &'a mut Ebpf, t: AttachType) -> Result<&'a mut T, String>
where
    &'a mut T: TryFrom<&'a mut Program, Error = ProgramError>,
{
    let p = ebpf.program_mut(t.program()).ok_or_else(|| format!("program {} missing from the BPF object", t.program()))?;
    p.try_into().map_err(|e: ProgramError| format!("program {}: {e}", t.program()))
}

fn try_one(ebpf: &mut Ebpf, t: AttachType, btf: Option<&Btf>) -> Result<(), String> {
    let (cat, tp) = PROBE_TRACEPOINT;
    let btf = || btf.ok_or_else(|| "needs kernel BTF".to_string());
    let load = |e| describe(t, Stage::Load, e);
    let attach = |e| describe(t, Stage::Attach, e);
    match t {
        AttachType::Fentry => {
            let p: &mut FEntry = prog(ebpf, t)?;
            p.load(PROBE_FUNCTION, btf()?).map_err(load)?;
            p.attach().map_err(attach)?;
        }
        AttachType::Fexit => {
            let p: &mut FExit = prog(ebpf, t)?;
            p.load(PROBE_FUNCTION, btf()?).map_err(load)?;
            p.attach().map_err(attach)?;
        }
        AttachType::Kprobe | AttachType::Kretprobe => {
            let p: &mut KProbe = prog(ebpf, t)?;
            p.load().map_err(load)?;
            p.attach(PROBE_FUNCTION, 0).map_err(attach)?;
        }
        AttachType::Tracepoint => {
            let p: &mut TracePoint = prog(ebpf, t)?;
            p.load().map_err(load)?;
            p.attach(cat, tp).map_err(attach)?;
        }
        AttachType::RawTp => {
            let p: &mut RawTracePoint = prog(ebpf, t)?;
            p.load().map_err(load)?;
            p.attach(tp).map_err(attach)?;
        }
        AttachType::TpBtf => {
            let p: &mut BtfTracePoint = prog(ebpf, t)?;
            p.load(tp, btf()?).map_err(load)?;
            p.attach().map_err(attach)?;
        }
        AttachType::IterTaskVma => {
            let p: &mut Iter = prog(ebpf, t)?;
            p.load("task_vma", btf()?).map_err(load)?;
            let id = p.attach().map_err(attach)?;
            let link = p.take_link(id).map_err(attach)?;
            // Reading the iterator runs the program over every task's VMAs.
            let mut file = link.into_file().map_err(|e| format!("iter: opening the link: {e}"))?;
            // A probe program outputs nothing: past 1 M VMAs a read says EAGAIN (`read_iter`).
            let mut sink = [0u8; 4096];
            while crate::sys::read_iter(&mut file, &mut sink).map_err(|e| format!("iter: reading: {e}"))? > 0 {}
        }
        AttachType::Ringbuf => ringbuf(ebpf, t)?,
    }
    Ok(())
}

/// The ringbuf is usable only if a record written in the kernel reaches us.
fn ringbuf(ebpf: &mut Ebpf, t: AttachType) -> Result<(), String> {
    let (cat, tp) = PROBE_TRACEPOINT;
    let p: &mut TracePoint = prog(ebpf, t)?;
    p.load().map_err(|e| describe(t, Stage::Load, e))?;
    p.attach(cat, tp).map_err(|e| describe(t, Stage::Attach, e))?;
    let map = ebpf.take_map("PROBE_RINGBUF").ok_or("map PROBE_RINGBUF missing from the BPF object")?;
    let mut rb = RingBuf::try_from(map).map_err(|e| format!("ringbuf map: {e}"))?;
    fork_and_reap()?;
    let me = std::process::id();
    while let Some(item) = rb.next() {
        if item.len() >= 4 && u32::from_ne_bytes(item[..4].try_into().expect("4 bytes")) == me {
            return Ok(());
        }
    }
    Err(format!("no record arrived in the ring buffer after a fork (tracepoint {cat}:{tp} attached)"))
}

/// One fork whose child exits at once: fires `sched_process_fork` in this process.
fn fork_and_reap() -> Result<(), String> {
    // SAFETY: the child only calls _exit, which is async-signal-safe.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(format!("fork failed: {}", std::io::Error::last_os_error())),
        0 => unsafe { libc::_exit(0) },
        child => {
            let mut status = 0;
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(child, &mut status, 0) };
            Ok(())
        }
    }
}

#[derive(Clone, Copy)]
enum Stage {
    Load,
    Attach,
}

/// The kernel's refusal in words: the errno by name and what it means for lazyvma.
fn describe(t: AttachType, stage: Stage, e: ProgramError) -> String {
    let stage_s = match stage {
        Stage::Load => "load",
        Stage::Attach => "attach",
    };
    if matches!(t, AttachType::Kprobe | AttachType::Kretprobe) && kprobes_not_built() {
        // aya 0.14 on >= 4.17 only tries the PMU: its error names .../kprobe/type (ENOENT).
        return format!("kprobes not built (CONFIG_KPROBES): no kprobe PMU, no kprobe_events ({stage_s}: {})", chain(&e));
    }
    let errno = match &e {
        ProgramError::LoadError { io_error, .. } => io_error.raw_os_error(),
        ProgramError::SyscallError(s) => s.io_error.raw_os_error(),
        _ => None,
    };
    match (t, stage, errno) {
        (AttachType::Fentry | AttachType::Fexit, Stage::Load, Some(libc::EPERM)) => {
            return format!("{} refused (EPERM): this kernel does not allow BPF trampolines", t.name());
        }
        (AttachType::Fentry | AttachType::Fexit, Stage::Attach, Some(524)) => {
            return format!("{} attach refused (ENOTSUPP): no BPF trampoline on this kernel/arch", t.name());
        }
        _ => {}
    }
    match e {
        ProgramError::LoadError { io_error, verifier_log } => {
            let last = verifier_log.to_string().lines().rev().find(|l| !l.trim().is_empty()).map(str::to_string);
            let mut s = format!("{} {stage_s} refused ({}): {io_error}", t.name(), super::refusal::errno_name(errno));
            if let Some(l) = last {
                s += &format!("; verifier: {l}");
            }
            s
        }
        ProgramError::SyscallError(se) => {
            format!("{} {stage_s}: {} failed ({}): {}", t.name(), se.call, super::refusal::errno_name(errno), se.io_error)
        }
        other => format!("{} {stage_s}: {}", t.name(), chain(&other)),
    }
}

fn kprobes_not_built() -> bool {
    !Path::new("/sys/bus/event_source/devices/kprobe").exists()
        && !Path::new("/sys/kernel/tracing/kprobe_events").exists()
        && !Path::new("/sys/kernel/debug/tracing/kprobe_events").exists()
}

/// An error and its sources on one line.
/// A verifier refusal among them is worded by [`refusal::describe`](super::refusal::describe):
/// one line naming the limit and the file the log went to, never the log itself.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    if let Some(ProgramError::LoadError { io_error, verifier_log }) = e.downcast_ref::<ProgramError>() {
        return super::refusal::describe(io_error, &verifier_log.to_string());
    }
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        if let Some(ProgramError::LoadError { io_error, verifier_log }) = c.downcast_ref::<ProgramError>() {
            s += &format!(": {}", super::refusal::describe(io_error, &verifier_log.to_string()));
            break;
        }
        let next = c.to_string();
        if !s.contains(&next) {
            s += &format!(": {next}");
        }
        cur = c.source();
    }
    s
}

/// aya's parse of the kernel BTF (`--btf PATH` or the running kernel's), a failure worded
/// by [`btf::problem`]. Our own parser reads the file first (`load::facts`): its causes
/// ("No such file", "bad magic") say more than aya's "error parsing BTF header"; `unusable`
/// is its `BtfError::Unusable` words, if that is how it failed.
pub fn parse_kernel_btf_after(given: Option<&std::path::Path>, unusable: Option<String>) -> Result<aya::Btf, String> {
    if let Some(e) = unusable {
        return Err(e);
    }
    match given {
        Some(p) => aya::Btf::parse_file(p, aya::Endianness::default()),
        None => aya::Btf::from_sys_fs(),
    }
    .map_err(|e| btf::problem(given, &chain(&e)))
}

/// The kernel BTF the probes and hooks need: `--btf PATH` (an unusable one is an error) or
/// the running kernel's (its absence is a finding, kept as the `Err` text). `unusable`: as
/// for [`parse_kernel_btf_after`].
pub fn kernel_btf_after(given: Option<&std::path::Path>, unusable: Option<String>) -> anyhow::Result<Result<aya::Btf, String>> {
    let btf = parse_kernel_btf_after(given, unusable);
    if let (Some(_), Err(e)) = (given, &btf) {
        anyhow::bail!("{e}");
    }
    Ok(btf)
}

/// Is `category:name` a tracepoint of this kernel (tracefs mounted)?
pub fn has_tracepoint(tp: &str) -> bool {
    let (cat, name) = tp.split_once(':').unwrap_or(("", tp));
    std::path::Path::new("/sys/kernel/tracing/events").join(cat).join(name).is_dir()
}
