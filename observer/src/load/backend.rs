//! The hooks `lazyvma trace` needs and, per hook, the backend it can use on this kernel:
//! fentry/fexit → kprobe/kretprobe → tracepoint-only → unavailable, chosen from what the
//! attach probes found (`load::probe`) and which functions kallsyms lists.
use super::probe::{AttachType, Probes};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    Fentry,
    Kprobe,
    /// A hook that is a tracepoint by nature.
    Tracepoint,
    /// A function hook observed only through tracepoints (e.g. slab events by call_site).
    TracepointOnly,
    Unavailable,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Self::Fentry => "fentry",
            Self::Kprobe => "kprobe",
            Self::Tracepoint => "tracepoint",
            Self::TracepointOnly => "tracepoint-only",
            Self::Unavailable => "unavailable",
        }
    }
}

/// What still tells us about a function hook when no function attach works.
pub struct Fallback {
    pub tracepoints: &'static [&'static str],
    /// Functions that must be real symbols for `call_site` attribution to name them.
    pub call_sites: &'static [&'static str],
    pub what: &'static str,
}

pub enum Kind {
    /// Kernel functions (alternatives across versions; every one present is attached).
    Function {
        functions: &'static [&'static str],
        needs_exit: bool,
        fallback: Option<Fallback>,
    },
    Tracepoint(&'static str),
}

pub struct Hook {
    pub name: &'static str,
    pub kind: Kind,
}

const KMEM: &[&str] = &["kmem:kmem_cache_alloc", "kmem:kmem_cache_free"];
/// 6.4+ (include/trace/events/ksm.h); `trace::ksm` attaches them when the KSM functions
/// cannot be hooked.
pub const KSM_TRACEPOINTS: &[&str] = &["ksm:ksm_merge_with_ksm_page", "ksm:ksm_remove_rmap_item"];

const fn func(name: &'static str, functions: &'static [&'static str], needs_exit: bool, fallback: Option<Fallback>) -> Hook {
    Hook { name, kind: Kind::Function { functions, needs_exit, fallback } }
}

const fn tp(name: &'static str) -> Hook {
    Hook { name, kind: Kind::Tracepoint(name) }
}

const fn slab(call_sites: &'static [&'static str], what: &'static str) -> Option<Fallback> {
    Some(Fallback { tracepoints: KMEM, call_sites, what })
}

/// anon-vma-semantics.md §4 and architecture.md.
pub const HOOKS: &[Hook] = &[
    func("__anon_vma_prepare", &["__anon_vma_prepare"], true, slab(&["__anon_vma_prepare"], "AV/AVC allocations by call_site")),
    func("anon_vma_fork", &["anon_vma_fork"], true, slab(&["anon_vma_fork"], "AV/AVC allocations by call_site")),
    func("anon_vma_clone", &["anon_vma_clone"], true, slab(&["anon_vma_clone"], "AVC allocations by call_site; split/merge/mremap not told apart")),
    func("unlink_anon_vmas", &["unlink_anon_vmas"], false, slab(&["unlink_anon_vmas"], "AVC frees by call_site")),
    func("__put_anon_vma", &["__put_anon_vma"], false, slab(&["__put_anon_vma"], "AV frees by call_site")),
    func(
        "find_mergeable_anon_vma",
        &["find_mergeable_anon_vma"],
        true,
        slab(&["__anon_vma_prepare"], "neighbour reuse inferred: AVC without AV in __anon_vma_prepare"),
    ),
    func("split", &["__split_vma"], true, None),
    func("merge", &["vma_merge", "__vma_adjust", "vma_merge_new_range", "vma_expand", "commit_merge"], true, None),
    func(
        "copy_vma",
        &["copy_vma"],
        true,
        Some(Fallback { tracepoints: &["syscalls:sys_enter_mremap"], call_sites: &[], what: "mremap calls; moves not told apart from resizes" }),
    ),
    func(
        "dup_mmap",
        &["dup_mmap"],
        true,
        Some(Fallback {
            tracepoints: &["sched:sched_process_fork", "task:task_newtask"],
            call_sites: &[],
            what: "forks; CLONE_VM (no dup_mmap) from task_newtask",
        }),
    ),
    func("exit_mmap", &["exit_mmap"], false, Some(Fallback { tracepoints: &["mmap:exit_mmap"], call_sites: &[], what: "mm teardown" })),
    func(
        "rmap",
        &["rmap_walk", "rmap_walk_locked", "folio_lock_anon_vma_read", "folio_referenced", "try_to_unmap", "try_to_migrate", "remove_migration_ptes"],
        true,
        Some(Fallback {
            tracepoints: &["lock:contention_begin", "lock:contention_end"],
            call_sites: &[],
            what: "only contended anon_vma root rwsems; walk counts estimated",
        }),
    ),
    func(
        "ksm",
        &["try_to_merge_with_ksm_page", "remove_rmap_item_from_tree"],
        true,
        Some(Fallback { tracepoints: KSM_TRACEPOINTS, call_sites: &[], what: "merges; rmap_item removals only when a stable node is torn down" }),
    ),
    func("thp_fault", &["do_huge_pmd_anonymous_page"], true, None),
    tp("kmem:kmem_cache_alloc"),
    tp("kmem:kmem_cache_free"),
    tp("sched:sched_process_fork"),
    tp("sched:sched_process_exec"),
    tp("sched:sched_process_exit"),
    tp("lock:contention_begin"),
    tp("lock:contention_end"),
];

