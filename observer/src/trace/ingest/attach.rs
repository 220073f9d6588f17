//! Attaching the function hooks (observer-ebpf `fault.rs`, `fork.rs`, `teardown.rs`,
//! `vma.rs`, `rmap.rs`) with the backend `load::backend` chose per hook: fentry/fexit, or
//! kprobe/kretprobe (with `-k`, or where fentry attach fails for one function, e.g. more
//! arguments than the trampoline takes), and the KSM tracepoints where no KSM function
//! was hooked. What really attached is the report's truth.
use crate::load::backend::{self, Backend, Facts, Kind, KSM_TRACEPOINTS};
use aya::{
    programs::{FEntry, FExit, KProbe, ProgramError, TracePoint},
    Btf, Ebpf,
};

/// Which argument shape a merge program reads: 6.1's plain arguments or 6.12's
/// `struct vma_merge_struct *` (one name, `vma_expand`, has both across versions).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Any,
    Legacy,
    Vmg,
}

struct Target {
    hook: &'static str,
    function: &'static str,
    shape: Shape,
    fentry: &'static [&'static str],
    kprobe: &'static [&'static str],
}

const fn t(hook: &'static str, function: &'static str, shape: Shape, fentry: &'static [&'static str], kprobe: &'static [&'static str]) -> Target {
    Target { hook, function, shape, fentry, kprobe }
}

use Shape::*;

