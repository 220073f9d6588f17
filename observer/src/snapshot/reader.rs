//! Load the snapshot program with this kernel's offsets and read one full pass:
//! `iter/task_vma`, or where the kernel predates it (5.10, 5.11) `iter/task` walking each
//! mm's VMA list (observer-ebpf/src/iter_task.rs), which writes the same records.
use anyhow::Context;
use aya::{programs::Iter, Ebpf};
use std::path::Path;

use crate::load::{
    btf::{self, Offsets},
    ebpf, probe,
};

const PROGRAM: &str = "snapshot_task_vma";
const PROGRAM_TASK: &str = "snapshot_task";
/// What a refusal of the pass leaves: said with it, so the user knows where to go.
pub const STILL_WORKS: &str =
    "snapshot, serve's object gauges and trace -p's seeding need this pass; trace (system-wide, -- CMD, -p unseeded), serve's trace counters and doctor do not";

/// The kernel predates `iter/task_vma` (5.12): no pass can be taken at all. Typed, so
/// `serve` can go on without object gauges instead of refusing to start.
#[derive(Debug)]
pub struct NoTaskVmaIter;

impl std::fmt::Display for NoTaskVmaIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "this kernel has no iter/task_vma (added in 5.12; no `bpf_iter_task_vma` in its BTF): {STILL_WORKS}")
    }
}

impl std::error::Error for NoTaskVmaIter {}

/// The object with the iterator program loaded (the verifier's part), ready to `open`.
/// `fields`: chain entries carry their anon_vma's fields (a topology), else its address alone.
pub fn load(offsets: &Offsets, btf_path: Option<&Path>, fields: bool) -> anyhow::Result<Ebpf> {
    let (mut bpf, btf) = object(offsets, btf_path, fields, None)?;
    let prog: &mut Iter = bpf
        .program_mut(PROGRAM)
        .with_context(|| format!("BPF program `{PROGRAM}` missing from the object"))?
        .try_into()?;
    let r = prog.load("task_vma", &btf).map_err(|e| match e {
        // 5.10 and 5.11: the iter/task walk, or say what is missing (not aya's "unknown BTF type").
        aya::programs::ProgramError::Btf(aya::BtfError::UnknownBtfTypeName { .. }) => None,
        e => Some(anyhow::anyhow!("loading iter/task_vma: {}; {STILL_WORKS}", probe::chain(&e))),
    });
    match r {
        Ok(()) => Ok(bpf),
        Err(Some(e)) => Err(e),
        Err(None) => {
            drop((bpf, btf));
            load_task(offsets, btf_path, fields)
        }
    }
}

/// The BPF object with this kernel's offsets, and the BTF its iterators load against.
/// `level`: the verifier log's, when not aya's default.
fn object(offsets: &Offsets, btf_path: Option<&Path>, fields: bool, level: Option<aya::VerifierLogLevel>) -> anyhow::Result<(Ebpf, aya::Btf)> {
    let sys_btf;
    let mut loader = aya::EbpfLoader::new();
    // The loader's own parse of vmlinux's BTF goes at once: one parsed copy (~25 MB) at a time.
    loader.btf(None);
    if let Some(level) = level {
        loader.verifier_log_level(level);
    }
    for (name, value) in &offsets.globals {
        loader.override_global(name, value, true);
    }
    let fields = u64::from(fields);
    loader.override_global("ITER_AV_FIELDS", &fields, true);
    // Our parser already read this file (snapshot::run): only aya's own refusal is left.
    let btf = match btf_path {
        Some(p) => aya::Btf::parse_file(p, aya::Endianness::default()),
        None => aya::Btf::from_sys_fs(),
    }
    .map_err(|e| anyhow::anyhow!(btf::problem(btf_path, &probe::chain(&e))))?;
    // Relocations read the running kernel's BTF, as `EbpfLoader::new` would.
    if btf_path.is_none() {
        loader.btf(Some(&btf));
    } else {
        sys_btf = aya::Btf::from_sys_fs().ok();
        loader.btf(sys_btf.as_ref());
    }
    let bpf = loader.load(ebpf::object()).context("loading the BPF object")?;
    Ok((bpf, btf))
}

/// The kernel has no `iter/task_vma`: the `iter/task` walk, if this kernel still keeps the
/// VMA list (`mm->mmap`, gone in 6.1 with the maple tree, which came long after the iterator).
fn load_task(offsets: &Offsets, btf_path: Option<&Path>, fields: bool) -> anyhow::Result<Ebpf> {
    if offsets.globals.iter().any(|(n, v)| *n == "MM_MMAP" && *v == lazyvma_model::abi::FIELD_ABSENT) {
        return Err(anyhow::Error::new(NoTaskVmaIter));
    }
    // The verifier's messages and totals only: its instruction trace of a loop it checks
    // step by step outgrows any log buffer (ENOSPC would hide why it refused).
    let (mut bpf, btf) = object(offsets, btf_path, fields, Some(aya::VerifierLogLevel::STATS))?;
    let prog: &mut Iter = bpf
        .program_mut(PROGRAM_TASK)
        .with_context(|| format!("BPF program `{PROGRAM_TASK}` missing from the object"))?
        .try_into()?;
    prog.load("task", &btf).map_err(|e| match e {
        aya::programs::ProgramError::Btf(aya::BtfError::UnknownBtfTypeName { .. }) => anyhow::Error::new(NoTaskVmaIter),
        e => anyhow::anyhow!("loading iter/task (this kernel has no iter/task_vma): {}; {STILL_WORKS}", probe::chain(&e)),
    })?;
    Ok(bpf)
}

/// Which pass a loaded object takes: `iter/task_vma`, or `iter/task` where it is missing.
pub fn pass_name(bpf: &Ebpf) -> &'static str {
    if bpf.program(PROGRAM).is_some_and(|p| p.fd().is_ok()) { "iter/task_vma" } else { "iter/task" }
}

/// One pass of a loaded iterator: attached, its stream to read (`decode::each_vma`).
pub fn open(bpf: &mut Ebpf) -> anyhow::Result<std::fs::File> {
    let name = if pass_name(bpf) == "iter/task_vma" { PROGRAM } else { PROGRAM_TASK };
    let prog: &mut Iter = bpf.program_mut(name).context("the snapshot program is not loaded")?.try_into()?;
    let link = prog.attach().with_context(|| format!("attaching {}", if name == PROGRAM { "iter/task_vma" } else { "iter/task" }))?;
    let link = prog.take_link(link)?;
    link.into_file().context("creating the iterator")
}
