//! The backend each hook of `load::backend::HOOKS` has in this trace. `load::backend` says
//! what the kernel allows; this slice of trace attaches tracepoints only, so a hook whose best
//! backend is fentry/kprobe is reported with the tracepoint fallback it really used, and a
//! hook nothing here observes is reported unavailable, with why.
use crate::load::{
    backend::{self, Backend, Choice, Facts},
    probe::{AttachType, Outcome, Probes},
};

const NOT_WIRED: &str = "not attached by trace yet";

/// Hooks this slice observes through the kernel stack of anon_vma_clone's AVC allocations.
const BY_CLONE_STACK: &[&str] = &["split", "merge", "copy_vma"];
/// Hooks with a tracepoint fallback this slice does not attach.
const UNWIRED: &[&str] = &["exit_mmap", "rmap", "lock:contention_begin", "lock:contention_end"];

pub fn used(f: &Facts<'_>, stacks: bool) -> Vec<Choice> {
    let no_functions = Probes(
        f.probes
            .0
            .iter()
            .map(|(t, o)| {
                let function = matches!(t, AttachType::Fentry | AttachType::Fexit | AttachType::Kprobe | AttachType::Kretprobe);
                (*t, if function && o.ok { Outcome { ok: false, error: Some(NOT_WIRED.into()) } } else { o.clone() })
            })
            .collect(),
    );
    let tp_only = Facts { probes: &no_functions, kallsyms: f.kallsyms, has_tracepoint: f.has_tracepoint, force_kprobes: f.force_kprobes };
    let clone = backend::HOOKS.iter().find(|h| h.name == "anon_vma_clone").map(|h| backend::choose(h, &tp_only));
    backend::HOOKS
        .iter()
        .map(|h| {
            let best = backend::choose(h, f);
            let mut c = backend::choose(h, &tp_only);
            if matches!(best.backend, Backend::Fentry | Backend::Kprobe) {
                c.reason = Some(format!("{} works on this kernel, but trace attaches no function hooks yet", best.backend.name()));
            }
            if UNWIRED.contains(&h.name) {
                c.backend = Backend::Unavailable;
                c.tracepoints.clear();
                c.note = None;
                c.reason = Some(NOT_WIRED.into());
            }
            let clone_ok = clone.as_ref().is_some_and(|k| k.backend == Backend::TracepointOnly);
            if BY_CLONE_STACK.contains(&h.name) && !matches!(c.backend, Backend::Fentry | Backend::Kprobe) {
                if stacks && clone_ok {
                    c.backend = Backend::TracepointOnly;
                    c.tracepoints = vec!["kmem:kmem_cache_alloc"];
                    c.note = Some("anon_vma_clone's caller, from the kernel stack of its AVC allocations (reason in by_reason)");
                    c.reason = c.reason.map(|r| r.replace("; no tracepoint covers it", ""));
                } else {
                    c.backend = Backend::Unavailable;
                    c.note = None;
                    c.reason = Some(if stacks { "anon_vma_clone is not observable".into() } else { "kernel stacks off (--no-stacks)".into() });
                }
            }
            c
        })
        .collect()
}
