//! The backend each hook of `load::backend::HOOKS` really has in this trace: what
//! `trace::attach` attached (fentry, or kprobe, per function), else the tracepoint fallback
//! trace itself attaches (slab events by call_site, clone callers from kernel stacks), else
//! unavailable, always with why.
use crate::load::{
    backend::{self, Backend, Choice, Facts},
    probe::{AttachType, ProbeResult, Probes},
};
use crate::trace::ingest::attach::HookAttach;

const NOT_WIRED: &str = "its tracepoint fallback is not attached by trace";

/// Hooks observed through the kernel stack of anon_vma_clone's AVC allocations when their
/// functions cannot be hooked.
const BY_CLONE_STACK: &[&str] = &["split", "merge", "copy_vma"];
/// Hooks whose tracepoint fallback trace does not attach.
const UNWIRED: &[&str] = &["exit_mmap", "rmap", "lock:contention_begin", "lock:contention_end"];

/// The lock tracepoints as `trace::locks::attach` left them (they are in `UNWIRED` for
/// whoever does not attach them, e.g. serve).
pub fn locks(backend: &mut [Choice], outcome: &Result<(), String>) {
    for c in backend.iter_mut().filter(|c| crate::trace::counts::locks::TRACEPOINTS.contains(&c.hook)) {
        match outcome {
            Ok(()) => {
                c.backend = Backend::Tracepoint;
                c.tracepoints = vec![c.hook];
                c.reason = None;
            }
            Err(e) => c.reason = Some(e.clone()),
        }
    }
}

/// `attached`: per function hook tried, what `attach::attach` got.
pub fn used(f: &Facts<'_>, stacks: bool, attached: &[(&'static str, HookAttach)]) -> Vec<Choice> {
    let no_functions = Probes(
        f.probes
            .0
            .iter()
            .map(|(t, o)| {
                let function = matches!(t, AttachType::Fentry | AttachType::Fexit | AttachType::Kprobe | AttachType::Kretprobe);
                (*t, if function { ProbeResult { ok: false, error: Some("not attached".into()) } } else { o.clone() })
            })
            .collect(),
    );
    let tp_only = Facts { probes: &no_functions, kallsyms: f.kallsyms, has_tracepoint: f.has_tracepoint, force_kprobes: f.force_kprobes };
    let clone_tp = backend::HOOKS.iter().find(|h| h.name == "anon_vma_clone").map(|h| backend::choose(h, &tp_only));
    let clone_ok = clone_tp.as_ref().is_some_and(|k| k.backend == Backend::TracepointOnly);
    backend::HOOKS
        .iter()
        .map(|h| {
            let best = backend::choose(h, f);
            let outcome = attached.iter().find(|(n, _)| *n == h.name).map(|(_, o)| o);
            if let Some(b) = outcome.and_then(HookAttach::backend) {
                let o = outcome.expect("has a backend");
                let mut c = best.clone();
                c.backend = b;
                c.functions = o.functions.iter().map(|(f, _)| *f).collect();
                c.reason = match (&best.reason, o.problems.is_empty()) {
                    (r, true) => r.clone(),
                    (Some(r), false) => Some(format!("{r}; {}", o.problems.join("; "))),
                    (None, false) => Some(o.problems.join("; ")),
                };
                return c;
            }
            // No function attached: the tracepoint fallback. Without an attempt the kernel's
            // own refusal (from the probes) is the reason; after one, what attach said.
            let mut c = match outcome {
                None => best,
                Some(o) => {
                    let mut c = backend::choose(h, &tp_only);
                    let rest = c.reason.take().filter(|_| c.backend == Backend::Unavailable);
                    c.reason = Some([Some(o.problems.join("; ")), rest].into_iter().flatten().collect::<Vec<_>>().join("; "));
                    c
                }
            };
            // KSM's tracepoints are attached by trace::ksm only where its functions were not.
            if let Some(o) = outcome.filter(|_| h.name == "ksm") {
                // Why no function: the kernel's refusal (not attempted) and what attach said.
                let why: Vec<String> = backend::choose(h, f).reason.into_iter().chain(o.problems.iter().cloned()).filter(|r| !r.is_empty()).collect();
                c.reason = Some(why.join("; "));
                if o.tracepoints.is_empty() {
                    c.backend = Backend::Unavailable;
                    c.tracepoints.clear();
                    c.note = None;
                } else {
                    c.backend = Backend::TracepointOnly;
                    c.tracepoints = o.tracepoints.clone();
                }
            }
            if UNWIRED.contains(&h.name) {
                c.backend = Backend::Unavailable;
                c.tracepoints.clear();
                c.note = None;
                c.reason = Some(match c.reason {
                    Some(r) if !r.is_empty() => format!("{r}; {NOT_WIRED}"),
                    _ => NOT_WIRED.into(),
                });
            }
            if BY_CLONE_STACK.contains(&h.name) {
                if stacks && clone_ok {
                    c.backend = Backend::TracepointOnly;
                    c.tracepoints = vec!["kmem:kmem_cache_alloc"];
                    c.note = Some("anon_vma_clone's caller, from the kernel stack of its AVC allocations (reason in by_reason)");
                    c.reason = c.reason.map(|r| r.replace("; no tracepoint covers it", ""));
                } else {
                    c.backend = Backend::Unavailable;
                    c.note = None;
                    c.reason = Some(if stacks { "anon_vma_clone is not observable".into() } else { "kernel stacks off (without --stacks)".into() });
                }
            }
            c
        })
        .collect()
}