#[derive(Clone, Debug, serde::Serialize)]
pub struct Choice {
    pub hook: &'static str,
    pub backend: Backend,
    /// Functions attached (fentry/kprobe) — the present ones among the hook's alternatives.
    pub functions: Vec<&'static str>,
    /// Tracepoints used (tracepoint / tracepoint-only).
    pub tracepoints: Vec<&'static str>,
    /// What a tracepoint-only backend still sees.
    pub note: Option<&'static str>,
    /// Why a better backend was not chosen (set whenever the backend is not fentry).
    pub reason: Option<String>,
}

impl Choice {
    /// As `trace -j`'s `backend_detail` has it.
    pub fn doc(&self) -> crate::report::trace_doc::BackendChoice {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        crate::report::trace_doc::BackendChoice {
            hook: self.hook.into(),
            backend: self.backend.name().into(),
            functions: names(&self.functions),
            tracepoints: names(&self.tracepoints),
            note: self.note.map(str::to_string),
            reason: self.reason.clone(),
        }
    }
}

/// What the choice depends on, gathered by the caller.
pub struct Facts<'a> {
    pub probes: &'a Probes,
    /// Whether /proc/kallsyms lists a name.
    pub kallsyms: &'a dyn Fn(&str) -> bool,
    /// Whether a tracepoint `category:name` exists on this kernel (tracefs `events/`).
    pub has_tracepoint: &'a dyn Fn(&str) -> bool,
    /// `-k`: skip fentry even where it works.
    pub force_kprobes: bool,
}

pub fn choose_all(f: &Facts<'_>) -> Vec<Choice> {
    HOOKS.iter().map(|h| choose(h, f)).collect()
}

pub fn choose(h: &Hook, f: &Facts<'_>) -> Choice {
    let mut c = Choice { hook: h.name, backend: Backend::Unavailable, functions: vec![], tracepoints: vec![], note: None, reason: None };
    match &h.kind {
        Kind::Tracepoint(name) => match tracepoint_problem(f, &[name]) {
            None => {
                c.backend = Backend::Tracepoint;
                c.tracepoints = vec![name];
            }
            Some(why) => c.reason = Some(why),
        },
        Kind::Function { functions, needs_exit, fallback } => {
            let present: Vec<&'static str> = functions.iter().copied().filter(|n| (f.kallsyms)(n)).collect();
            let mut why = Vec::new();
            if present.is_empty() {
                why.push(format!("{} absent from kallsyms (inlined)", functions.join(", ")));
            } else {
                let pair = |a, b| if *needs_exit { attach_problem(f, a).or_else(|| attach_problem(f, b)) } else { attach_problem(f, a) };
                let fentry = if f.force_kprobes { Some("fentry skipped (-k)".to_string()) } else { pair(AttachType::Fentry, AttachType::Fexit) };
                match (fentry, pair(AttachType::Kprobe, AttachType::Kretprobe)) {
                    (None, _) => {
                        c.backend = Backend::Fentry;
                        c.functions = present;
                        return c;
                    }
                    (Some(fe), None) => {
                        c.backend = Backend::Kprobe;
                        c.functions = present;
                        c.reason = Some(fe);
                        return c;
                    }
                    (Some(fe), Some(kp)) => why.extend([fe, kp]),
                }
            }
            match fallback {
                None => why.push("no tracepoint covers it".into()),
                Some(fb) => {
                    let missing: Vec<_> = fb.call_sites.iter().filter(|n| !(f.kallsyms)(n)).copied().collect();
                    if !missing.is_empty() {
                        why.push(format!("call_site attribution needs {} in kallsyms", missing.join(", ")));
                    } else if let Some(p) = tracepoint_problem(f, fb.tracepoints) {
                        why.push(p);
                    } else {
                        c.backend = Backend::TracepointOnly;
                        c.tracepoints = fb.tracepoints.to_vec();
                        c.note = Some(fb.what);
                    }
                }
            }
            c.reason = Some(why.join("; "));
        }
    }
    c
}

