//! The live rows and the final report of `lazyvma trace`, as text or one JSON object.
use crate::load::backend::Choice;
use crate::report::trace_doc::{self as doc, PhaseRow, TraceDoc};
use crate::trace::{
    counts::slab::{Sizes, SlabCounts},
    tree::command::Status,
    Tracer,
};
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
pub fn json(t: &Tracer, r: &Run<'_>) -> TraceDoc {
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
        model: Some(crate::trace::out::model_view::json(t.feed.as_ref(), r.scope, t.feed.as_ref().is_some_and(|f| f.print))),
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
    let mut v = t.kernel_events.json(|phase| shown(r, phase));
    let name = |hook: &str| r.backend.iter().find(|c| c.hook == hook).map(|c| c.backend.name().to_string());
    v.backend = doc::KernelEventBackends { ksm: name("ksm"), thp_fault: name("thp_fault") };
    v
}

fn af(c: &SlabCounts) -> String {
    format!("{:>8} {:>8} {:>10} {:>8}", c.anon_vma.alloc, c.anon_vma.free, c.anon_vma_chain.alloc, c.anon_vma_chain.free)
}

const HEAD: &str = "AV alloc     free  AVC alloc     free";

pub fn text(t: &Tracer, r: &Run<'_>, out: &mut impl Write) -> std::io::Result<()> {
    let what = match (r.scope, r.status) {
        ("command", Some(Status::Exited(c))) => format!("command `{}` exited with status {c}", r.argv.join(" ")),
        ("command", Some(Status::Signaled(s))) => format!("command `{}` was killed by signal {s}", r.argv.join(" ")),
        ("command", None) => format!("command `{}` still running (trace stopped: {})", r.argv.join(" "), r.ended_by),
        ("pids", _) => format!("pids {:?} and descendants (ended by {})", r.pids, r.ended_by),
        ("cgroup", _) => format!(
            "cgroup {} ({} processes at start) and descendants (ended by {})",
            r.cgroup.map_or("?".into(), |c| c.display().to_string()),
            r.pids.len(),
            r.ended_by
        ),
        _ => format!("whole system (ended by {})", r.ended_by),
    };
    // A replay's argv, cgroup, kernel, reasons and missing tracepoints come from the
    // recording (a file from anyone): each one escaped field, newlines included.
    let ctl = crate::escape::ctl;
    writeln!(out, "lazyvma trace: {}; {} ms on {}", ctl(&what), r.elapsed_ms, ctl(&r.kernel))?;
    let sizes: &Sizes = &t.sizes;
    // Kinds are told by object_size (bytes_req); bytes are slab slots, as every command prices them.
    let (av, avc) = (&sizes.anon_vma, &sizes.anon_vma_chain);
    writeln!(
        out,
        "objects by call_site; bytes per slab slot: anon_vma {} B ({}), anon_vma_chain {} B; kinds by object_size {} B, {} B",
        av.slab_size,
        ctl(&av.source),
        avc.slab_size,
        av.object_size,
        avc.object_size
    )?;
    writeln!(out, "\n{:<28} {HEAD}", "observed")?;
    writeln!(out, "{:<28} {}", "total", af(&t.tally.total))?;
    let u = t.tally.total.unclassified;
    if u.alloc + u.free > 0 {
        writeln!(out, "{:<28} {} alloc, {} free of neither size or kind", "unclassified", u.alloc, u.free)?;
    }
    writeln!(out, "\n{:<28} {HEAD}", "by function")?;
    for (f, c) in FUNCTIONS.iter().zip(&t.tally.by_function) {
        writeln!(out, "{f:<28} {}", af(c))?;
    }
    writeln!(out, "\n{:<28} {HEAD}", "by reason")?;
    for (k, c) in &t.tally.by_reason {
        writeln!(out, "{:<28} {}", ctl(k), af(c))?;
    }
    let rows: Vec<_> = t.tally.phases.iter().filter(|p| shown(r, p.phase)).collect();
    if !rows.is_empty() {
        writeln!(out, "\n{:<28} {HEAD}", "proc  tgid     phase")?;
        for p in rows {
            let ph = p.phase.map_or("-".to_string(), |x| x.to_string());
            writeln!(out, "{:<5} {:<8} {:<13} {}", p.proc, p.tgid, ph, af(&p.counts))?;
        }
    }
    match (r.lost, r.sent) {
        (Some(lost), Some(sent)) => writeln!(out, "\nlost events: {lost} (of {sent} sent; {} received)", t.received)?,
        _ => writeln!(out, "\nlost events: unknown (recording cut short; {} received)", t.received)?,
    }
    if t.launcher_frees > 0 {
        writeln!(out, "not counted: {} frees of lazyvma's own image torn down by the command's exec", t.launcher_frees)?;
    }
    for (tp, why) in r.missing {
        writeln!(out, "missing: {}: {}", ctl(tp), ctl(why))?;
    }
    for b in ["fentry", "kprobe", "tracepoint-only", "unavailable"] {
        let hooks: Vec<&str> = r.backend.iter().filter(|c| c.backend.name() == b).map(|c| c.hook).collect();
        if !hooks.is_empty() {
            writeln!(out, "backend: {b} for {}", hooks.join(", "))?;
        }
    }
    if r.ops {
        let s = &t.op_stats;
        let counts: Vec<String> = s.counts.iter().map(|(k, v)| format!("{k}={v}")).collect();
        writeln!(out, "ops: {}", counts.join(" "))?;
        let i = &s.implied;
        writeln!(
            out,
            "ops imply: prepare +{} AV (+{} reused), fork +{} AV (+{} reused), clone +{} AVC, unlink -{} AVC, put -{} AV",
            i.prepare_new_anon_vma, i.prepare_reused_neighbour, i.fork_new_anon_vma, i.fork_reused_ancestor, i.clone_avc, i.unlink_avc, i.put_anon_vma_frees
        )?;
    }
    if let Some(line) = t.kernel_events.text() {
        writeln!(out, "{line}")?;
    }
    if r.rmap {
        // Its sections as one-line JSON, keys sorted (`{"max":..,"p50":..,"p99":..}`).
        let j = t.op_stats.rmap();
        let line = |v: serde_json::Result<serde_json::Value>| v.unwrap_or_default();
        writeln!(
            out,
            "rmap: {} walks by caller {}; lock wait ns {}; contended {}",
            j.walks,
            line(serde_json::to_value(&j.by_caller)),
            line(serde_json::to_value(j.wait_ns)),
            j.contended
        )?;
    }
    crate::trace::out::model_view::text(t.feed.as_ref(), &t.sizes, r.scope, out)
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