/// Programs per kernel function; attached in `backend::HOOKS` order, then this order.
const TARGETS: &[Target] = &[
    t("rmap", "folio_referenced", Any, &["hk_referenced_fentry", "hk_referenced_fexit"], &["hk_referenced_kprobe", "hk_referenced_kretprobe"]),
    t("rmap", "try_to_unmap", Any, &["hk_unmap_fentry", "hk_unmap_fexit"], &["hk_unmap_kprobe", "hk_unmap_kretprobe"]),
    t("rmap", "try_to_migrate", Any, &["hk_migrate_fentry", "hk_migrate_fexit"], &["hk_migrate_kprobe", "hk_migrate_kretprobe"]),
    t("rmap", "remove_migration_ptes", Any, &["hk_rmptes_fentry", "hk_rmptes_fexit"], &["hk_rmptes_kprobe", "hk_rmptes_kretprobe"]),
    t("rmap", "rmap_walk", Any, &["hk_walk_fentry"], &["hk_walk_kprobe"]),
    t("rmap", "rmap_walk_locked", Any, &["hk_walk_locked_fentry"], &["hk_walk_locked_kprobe"]),
    t("rmap", "folio_lock_anon_vma_read", Any, &["hk_lock_fentry", "hk_lock_fexit"], &["hk_lock_kprobe", "hk_lock_kretprobe"]),
    t("anon_vma_fork", "anon_vma_fork", Any, &["hk_fork_fentry", "hk_fork_fexit"], &["hk_fork_kprobe", "hk_fork_kretprobe"]),
    t("split", "__split_vma", Any, &["hk_split_fentry", "hk_split_fexit"], &["hk_split_kprobe", "hk_split_kretprobe"]),
    t("merge", "vma_merge", Legacy, &["hk_merge_vma_merge_fentry", "hk_merge_vma_merge_fexit"], &["hk_merge_vma_merge_kprobe", "hk_merge_vma_merge_kretprobe"]),
    t("merge", "__vma_adjust", Legacy, &["hk_merge_adjust_fentry", "hk_merge_adjust_fexit"], &["hk_merge_adjust_kprobe", "hk_merge_adjust_kretprobe"]),
    t("merge", "vma_expand", Legacy, &["hk_merge_expand_fentry", "hk_merge_expand_fexit"], &["hk_merge_expand_kprobe", "hk_merge_expand_kretprobe"]),
    t(
        "merge",
        "vma_expand",
        Vmg,
        &["hk_merge_expand_vmg_fentry", "hk_merge_expand_vmg_fexit"],
        &["hk_merge_expand_vmg_kprobe", "hk_merge_expand_vmg_kretprobe"],
    ),
    t(
        "merge",
        "vma_merge_new_range",
        Vmg,
        &["hk_merge_new_range_fentry", "hk_merge_new_range_fexit"],
        &["hk_merge_new_range_kprobe", "hk_merge_new_range_kretprobe"],
    ),
    t("merge", "commit_merge", Vmg, &["hk_merge_commit_fentry", "hk_merge_commit_fexit"], &["hk_merge_commit_kprobe", "hk_merge_commit_kretprobe"]),
    t("copy_vma", "copy_vma", Any, &["hk_copy_vma_fentry", "hk_copy_vma_fexit"], &["hk_copy_vma_kprobe", "hk_copy_vma_kretprobe"]),
    // mremap's frame, so the old range's unlink after copy_vma is "mremap" (observer-ebpf mremap.rs).
    t("copy_vma", "__x64_sys_mremap", Any, &["hk_mremap_fentry", "hk_mremap_fexit"], &["hk_mremap_kprobe", "hk_mremap_kretprobe"]),
    t("copy_vma", "__arm64_sys_mremap", Any, &["hk_mremap_fentry", "hk_mremap_fexit"], &["hk_mremap_kprobe", "hk_mremap_kretprobe"]),
    t("__anon_vma_prepare", "__anon_vma_prepare", Any, &["hk_prepare_fexit"], &["hk_prepare_kprobe", "hk_prepare_kretprobe"]),
    t("find_mergeable_anon_vma", "find_mergeable_anon_vma", Any, &["hk_mergeable_fexit"], &["hk_mergeable_kprobe", "hk_mergeable_kretprobe"]),
    t("anon_vma_clone", "anon_vma_clone", Any, &["hk_clone_fexit"], &["hk_clone_kprobe", "hk_clone_kretprobe"]),
    t("unlink_anon_vmas", "unlink_anon_vmas", Any, &["hk_unlink_fentry"], &["hk_unlink_kprobe"]),
    t("__put_anon_vma", "__put_anon_vma", Any, &["hk_put_fentry"], &["hk_put_kprobe"]),
    t("dup_mmap", "dup_mmap", Any, &["hk_dup_mmap_fentry"], &["hk_dup_mmap_kprobe"]),
    t("exit_mmap", "exit_mmap", Any, &["hk_exit_mmap_fentry"], &["hk_exit_mmap_kprobe"]),
    t("ksm", "try_to_merge_with_ksm_page", Any, &["hk_ksm_merge_fexit"], &["hk_ksm_merge_kprobe", "hk_ksm_merge_kretprobe"]),
    t("ksm", "remove_rmap_item_from_tree", Any, &["hk_ksm_remove_fentry"], &["hk_ksm_remove_kprobe"]),
    t("thp_fault", "do_huge_pmd_anonymous_page", Any, &["hk_thp_fexit"], &["hk_thp_kprobe", "hk_thp_kretprobe"]),
];

/// The function trace attaches fentry/fexit program `prog` to on this kernel, if any
/// (`doctor` loads the program against it).
pub(crate) fn fentry_function(prog: &str, vmg: bool, present: &dyn Fn(&str) -> bool) -> Option<&'static str> {
    TARGETS.iter().find(|t| t.fentry.contains(&prog) && (t.shape == Any || (t.shape == Vmg) == vmg) && present(t.function)).map(|t| t.function)
}

/// How one hook's functions attached.
#[derive(Clone, Debug, Default)]
pub struct HookAttach {
    /// (function, "fentry" | "kprobe") per function attached.
    pub functions: Vec<(&'static str, &'static str)>,
    /// Per function that fell back or failed: why.
    pub problems: Vec<String>,
    /// Tracepoints attached in the functions' stead (`trace::ksm`).
    pub tracepoints: Vec<&'static str>,
}