fn attach_problem(f: &Facts<'_>, t: AttachType) -> Option<String> {
    // Short on purpose: the attach map carries the kernel's full refusal.
    (!f.probes.get(t).ok).then(|| format!("{} not usable", t.name()))
}

fn tracepoint_problem(f: &Facts<'_>, tps: &[&str]) -> Option<String> {
    if let Some(p) = attach_problem(f, AttachType::Tracepoint) {
        return Some(p);
    }
    let absent: Vec<_> = tps.iter().filter(|t| !(f.has_tracepoint)(t)).copied().collect();
    (!absent.is_empty()).then(|| format!("tracepoint {} absent on this kernel", absent.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::probe::ProbeResult;
    use std::collections::HashMap;

    fn probes(ok: &[AttachType]) -> Probes {
        Probes(
            AttachType::ALL
                .iter()
                .map(|t| {
                    (
                        *t,
                        if ok.contains(t) {
                            ProbeResult { ok: true, error: None }
                        } else {
                            ProbeResult { ok: false, error: Some(format!("{} refused", t.name())) }
                        },
                    )
                })
                .collect(),
        )
    }

    fn syms(names: &[&str]) -> HashMap<String, (u64, char)> {
        names.iter().map(|n| (n.to_string(), (1, 'T'))).collect()
    }

    fn pick(hook: &str, ok: &[AttachType], present: &[&str], force_kprobes: bool) -> Choice {
        let p = probes(ok);
        let k = syms(present);
        let all = |_: &str| true;
        let has = |n: &str| k.contains_key(n);
        let f = Facts { probes: &p, kallsyms: &has, has_tracepoint: &all, force_kprobes };
        choose(HOOKS.iter().find(|h| h.name == hook).unwrap(), &f)
    }

    use AttachType::*;
    const EVERYTHING: &[AttachType] = &[Fentry, Fexit, Kprobe, Kretprobe, Tracepoint, RawTp, TpBtf, IterTaskVma, Ringbuf];

    #[test]
    fn order_is_fentry_kprobe_tracepoint_only_unavailable() {
        let all_syms = ["__anon_vma_prepare"];
        assert_eq!(pick("__anon_vma_prepare", EVERYTHING, &all_syms, false).backend, Backend::Fentry);
        assert_eq!(pick("__anon_vma_prepare", EVERYTHING, &all_syms, true).backend, Backend::Kprobe);
        assert_eq!(pick("__anon_vma_prepare", &[Kprobe, Kretprobe, Tracepoint], &all_syms, false).backend, Backend::Kprobe);
        let c = pick("__anon_vma_prepare", &[Tracepoint], &all_syms, false);
        assert_eq!(c.backend, Backend::TracepointOnly);
        assert_eq!(c.tracepoints, KMEM);
        assert_eq!(c.reason.as_deref(), Some("fentry not usable; kprobe not usable"));
        assert_eq!(pick("__anon_vma_prepare", &[], &all_syms, false).backend, Backend::Unavailable);
    }

    #[test]
    fn exit_hooks_need_both_halves() {
        // fentry without fexit cannot time or see the return of __anon_vma_prepare.
        let c = pick("__anon_vma_prepare", &[Fentry, Kprobe, Kretprobe], &["__anon_vma_prepare"], false);
        assert_eq!(c.backend, Backend::Kprobe);
        assert_eq!(c.reason.as_deref(), Some("fexit not usable"));
        assert_eq!(pick("unlink_anon_vmas", &[Fentry], &["unlink_anon_vmas"], false).backend, Backend::Fentry);
    }

    #[test]
    fn absent_function_is_unavailable_with_that_reason() {
        let c = pick("split", EVERYTHING, &[], false);
        assert_eq!(c.backend, Backend::Unavailable);
        assert_eq!(c.reason.as_deref(), Some("__split_vma absent from kallsyms (inlined); no tracepoint covers it"));
        // call_site attribution needs the symbol too.
        let c = pick("unlink_anon_vmas", EVERYTHING, &[], false);
        assert_eq!(c.backend, Backend::Unavailable);
        assert!(c.reason.unwrap().contains("call_site attribution needs unlink_anon_vmas"));
    }

    #[test]
    fn merge_attaches_the_names_this_kernel_has() {
        let c = pick("merge", EVERYTHING, &["vma_merge_new_range", "vma_expand", "commit_merge"], false);
        assert_eq!(c.backend, Backend::Fentry);
        assert_eq!(c.functions, ["vma_merge_new_range", "vma_expand", "commit_merge"]);
    }
}
