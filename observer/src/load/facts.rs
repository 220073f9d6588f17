//! `KernelFacts`: what the running kernel (or `--btf`) tells every command, read once per
//! run and passed down: kallsyms' ranges and names, the bytes per object (`sizes`), the
//! tracepoints' record formats, and the BTF answers, ours ([`BtfFacts`]) and aya's parse.
//!
//! Our BTF parse is resolved into [`BtfFacts`] and dropped before aya parses the file: one
//! parsed copy at a time, and none of ours for the rest of the run. aya's parse is shared
//! (`Arc`, never cloned) by the probes, the program load and the attaches, then dropped.
//! Each `aya::EbpfLoader::new` still parses the running kernel's BTF once on its own (aya
//! 0.14 has no constructor without it), dropped once the object is loaded.
use super::btf::{Btf, BtfError, Offsets};
use crate::trace::{ingest::attach, ingest::bpf, ingest::format, ingest::symbols::Symbols};
use lazyvma_model::{
    hook_abi::{HookOffsets, FEXIT_RET_HELPER, FEXIT_RET_PROGRAMS},
    sizes::Sizes,
    trace_abi::{ContextOffsets, TpOffsets, FN_COUNT, NO_FIELD},
};
use std::{path::Path, sync::Arc};

/// What our BTF parse answered, resolved once (`BtfFacts::resolve`).
pub struct BtfFacts {
    /// Every offset global the programs read; `Err`: why not (a `BtfError`'s words).
    pub offsets: Result<Offsets, String>,
    /// The function hooks' offsets (`UNSET` when `offsets` failed: no hook is attached).
    pub hook_offsets: HookOffsets,
    /// `anon_vma.rwsem` for the lock programs.
    pub rwsem: Result<u64, String>,
    /// `vm_area_struct.vm_file` (u64::MAX: unknown).
    pub vm_file: u64,
    pub context: ContextOffsets,
    pub cache_fields: Option<(u64, u64)>,
    pub arg_regs: [u64; 6],
    pub fexit_args: [u64; FEXIT_RET_PROGRAMS.len()],
    /// The kernel passes merge state in a `vma_merge_struct` (6.12+).
    pub vmg: bool,
}

impl BtfFacts {
    /// `present`: whether kallsyms names a function (the fexit programs' functions).
    pub fn resolve(b: &Btf, present: &dyn Fn(&str) -> bool) -> BtfFacts {
        let (offsets, hook_offsets, rwsem) = match Offsets::resolve(b) {
            Ok(o) => (Ok(o), attach::hook_offsets(b), b.offset("anon_vma", "rwsem").map_err(|e| e.to_string())),
            Err(e) => (Err(e.to_string()), HookOffsets::UNSET, Err(format!("kernel BTF offsets: {e}"))),
        };
        let vmg = hook_offsets.vmg_start != u64::MAX;
        BtfFacts {
            offsets,
            hook_offsets,
            rwsem,
            vm_file: b.offset_any("vm_area_struct", &["vm_file"]).unwrap_or(u64::MAX),
            context: bpf::context_offsets(Some(b)),
            cache_fields: bpf::slab_btf(Some(b)),
            arg_regs: bpf::arg_regs(Some(b)),
            fexit_args: bpf::fexit_args(Some(b), present("get_func_ret"), |prog| attach::fentry_function(prog, vmg, present)),
            vmg,
        }
    }
}

/// Everything `trace` and `serve` read from the kernel before loading their programs.
pub struct KernelFacts {
    /// `/proc/kallsyms`, sorted by address (ranges, names of stack frames, name lookups).
    pub syms: Symbols,
    /// [start, end) of every function in `trace_abi::FUNCTIONS`.
    pub ranges: [(u64, u64); FN_COUNT],
    pub sizes: Sizes,
    /// The tracepoints' record offsets, and why the madvise marker is unusable if it is.
    pub formats: (TpOffsets, Option<String>),
    /// Our parse's answers; `Err`: why there are none (a `BtfError`'s words).
    pub btf: Result<BtfFacts, String>,
    /// aya's parse, for the `tp_btf`/fentry programs and the iterators; `Err`: why none
    /// (the running kernel has no BTF: a finding; an unusable `--btf` is an error at load).
    pub aya_btf: Result<Arc<aya::Btf>, String>,
}

impl KernelFacts {
    /// In the order the commands always checked them, so the first failure says the same.
    pub fn load(btf_path: Option<&Path>) -> anyhow::Result<KernelFacts> {
        let syms = Symbols::load()?;
        let ranges = syms.function_ranges()?;
        let ours = Btf::load(btf_path);
        let sizes = super::sizes::load_classifying_with(btf_path, &ours)?;
        let formats = format::offsets()?;
        let btf = match &ours {
            Ok(b) => Ok(BtfFacts::resolve(b, &|f| syms.has(f))),
            Err(e) => Err(e.to_string()),
        };
        // Ours goes before aya's parse: one parsed copy at a time.
        let unusable = match ours {
            Err(e @ BtfError::Unusable { .. }) => Some(e.to_string()),
            _ => None,
        };
        let aya_btf = super::probe::kernel_btf_after(btf_path, unusable)?.map(Arc::new);
        Ok(KernelFacts { syms, ranges, sizes, formats, btf, aya_btf })
    }

    /// aya's parse, leaving `Err` behind: whoever takes it decides how long it is held.
    pub fn take_aya_btf(&mut self) -> Result<Arc<aya::Btf>, String> {
        std::mem::replace(&mut self.aya_btf, Err("taken".into()))
    }

    /// What the seeding pass loads its iterator with (`trace::seed::Facts`).
    pub fn seed(&self) -> crate::trace::feed::seed::Facts {
        crate::trace::feed::seed::Facts { offsets: self.btf.as_ref().map_err(Clone::clone).and_then(|b| b.offsets.clone()) }
    }

    pub fn context(&self) -> ContextOffsets {
        self.btf.as_ref().map_or(ContextOffsets::UNSET, |b| b.context)
    }

    pub fn cache_fields(&self) -> Option<(u64, u64)> {
        self.btf.as_ref().ok().and_then(|b| b.cache_fields)
    }

    pub fn arg_regs(&self) -> [u64; 6] {
        self.btf.as_ref().map_or([NO_FIELD; 6], |b| b.arg_regs)
    }

    pub fn fexit_args(&self) -> [u64; FEXIT_RET_PROGRAMS.len()] {
        self.btf.as_ref().map_or([FEXIT_RET_HELPER; FEXIT_RET_PROGRAMS.len()], |b| b.fexit_args)
    }
}