impl HookAttach {
    /// The weakest backend any function of the hook got.
    pub fn backend(&self) -> Option<Backend> {
        if self.functions.is_empty() {
            None
        } else if self.functions.iter().any(|(_, b)| *b == "kprobe") {
            Some(Backend::Kprobe)
        } else {
            Some(Backend::Fentry)
        }
    }
}

/// The optional offsets the hooks read (folio->mapping, vma_merge_struct fields), from
/// BTF; a field this kernel lacks stays absent (u64::MAX) and reads as 0.
pub fn hook_offsets(btf: &crate::load::btf::Btf) -> lazyvma_model::hook_abi::HookOffsets {
    let get = |ty: &str, f: &[&str]| btf.offset_any(ty, f).unwrap_or(u64::MAX);
    // KSM's item is `struct rmap_item` on 5.10, `ksm_rmap_item` by 6.1.
    let item = |f: &str| btf.offset_any("ksm_rmap_item", &[f]).or_else(|_| btf.offset_any("rmap_item", &[f])).unwrap_or(u64::MAX);
    lazyvma_model::hook_abi::HookOffsets {
        folio_mapping: get("folio", &["mapping"]),
        vmg_prev: get("vma_merge_struct", &["prev"]),
        vmg_next: get("vma_merge_struct", &["next"]),
        vmg_vma: get("vma_merge_struct", &["vma", "middle"]),
        vmg_start: get("vma_merge_struct", &["start"]),
        vmg_end: get("vma_merge_struct", &["end"]),
        rmap_item_mm: item("mm"),
        rmap_item_address: item("address"),
        rmap_item_anon_vma: item("anon_vma"),
        mm_owner: get("mm_struct", &["owner"]),
        vmf_vma: get("vm_fault", &["vma"]),
        vmf_address: get("vm_fault", &["address"]),
        vmf_flags: get("vm_fault", &["flags"]),
    }
}

/// Hooks that would attach but read fields this kernel's BTF lacks (their records then
/// carry zeros): (hook, what is missing), said in the hook's problems.
pub fn unreadable(o: &lazyvma_model::hook_abi::HookOffsets) -> Vec<(&'static str, String)> {
    let absent = |fields: &[(&str, u64)]| -> Option<String> {
        let names: Vec<&str> = fields.iter().filter(|(_, v)| *v == u64::MAX).map(|(n, _)| *n).collect();
        (!names.is_empty()).then(|| format!("{} not in the kernel's BTF: its records cannot be attributed", names.join(", ")))
    };
    let mut out = Vec::new();
    let ksm = [
        ("rmap_item.mm", o.rmap_item_mm),
        ("rmap_item.address", o.rmap_item_address),
        ("rmap_item.anon_vma", o.rmap_item_anon_vma),
        ("mm_struct.owner", o.mm_owner),
    ];
    if let Some(why) = absent(&ksm) {
        out.push(("ksm", why));
    }
    if let Some(why) = absent(&[("vm_fault.vma", o.vmf_vma), ("vm_fault.address", o.vmf_address), ("vm_fault.flags", o.vmf_flags)]) {
        out.push(("thp_fault", why));
    }
    out
}

/// What attaching needs besides the object.
pub struct Setup<'a> {
    pub btf: Option<&'a Btf>,
    /// The kernel passes merge state in a `vma_merge_struct` (6.12 and later).
    pub vmg: bool,
    /// Why no function hook can work at all (no BTF offsets), if so.
    pub blocked: Option<String>,
    /// `unreadable`'s answer for this kernel.
    pub unreadable: Vec<(&'static str, String)>,
}

