//! The final report's document, filled from the tracer (`trace/out/text.rs` renders it as
//! text, `TraceDoc::to_json` as JSON), and the live rows.
use crate::load::backend::Choice;
use crate::report::trace_doc::{self as doc, PhaseRow, TraceDoc};
use crate::trace::{tree::command::Status, Tracer};
use lazyvma_model::trace_abi::FUNCTIONS;
use std::io::Write;

/// Everything the final report shows besides the tracer's counts.
pub struct Run<'a> {
    pub scope: &'a str,
    pub argv: &'a [String],
    pub status: Option<Status>,
    pub pids: &'a [u32],
    /// `--cgroup`: the directory whose members at start were traced.
    pub cgroup: Option<&'a std::path::Path>,
    pub elapsed_ms: u128,
    /// None: not known (a replayed recording cut short before its trailer).
    pub sent: Option<u64>,
    pub lost: Option<u64>,
    pub backend: &'a [Choice],
    pub tracepoints: &'a [String],
    pub missing: &'a [(String, String)],
    pub stacks: bool,
    pub kernel: String,
    pub ended_by: &'a str,
    /// Some function hook attached: the ops counts mean something.
    pub ops: bool,
    /// The rmap hook attached.
    pub rmap: bool,
}

/// Whole-system traces keep per-phase rows and process entries only for processes that
/// emitted phase markers: everything else is in the totals, not in a row per process.
fn shown(r: &Run<'_>, phase: Option<u32>) -> bool {
    r.scope != "system" || phase.is_some()
}

/// The document's sections the tracer's counts give; `record::meta::print` adds the rest
/// (locks, lazy rules, knobs, the header's host/arch/start, the live and replay extras).
pub fn document(t: &Tracer, r: &Run<'_>) -> TraceDoc {
    let backend = r.backend.iter().map(|c| (c.hook.to_string(), c.backend.name().to_string())).collect();
    let by_function = FUNCTIONS.iter().zip(&t.tally.by_function).map(|(f, c)| (f.to_string(), c.into())).collect();
    let by_reason = t.tally.by_reason.iter().map(|(k, c)| (k.clone(), c.into())).collect();
    let mut phases: Vec<PhaseRow> = t
        .tally
        .phases
        .iter()
        .filter(|p| shown(r, p.phase))
        .map(|p| PhaseRow { proc: p.proc, tgid: p.tgid, phase: p.phase, observed: (&p.counts).into(), ..Default::default() })
        .collect();
    crate::trace::out::model_view::add_to_phases(t.feed.as_ref(), &mut phases);
    let (exit_status, signal) = match r.status {
        Some(Status::Exited(c)) => (Some(c), None),
        Some(Status::Signaled(s)) => (None, Some(s)),
        None => (None, None),
    };
    let command = (!r.argv.is_empty()).then(|| doc::Command { argv: r.argv.to_vec(), exit_status, signal });
    TraceDoc {
        kernel: Some(r.kernel.clone()),
        scope: r.scope.to_string(),
        pids: r.pids.to_vec(),
        cgroup: r.cgroup.map(|c| c.to_string_lossy().into_owned()),
        command,
        ended_by: r.ended_by.to_string(),
        elapsed_ms: r.elapsed_ms as u64,
        backend,
        backend_detail: r.backend.iter().map(Choice::doc).collect(),
        tracepoints: r.tracepoints.to_vec(),
        missing_tracepoints: r.missing.iter().map(|(tp, why)| doc::MissingTracepoint { tracepoint: tp.clone(), error: why.clone() }).collect(),
        kernel_stacks: r.stacks,
        sizes: doc::TraceSizes::Caches(t.sizes.clone()),
        observed: (&t.tally.total).into(),
        by_function,
        by_reason,
        phases,
        processes: t.tree.procs.iter().filter(|p| shown(r, p.phase)).cloned().collect(),
        lost_events: r.lost,
        events: doc::Events {
            sent: r.sent,
            received: t.received,
            lost: r.lost,
            malformed: t.malformed,
            stack_errors: t.stack_errors,
            unpaired_hook_records: t.unpaired(),
        },
        ops: r.ops.then(|| t.op_stats.ops()),
        kernel_events: Some(kernel_events(t, r)),
        launcher_frees: t.launcher_frees,
        live_objects: t.live_objects().map(|n| n as u64),
        timeline: t.timeline_json(r.elapsed_ms as u64),
        eager: t.feed.as_ref().map(|f| (&f.eager).into()),
        lazy: t.feed.as_ref().map(|f| (&f.lazy).into()),
        rmap: r.rmap.then(|| t.op_stats.rmap()),
        model: Some(crate::trace::out::model_view::doc(t.feed.as_ref(), r.scope, t.feed.as_ref().is_some_and(|f| f.print))),
        // From the header, the trailer and the live run: `record::meta::print`.
        arch: None,
        host: None,
        start_unix_ms: None,
        kernel_counts: None,
        locks: None,
        lazy_rules: None,
        lazy_rules_why: None,
        knobs: None,
        rules_that_matter: None,
        bpf_stats: None,
        by_cgroup: None,
        cgroup_cap: None,
        recording: None,
    }
}

/// The KSM / THP counts, with the backend that saw each (0 under "unavailable" means unseen).
fn kernel_events(t: &Tracer, r: &Run<'_>) -> doc::KernelEvents {
    let mut v = t.kernel_events.doc(|phase| shown(r, phase));
    let name = |hook: &str| r.backend.iter().find(|c| c.hook == hook).map(|c| c.backend.name().to_string());
    v.backend = doc::KernelEventBackends { ksm: name("ksm"), thp_fault: name("thp_fault") };
    v
}

/// One live row: what happened in the last interval, and the totals so far.
pub fn live_header(out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{:>8}  {:>8} {:>8} {:>10} {:>8}  {:>8} {:>8}  {:>6}  {:>20}  {}",
        "time",
        "AV alloc",
        "free",
        "AVC alloc",
        "free",
        "AV net",
        "AVC net",
        "lost",
        "lock p50/p99/max us",
        crate::trace::out::model_view::LIVE_HEAD
    )
}

pub fn live_row(t: &Tracer, elapsed_ms: u128, lost: u64, out: &mut impl Write) -> std::io::Result<()> {
    let i = &t.interval;
    let tot = &t.tally.total;
    let net = |a: &crate::trace::counts::slab::AllocFree| a.alloc as i64 - a.free as i64;
    writeln!(
        out,
        "{:>7.1}s  {:>8} {:>8} {:>10} {:>8}  {:>8} {:>8}  {:>6}  {:>20}  {}",
        elapsed_ms as f64 / 1000.0,
        i.anon_vma.alloc,
        i.anon_vma.free,
        i.anon_vma_chain.alloc,
        i.anon_vma_chain.free,
        net(&tot.anon_vma),
        net(&tot.anon_vma_chain),
        lost,
        lock_waits(t.locks.interval.as_ref()),
        crate::trace::out::model_view::live(t.feed.as_ref(), &t.sizes)
    )
}

/// The interval's anon_vma root rwsem waits, in µs; "-" when there were none.
fn lock_waits(h: Option<&hdrhistogram::Histogram<u64>>) -> String {
    let us = |v: u64| format!("{:.1}", v as f64 / 1e3);
    h.map_or("-".into(), |h| format!("{}/{}/{}", us(h.value_at_quantile(0.5)), us(h.value_at_quantile(0.99)), us(h.max())))
}
