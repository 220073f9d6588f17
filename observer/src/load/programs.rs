//! `doctor`'s check of the real programs: every program of the embedded object that
//! snapshot, trace or serve loads on this kernel is loaded (verified, not attached) with
//! this kernel's offsets, and reported loadable or not with the kernel's reason in one
//! line. The attach probes' stand-ins (`probe_*`) and the bench's empty programs
//! (`floor_*`) are not among them.
use aya::{programs::Program, Btf, EbpfLoader};

use super::{
    btf::Offsets,
    ebpf,
    probe::{chain, AttachType, Probes},
};

#[derive(Clone, Debug, serde::Serialize)]
pub struct Checked {
    pub program: String,
    /// aya's section kind: tracepoint, kprobe, fentry, iter, ...
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `Some(true)` loaded; `Some(false)` refused; `None` not used on this kernel.
    pub loaded: Option<bool>,
    /// Why refused or not used (one line; a verifier log goes to a file it names).
    pub reason: Option<String>,
}

pub struct Inputs<'a> {
    pub btf: &'a Btf,
    pub offsets: &'a Offsets,
    pub probes: &'a Probes,
    /// Whether /proc/kallsyms lists a name.
    pub kallsyms: &'a dyn Fn(&str) -> bool,
    /// The kernel passes merge state in a `vma_merge_struct` (6.12+).
    pub vmg: bool,
    /// `-k`: fentry is not used.
    pub force_kprobes: bool,
}

fn kind(p: &Program) -> &'static str {
    match p {
        Program::TracePoint(_) => "tracepoint",
        Program::RawTracePoint(_) => "raw_tp",
        Program::BtfTracePoint(_) => "tp_btf",
        Program::KProbe(_) => "kprobe",
        Program::FEntry(_) => "fentry",
        Program::FExit(_) => "fexit",
        Program::Iter(_) => "iter",
        _ => "other",
    }
}

pub fn check_all(i: &Inputs<'_>) -> Result<Vec<Checked>, String> {
    let mut loader = EbpfLoader::new();
    for (name, value) in &i.offsets.globals {
        loader.override_global(name, value, true);
    }
    let mut bpf = loader.load(ebpf::object()).map_err(|e| format!("the BPF object did not load: {}", chain(&e)))?;
    let unusable = |t: AttachType| {
        let o = i.probes.get(t);
        (!o.ok).then(|| format!("not used: {} is not usable on this kernel (see attach types)", t.name()))
    };
    let mut out = Vec::new();
    let mut names: Vec<String> = bpf.programs().map(|(n, _)| n.to_string()).filter(|n| !n.starts_with("probe_") && !n.starts_with("floor_")).collect();
    names.sort();
    let no_vma_list = i.offsets.globals.iter().any(|(n, v)| *n == "MM_MMAP" && *v == lazyvma_model::abi::FIELD_ABSENT);
    for name in names {
        let p = bpf.program_mut(&name).expect("listed");
        let kind = kind(p);
        let skip = match p {
            Program::KProbe(_) => unusable(AttachType::Kprobe),
            Program::FEntry(_) | Program::FExit(_) if i.force_kprobes => Some("not used: -k (kprobes instead of fentry)".into()),
            Program::FEntry(_) => unusable(AttachType::Fentry),
            Program::FExit(_) => unusable(AttachType::Fexit),
            Program::BtfTracePoint(_) => unusable(AttachType::TpBtf).or_else(|| crate::trace::ingest::bpf::btf_unused(&name)),
            // The pass of kernels without iter/task_vma walks mm->mmap, which 6.1's maple tree replaced.
            Program::Iter(_) if name == "snapshot_task" && no_vma_list => {
                Some("not used: no VMA list (mm->mmap) on this kernel; snapshot_task_vma takes the pass".into())
            }
            _ => None,
        };
        let present = |f: &str| (i.kallsyms)(f);
        let function = crate::trace::ingest::attach::fentry_function(&name, i.vmg, &present);
        let skip = skip.or_else(|| {
            (matches!(p, Program::FEntry(_) | Program::FExit(_)) && function.is_none())
                .then(|| "not used: none of its functions is in kallsyms for this kernel's shape".to_string())
        });
        if let Some(why) = skip {
            out.push(Checked { program: name, kind, loaded: None, reason: Some(why) });
            continue;
        }
        let r = match p {
            Program::TracePoint(p) => p.load(),
            Program::RawTracePoint(p) => p.load(),
            Program::KProbe(p) => p.load(),
            Program::FEntry(p) => p.load(function.expect("checked"), i.btf),
            Program::FExit(p) => p.load(function.expect("checked"), i.btf),
            // The pass of kernels without iter/task_vma (reader.rs) iterates tasks.
            Program::Iter(p) => p.load(if name == "snapshot_task" { "task" } else { "task_vma" }, i.btf),
            Program::BtfTracePoint(p) => match crate::trace::ingest::bpf::BTF_PROGRAMS.iter().find(|(n, _)| *n == name) {
                Some((_, tp)) => p.load(tp, i.btf),
                None => {
                    out.push(Checked { program: name, kind, loaded: None, reason: Some("not checked: no tracepoint known for it".into()) });
                    continue;
                }
            },
            _ => {
                out.push(Checked { program: name, kind, loaded: None, reason: Some("not checked: a program type doctor does not know".into()) });
                continue;
            }
        };
        let reason = r.as_ref().err().map(|e| match e {
            aya::programs::ProgramError::Btf(aya::BtfError::UnknownBtfTypeName { type_name }) if kind == "iter" => {
                format!("this kernel has no iter/task_vma (added in 5.12; no `{type_name}` in its BTF)")
            }
            e => chain(e),
        });
        out.push(Checked { program: name, kind, loaded: Some(r.is_ok()), reason });
    }
    Ok(out)
}