/// Attach every function hook `backend::choose` gives fentry or kprobe; returns, per hook
/// name, what attached. Hooks not in the result were not attempted.
pub fn attach(bpf: &mut Ebpf, facts: &Facts<'_>, setup: &Setup<'_>) -> Vec<(&'static str, HookAttach)> {
    let mut out: Vec<(&'static str, HookAttach)> = Vec::new();
    for h in backend::HOOKS {
        let Kind::Function { .. } = h.kind else { continue };
        let choice = backend::choose(h, facts);
        if !matches!(choice.backend, Backend::Fentry | Backend::Kprobe) {
            continue;
        }
        let mut o = HookAttach::default();
        if let Some(why) = &setup.blocked {
            o.problems.push(why.clone());
            out.push((h.name, o));
            continue;
        }
        let shape_ok = |s: Shape| s == Any || (s == Vmg) == setup.vmg;
        for tg in TARGETS.iter().filter(|tg| tg.hook == h.name && shape_ok(tg.shape)) {
            if !(facts.kallsyms)(tg.function) {
                continue;
            }
            let mut fentry_err = None;
            if choice.backend == Backend::Fentry {
                match attach_set(bpf, tg.fentry, tg.function, setup.btf) {
                    Ok(()) => {
                        o.functions.push((tg.function, "fentry"));
                        continue;
                    }
                    Err(e) => fentry_err = Some(e),
                }
            }
            match attach_set(bpf, tg.kprobe, tg.function, setup.btf) {
                Ok(()) => {
                    o.functions.push((tg.function, "kprobe"));
                    if let Some(e) = fentry_err {
                        o.problems.push(format!("{}: {e}; kprobe used", tg.function));
                    }
                }
                Err(e) => {
                    let f = fentry_err.map_or(String::new(), |f| format!("{f}; "));
                    o.problems.push(format!("{}: {f}{e}", tg.function));
                }
            }
        }
        if o.functions.is_empty() && o.problems.is_empty() {
            o.problems.push("none of its functions is in kallsyms for this kernel's shape".into());
        }
        if !o.functions.is_empty() {
            o.problems.extend(setup.unreadable.iter().filter(|(hook, _)| *hook == h.name).map(|(_, why)| why.clone()));
        }
        out.push((h.name, o));
    }
    attach_ksm_tracepoints(bpf, &mut out);
    out
}

/// All programs of one function's set, or none: a half-attached set (an entry frame
/// without its exit) would corrupt the caller stack, so it is unloaded.
fn attach_set(bpf: &mut Ebpf, progs: &[&str], function: &str, btf: Option<&Btf>) -> Result<(), String> {
    for (i, p) in progs.iter().enumerate() {
        if let Err(e) = attach_one(bpf, p, function, btf) {
            for done in &progs[..=i] {
                unload(bpf, done);
            }
            return Err(e);
        }
    }
    Ok(())
}

fn attach_one(bpf: &mut Ebpf, prog: &str, function: &str, btf: Option<&Btf>) -> Result<(), String> {
    let p = bpf.program_mut(prog).ok_or_else(|| format!("program {prog} missing from the BPF object"))?;
    let load = |e: ProgramError| format!("{} load refused: {}", kind(prog), chain(&e));
    let att = |e: ProgramError| format!("{} attach refused: {}", kind(prog), chain(&e));
    let conv = |e: ProgramError| format!("program {prog}: {e}");
    let no_btf = || format!("{} needs kernel BTF", kind(prog));
    if prog.ends_with("_fentry") {
        let p: &mut FEntry = p.try_into().map_err(conv)?;
        p.load(function, btf.ok_or_else(no_btf)?).map_err(load)?;
        p.attach().map_err(att)?;
    } else if prog.ends_with("_fexit") {
        let p: &mut FExit = p.try_into().map_err(conv)?;
        p.load(function, btf.ok_or_else(no_btf)?).map_err(load)?;
        p.attach().map_err(att)?;
    } else {
        let p: &mut KProbe = p.try_into().map_err(conv)?;
        p.load().map_err(load)?;
        p.attach(function, 0).map_err(att)?;
    }
    Ok(())
}

fn unload(bpf: &mut Ebpf, prog: &str) {
    let Some(p) = bpf.program_mut(prog) else { return };
    let _ = if prog.ends_with("_fentry") {
        <&mut FEntry>::try_from(p).map(|p| p.unload())
    } else if prog.ends_with("_fexit") {
        <&mut FExit>::try_from(p).map(|p| p.unload())
    } else {
        <&mut KProbe>::try_from(p).map(|p| p.unload())
    };
}

fn kind(prog: &str) -> &str {
    prog.rsplit('_').next().unwrap_or(prog)
}

/// An error and its sources on one line, ENOTSUPP spelled out.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    // ENOTSUPP (524) has no name in libc's strerror: say what it means here.
    crate::load::probe::chain(e).replace("os error 524", "os error 524, ENOTSUPP: no trampoline for this function (arguments? arch?)")
}

