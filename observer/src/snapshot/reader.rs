//! Load the snapshot program with this kernel's offsets and read one full pass:
//! `iter/task_vma`, or where the kernel predates it (5.10, 5.11) `iter/task` walking each
//! mm's VMA list (observer-ebpf/src/iter_task.rs), which writes the same records, in as
//! many passes as the longest list needs ([`Passes`]).
use anyhow::Context;
use aya::{programs::Iter, Ebpf};
use lazyvma_model::abi::{CutRecord, Resume, CUT_PASSES, CUT_RECORD_SIZE, REC_CUT, RESUME_DONE, RESUME_SIZE, WALK_PASSES};
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
    let prog: &mut Iter = bpf.program_mut(PROGRAM).with_context(|| format!("BPF program `{PROGRAM}` missing from the object"))?.try_into()?;
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
    let prog: &mut Iter = bpf.program_mut(PROGRAM_TASK).with_context(|| format!("BPF program `{PROGRAM_TASK}` missing from the object"))?.try_into()?;
    prog.load("task", &btf).map_err(|e| match e {
        aya::programs::ProgramError::Btf(aya::BtfError::UnknownBtfTypeName { .. }) => anyhow::Error::new(NoTaskVmaIter),
        e => anyhow::anyhow!("loading iter/task (this kernel has no iter/task_vma): {}; {STILL_WORKS}", probe::chain(&e)),
    })?;
    Ok(bpf)
}

/// Which pass a loaded object takes: `iter/task_vma`, or `iter/task` where it is missing.
pub fn pass_name(bpf: &Ebpf) -> &'static str {
    if bpf.program(PROGRAM).is_some_and(|p| p.fd().is_ok()) {
        "iter/task_vma"
    } else {
        "iter/task"
    }
}

/// The stream of a snapshot (`decode::each_vma`): one `iter/task_vma` pass; or `iter/task`
/// passes one after the other, while a pass leaves a task to resume (iter_task.rs), at most
/// [`WALK_PASSES`]. A task still unfinished then, or cut in one pass and not met again in
/// the next (it exited or exec'd), ends the stream with the [`CutRecord`] userspace writes.
pub fn open(bpf: &mut Ebpf) -> anyhow::Result<Passes<'_>> {
    let task = pass_name(bpf) == "iter/task";
    let file = attach(bpf)?;
    Ok(Passes { bpf, file: Some(file), task, pass: 0, tail: Vec::new(), at: 0 })
}

fn attach(bpf: &mut Ebpf) -> anyhow::Result<std::fs::File> {
    let name = if pass_name(bpf) == "iter/task_vma" { PROGRAM } else { PROGRAM_TASK };
    let prog: &mut Iter = bpf.program_mut(name).context("the snapshot program is not loaded")?.try_into()?;
    let link = prog.attach().with_context(|| format!("attaching {}", if name == PROGRAM { "iter/task_vma" } else { "iter/task" }))?;
    let link = prog.take_link(link)?;
    link.into_file().context("creating the iterator")
}

pub struct Passes<'a> {
    bpf: &'a mut Ebpf,
    file: Option<std::fs::File>,
    /// `iter/task`: passes may follow.
    task: bool,
    pass: u64,
    /// The cut records written after the last pass, and how far they were read.
    tail: Vec<u8>,
    at: usize,
}

impl Passes<'_> {
    /// How many passes were taken.
    pub fn passes(&self) -> u64 {
        self.pass + 1
    }

    /// After pass `self.pass`: the resume entries (task->pid, entry).
    fn entries(&self) -> anyhow::Result<Vec<(u32, Resume)>> {
        let map = self.bpf.map("TASK_RESUME").context("the TASK_RESUME map is missing from the object")?;
        let m: aya::maps::HashMap<_, u32, [u64; RESUME_SIZE / 8]> = aya::maps::HashMap::try_from(map)?;
        let mut out = Vec::new();
        for kv in m.iter() {
            let (tid, v) = kv.context("reading TASK_RESUME")?;
            // SAFETY: Resume is RESUME_SIZE bytes of u64s, the map's value as the program wrote it.
            out.push((tid, unsafe { std::mem::transmute::<[u64; RESUME_SIZE / 8], Resume>(v) }));
        }
        Ok(out)
    }

    /// The pass read to its end: the next one, or the cuts that end the stream.
    fn next_pass(&mut self) -> anyhow::Result<()> {
        let entries = self.entries()?;
        let pending = entries.iter().any(|(_, r)| r.pass == self.pass && r.next != RESUME_DONE);
        if pending && self.pass + 1 < u64::from(WALK_PASSES) {
            self.pass += 1;
            let mut arr: aya::maps::Array<_, u64> =
                aya::maps::Array::try_from(self.bpf.map_mut("ITER_PASS").context("the ITER_PASS map is missing from the object")?)?;
            arr.set(0, self.pass, 0).context("setting the pass number")?;
            self.file = Some(attach(self.bpf)?);
            return Ok(());
        }
        for (tid, r) in entries.iter().filter(|(_, r)| r.next != RESUME_DONE) {
            let raced = if r.pass == self.pass { CUT_PASSES } else { 1 };
            let c = CutRecord { kind: REC_CUT, pid: r.tgid as u32, tid: *tid, raced, mm: r.mm, vmas: r.total, map_count: r.map_count };
            // SAFETY: a plain #[repr(C)] record of integers.
            self.tail.extend_from_slice(unsafe { std::slice::from_raw_parts((&c as *const CutRecord).cast::<u8>(), CUT_RECORD_SIZE) });
        }
        Ok(())
    }
}

impl std::io::Read for Passes<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while let Some(f) = self.file.as_mut() {
            let n = crate::sys::read_iter(f, buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            self.file = None;
            if self.task {
                self.next_pass().map_err(|e| std::io::Error::other(format!("{e:#}")))?;
            }
        }
        let n = (self.tail.len() - self.at).min(buf.len());
        buf[..n].copy_from_slice(&self.tail[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