const KSM_PROGRAMS: [&str; 2] = ["trace_ksm_merge", "trace_ksm_remove"];
/// The "ksm" hook's functions (load::backend::HOOKS).
const KSM_FUNCTIONS: [&str; 2] = ["try_to_merge_with_ksm_page", "remove_rmap_item_from_tree"];

/// The KSM tracepoints, when no KSM function was hooked (one source only: the two would
/// count every merge twice). What attached goes into the "ksm" hook's outcome.
fn attach_ksm_tracepoints(bpf: &mut Ebpf, out: &mut Vec<(&'static str, HookAttach)>) {
    let i = match out.iter().position(|(n, _)| *n == "ksm") {
        Some(i) => i,
        None => {
            out.push(("ksm", Default::default()));
            out.len() - 1
        }
    };
    let o = &mut out[i].1;
    if !o.functions.is_empty() {
        // A KSM function kallsyms lacks (inlined) was skipped silently by attach: say so.
        for f in KSM_FUNCTIONS {
            if !o.functions.iter().any(|(n, _)| *n == f) && !o.problems.iter().any(|p| p.starts_with(f)) {
                o.problems.push(format!("{f}: absent from kallsyms (inlined): its records are missing"));
            }
        }
        return;
    }
    for (prog, tp) in KSM_PROGRAMS.iter().zip(KSM_TRACEPOINTS) {
        match attach_ksm_one(bpf, prog, tp) {
            Ok(()) => o.tracepoints.push(tp),
            Err(e) => o.problems.push(format!("tracepoint {tp}: {e}")),
        }
    }
}

fn attach_ksm_one(bpf: &mut Ebpf, prog: &str, tp: &str) -> Result<(), String> {
    let (cat, name) = tp.split_once(':').expect("category:name");
    if !crate::load::probe::has_tracepoint(tp) {
        return Err("absent on this kernel (no include/trace/events/ksm.h before 6.4)".into());
    }
    let p: &mut TracePoint =
        bpf.program_mut(prog).ok_or_else(|| format!("program {prog} missing from the BPF object"))?.try_into().map_err(|e| format!("program {prog}: {e}"))?;
    p.load().map_err(|e| format!("loading {prog}: {}", crate::load::probe::chain(&e)))?;
    p.attach(cat, name).map_err(|e| format!("attaching {prog}: {}", crate::load::probe::chain(&e)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_function_hook_has_programs_and_every_program_a_known_suffix() {
        for h in backend::HOOKS {
            if let Kind::Function { .. } = h.kind {
                assert!(TARGETS.iter().any(|t| t.hook == h.name), "{} has no targets", h.name);
            }
        }
        for tg in TARGETS {
            assert!(!tg.fentry.is_empty() && !tg.kprobe.is_empty());
            for p in tg.fentry {
                assert!(p.ends_with("_fentry") || p.ends_with("_fexit"), "{p}");
            }
            for p in tg.kprobe {
                assert!(p.ends_with("_kprobe") || p.ends_with("_kretprobe"), "{p}");
            }
        }
    }
}
