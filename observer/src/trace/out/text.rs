//! `trace` / `replay`'s final report as text: a renderer of the typed document
//! (`report::trace_doc::TraceDoc`), the same one `-j` prints, so the tracer reaches the user
//! by one path (tracer → document → JSON or text) and the two views cannot disagree.
//!
//! Kernel strings (a replay's argv, cgroup, kernel, reasons, missing tracepoints, cgroup
//! paths: a recording is a file from anyone) are escaped field by field with
//! `escape::ctl`, newlines included; the caller writes through `escape::Terminal` too.
use crate::escape::ctl;
use crate::report::lazy_rules;
use crate::report::trace_doc::{KindFlows, LockCounts, Locks, Model, ModelFed, TraceDoc, TraceSizes};
use lazyvma_model::trace_abi::FUNCTIONS;
use std::io::{Result, Write};

const HEAD: &str = "AV alloc     free  AVC alloc     free";

fn af(c: &KindFlows) -> String {
    format!("{:>8} {:>8} {:>10} {:>8}", c.anon_vma.alloc, c.anon_vma.free, c.anon_vma_chain.alloc, c.anon_vma_chain.free)
}

fn phase(p: Option<u32>) -> String {
    p.map_or("-".to_string(), |x| x.to_string())
}

/// The whole report, in the order the sections always came.
pub fn report(d: &TraceDoc, out: &mut impl Write) -> Result<()> {
    header(d, out)?;
    slab(d, out)?;
    events(d, out)?;
    model(d, out)?;
    if let Some(l) = &d.locks {
        locks(l, out)?;
    }
    if let Some(s) = &d.bpf_stats {
        writeln!(out, "\n{:<28} {:>12} {:>10}", "bpf program (--stats)", "runs", "mean ns")?;
        for (program, p) in s {
            writeln!(out, "{:<28} {:>12} {:>10}", program, p.runs, p.mean_ns)?;
        }
    }
    if let Some(rows) = &d.by_cgroup {
        writeln!(out, "\n{:<40} {:>5} {:>8} {:>8} {:>10} {:>8}", "by cgroup (at first sight)", "procs", "AV alloc", "free", "AVC alloc", "free")?;
        for r in rows {
            let (a, c) = (r.observed.anon_vma, r.observed.anon_vma_chain);
            writeln!(out, "{:<40} {:>5} {:>8} {:>8} {:>10} {:>8}", ctl(&r.path), r.processes, a.alloc, a.free, c.alloc, c.free)?;
        }
    }
    if let Some(r) = &d.recording {
        let how = if r.complete {
            "complete".to_string()
        } else {
            format!("cut short after chunk {}: {} bytes lost; end reason and lost events unknown", r.chunks, r.lost_bytes)
        };
        writeln!(out, "recording: {} ({} records in {} chunks, {} bytes, format {}), {how}", r.path, r.records, r.chunks, r.bytes, r.format_version)?;
    }
    Ok(())
}

/// What was traced and how it ended; the object sizes.
fn header(d: &TraceDoc, out: &mut impl Write) -> Result<()> {
    let argv = d.command.as_ref().map_or(String::new(), |c| c.argv.join(" "));
    let ended_by = &d.ended_by;
    let what = match (d.scope.as_str(), d.command.as_ref().map_or((None, None), |c| (c.exit_status, c.signal))) {
        ("command", (Some(c), _)) => format!("command `{argv}` exited with status {c}"),
        ("command", (None, Some(s))) => format!("command `{argv}` was killed by signal {s}"),
        ("command", (None, None)) => format!("command `{argv}` still running (trace stopped: {ended_by})"),
        ("pids", _) => format!("pids {:?} and descendants (ended by {ended_by})", d.pids),
        ("cgroup", _) => format!("cgroup {} ({} processes at start) and descendants (ended by {ended_by})", d.cgroup.as_deref().unwrap_or("?"), d.pids.len()),
        _ => format!("whole system (ended by {ended_by})"),
    };
    writeln!(out, "lazyvma trace: {}; {} ms on {}", ctl(&what), d.elapsed_ms, ctl(d.kernel.as_deref().unwrap_or("unknown")))?;
    match &d.sizes {
        // Kinds are told by object_size (bytes_req); bytes are slab slots, as every command prices them.
        TraceSizes::Caches(s) => {
            let (av, avc) = (&s.anon_vma, &s.anon_vma_chain);
            writeln!(
                out,
                "objects by call_site; bytes per slab slot: anon_vma {} B ({}), anon_vma_chain {} B; kinds by object_size {} B, {} B",
                av.slab_size,
                ctl(&av.source),
                avc.slab_size,
                av.object_size,
                avc.object_size
            )
        }
        // A document read back from a trace JSON of before slab sizes: its bytes were these.
        TraceSizes::ObjectSizes { anon_vma, anon_vma_chain } => {
            writeln!(out, "objects by call_site; bytes per object (object_size): anon_vma {anon_vma} B, anon_vma_chain {anon_vma_chain} B")
        }
    }
}

/// The observed slab counts: total, by function, by reason, by (process, phase).
fn slab(d: &TraceDoc, out: &mut impl Write) -> Result<()> {
    writeln!(out, "\n{:<28} {HEAD}", "observed")?;
    writeln!(out, "{:<28} {}", "total", af(&d.observed))?;
    if let Some(u) = d.observed.unclassified {
        writeln!(out, "{:<28} {} alloc, {} free of neither size or kind", "unclassified", u.alloc, u.free)?;
    }
    // The functions in the ABI's order (the document's map sorts them by name).
    writeln!(out, "\n{:<28} {HEAD}", "by function")?;
    for f in FUNCTIONS {
        writeln!(out, "{f:<28} {}", af(&d.by_function.get(f).copied().unwrap_or_default()))?;
    }
    writeln!(out, "\n{:<28} {HEAD}", "by reason")?;
    for (k, c) in &d.by_reason {
        writeln!(out, "{:<28} {}", ctl(k), af(c))?;
    }
    // Rows where something was observed: the model adds rows of its own (zero observed),
    // which its table shows.
    let rows: Vec<_> = d.phases.iter().filter(|p| p.observed != KindFlows::default()).collect();
    if !rows.is_empty() {
        writeln!(out, "\n{:<28} {HEAD}", "proc  tgid     phase")?;
        for p in rows {
            writeln!(out, "{:<5} {:<8} {:<13} {}", p.proc, p.tgid, phase(p.phase), af(&p.observed))?;
        }
    }
    Ok(())
}

/// The records, the backends, the ops and the kernel events.
fn events(d: &TraceDoc, out: &mut impl Write) -> Result<()> {
    let e = &d.events;
    match (e.lost, e.sent) {
        (Some(lost), Some(sent)) => writeln!(out, "\nlost events: {lost} (of {sent} sent; {} received)", e.received)?,
        _ => writeln!(out, "\nlost events: unknown (recording cut short; {} received)", e.received)?,
    }
    if d.launcher_frees > 0 {
        writeln!(out, "not counted: {} frees of lazyvma's own image torn down by the command's exec", d.launcher_frees)?;
    }
    for m in &d.missing_tracepoints {
        writeln!(out, "missing: {}: {}", ctl(&m.tracepoint), ctl(&m.error))?;
    }
    // `backend_detail` keeps the hooks' order (`backend` is a map by name).
    for b in ["fentry", "kprobe", "tracepoint-only", "unavailable"] {
        let hooks: Vec<&str> = d.backend_detail.iter().filter(|c| c.backend == b).map(|c| c.hook.as_str()).collect();
        if !hooks.is_empty() {
            writeln!(out, "backend: {b} for {}", hooks.join(", "))?;
        }
    }
    if let Some(s) = &d.ops {
        let counts: Vec<String> = s.counts.iter().map(|(k, v)| format!("{k}={v}")).collect();
        writeln!(out, "ops: {}", counts.join(" "))?;
        let i = &s.implied;
        writeln!(
            out,
            "ops imply: prepare +{} AV (+{} reused), fork +{} AV (+{} reused), clone +{} AVC, unlink -{} AVC, put -{} AV",
            i.prepare_new_anon_vma, i.prepare_reused_neighbour, i.fork_new_anon_vma, i.fork_reused_ancestor, i.clone_avc, i.unlink_avc, i.put_anon_vma_frees
        )?;
    }
    if let Some(k) = &d.kernel_events {
        let t = &k.total;
        if *t != Default::default() || k.unattributed_ksm_records > 0 {
            writeln!(
                out,
                "kernel events: ksm merges {} (failed {}), ksm rmap items removed {}, thp faults {} (fell back {}), unattributed ksm records {}",
                t.ksm_merges, t.ksm_merge_failures, t.ksm_rmap_items_removed, t.thp_faults, t.thp_fallbacks, k.unattributed_ksm_records
            )?;
        }
    }
    if let Some(j) = &d.rmap {
        // Its sections as one-line JSON, keys sorted (`{"max":..,"p50":..,"p99":..}`).
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
    Ok(())
}

/// The model's counts beside the observed ones, its rows, rules and coverage.
fn model(d: &TraceDoc, out: &mut impl Write) -> Result<()> {
    let m = match &d.model {
        Some(Model::Fed(m)) => m,
        Some(Model::NotFed { why, .. }) => return writeln!(out, "model: not fed ({why})"),
        None => return Ok(()),
    };
    let (eager, lazy) = (d.eager.unwrap_or_default(), d.lazy.unwrap_or_default());
    let (av_size, avc_size) = (d.sizes.of("anon_vma").0 as i64, d.sizes.of("anon_vma_chain").0 as i64);
    writeln!(out, "\n{:<28} {HEAD}", format!("model ({} rules)", m.kernel_rules))?;
    writeln!(out, "{:<28} {}", "eager", af(&eager))?;
    writeln!(out, "{:<28} {}", "lazy", af(&lazy))?;
    let (av, avc) = (eager.anon_vma.alloc as i64 - lazy.anon_vma.alloc as i64, eager.anon_vma_chain.alloc as i64 - lazy.anon_vma_chain.alloc as i64);
    let live = live_now(d, m);
    writeln!(
        out,
        "{:<28} {av} anon_vma + {avc} anon_vma_chain allocations ({} B); {} B of live objects now",
        "lazy saves",
        av * av_size + avc * avc_size,
        (live[0] - live[2]) * av_size + (live[1] - live[3]) * avc_size
    )?;
    // The model's rows in the order the feed first counted at each (`model_order`).
    let mut rows: Vec<_> = d.phases.iter().filter(|p| p.eager.is_some()).collect();
    rows.sort_by_key(|p| p.model_order.unwrap_or(usize::MAX));
    if !rows.is_empty() {
        writeln!(out, "\n{:<20} {:<38} lazy", "proc  tgid  phase", "eager AV alloc free  AVC alloc free")?;
        for r in rows {
            let (e, l) = (r.eager.unwrap_or_default(), r.lazy.unwrap_or_default());
            writeln!(out, "{:<5} {:<7} {:<6} {}  {}", r.proc, r.tgid, phase(r.phase), af(&e), af(&l))?;
        }
    }
    let fired: Vec<String> = d
        .lazy_rules
        .as_ref()
        .map(|r| lazy_rules::in_order(r).into_iter().filter(|(_, r)| r.fired > 0).map(|(name, r)| format!("{name} {} ({})", r.fired, r.status)).collect())
        .unwrap_or_default();
    writeln!(out, "lazy rules fired: {}", if fired.is_empty() { "none".to_string() } else { fired.join(", ") })?;
    writeln!(
        out,
        "model fed {} events for {} processes; not modelled: {:?}; faults not placed {}; layout mismatches {}",
        m.events_fed, m.processes_modelled, m.not_modelled, m.faults_not_placed, m.layout_mismatches
    )?;
    if !m.seeded.is_empty() || !m.not_seeded.is_empty() {
        writeln!(out, "seeded from the snapshot at the start: {:?}", m.seeded)?;
        for (tgid, why) in &m.not_seeded {
            writeln!(out, "not seeded: {tgid}: {}", ctl(why))?;
        }
    }
    if !m.unmodelled_syscalls.is_empty() {
        writeln!(out, "unmodelled syscalls: {:?}", m.unmodelled_syscalls)?;
    }
    if m.model_errors > 0 {
        writeln!(out, "model errors: {} (first: {})", m.model_errors, ctl(m.first_model_error.as_deref().unwrap_or("")))?;
    }
    for why in &m.incomplete {
        writeln!(out, "model incomplete: {}", ctl(why))?;
    }
    if m.events_dropped > 0 {
        writeln!(out, "model events: {} past --model-events-max {} not kept (counted above); knob sweep not run", m.events_dropped, m.events_max)?;
    }
    Ok(())
}

/// Live (eager AV, eager AVC, lazy AV, lazy AVC) in the model at the end: the timeline's
/// last point, which holds the final counts; without one (a document read back from an
/// older trace JSON), the seed's live objects plus what the trace fed.
fn live_now(d: &TraceDoc, m: &ModelFed) -> [i64; 4] {
    if let Some((e, l)) = d.timeline.last().and_then(|p| Some((p.eager_live?, p.lazy_live?))) {
        return [e.anon_vma, e.anon_vma_chain, l.anon_vma, l.anon_vma_chain];
    }
    let net = |f: Option<KindFlows>, av: bool| {
        let f = f.unwrap_or_default();
        let c = if av { f.anon_vma } else { f.anon_vma_chain };
        c.alloc as i64 - c.free as i64
    };
    let s = m.seeded_live.unwrap_or_default();
    [
        s.eager.anon_vma + net(d.eager, true),
        s.eager.anon_vma_chain + net(d.eager, false),
        s.lazy.anon_vma + net(d.lazy, true),
        s.lazy.anon_vma_chain + net(d.lazy, false),
    ]
}

/// anon_vma root rwsem waits: the total, the ten processes that waited most, the counters.
fn locks(l: &Locks, out: &mut impl Write) -> Result<()> {
    let l: &LockCounts = match l {
        Locks::Unavailable { reason, .. } => return writeln!(out, "anon_vma root rwsem contention: unavailable ({reason})"),
        Locks::Traced(l) => l,
    };
    let us = |ns: u64| ns as f64 / 1e3;
    let line = |w: &crate::report::trace_doc::Waits| {
        let q = &w.wait_ns;
        format!("{:>8} {:>6} {:>6} {:>10.1} {:>10.1} {:>10.1}", w.contentions, w.read, w.write, us(q.p50), us(q.p99), us(q.max))
    };
    writeln!(out, "\n{:<28} {:>8} {:>6} {:>6} {:>10} {:>10} {:>10}", "anon_vma root rwsem waits", "count", "read", "write", "p50 us", "p99 us", "max us")?;
    writeln!(out, "{:<28} {}", "total", line(&l.total))?;
    // Most waits first; ties in the document's order (by process, `other` last).
    let mut rows: Vec<_> = l.by_process.iter().collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.waits.contentions));
    for r in rows.iter().take(10) {
        let name = match r.proc {
            Some(p) => format!("proc {p} tgid {}", r.tgid.unwrap_or(0)),
            None => "other".into(),
        };
        writeln!(out, "{name:<28} {}", line(&r.waits))?;
    }
    if rows.len() > 10 {
        writeln!(out, "({} more processes in -j)", rows.len() - 10)?;
    }
    let c = |n: Option<u64>| n.map_or("?".into(), |n| n.to_string());
    writeln!(
        out,
        "lock events: {} begins, {} ends, {} paired ({} out of scope, {} via the anon_vma's owner), unpaired {} begins / {} ends, {} lost; anon_vmas seeded {}, refused by the full set {}",
        l.begins,
        l.ends,
        l.paired,
        l.out_of_scope,
        l.via_owner,
        l.unpaired_begins,
        l.unpaired_ends,
        c(l.lost),
        c(l.anon_vmas_seeded),
        c(l.set_full)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::schema::Flow;
    use crate::report::trace_doc::{CgroupRow, PhaseRow};

    /// The smallest document `trace -j` could print, read back.
    fn doc() -> TraceDoc {
        let af = |a: u64, f: u64| serde_json::json!({ "alloc": a, "free": f });
        serde_json::from_value(serde_json::json!({
            "kernel": "6.18", "scope": "command", "elapsed_ms": 5, "ended_by": "command exited",
            "sizes": serde_json::to_value(lazyvma_model::sizes::Sizes::spec_x86_64()).unwrap(),
            "observed": { "anon_vma": af(2, 0), "anon_vma_chain": af(2, 0) },
            "events": { "malformed": 0, "stack_errors": 0 },
            "model": { "fed": true, "kernel_rules": "6.18" },
        }))
        .unwrap()
    }

    fn flows(av: u64) -> KindFlows {
        KindFlows { anon_vma: Flow { alloc: av, free: 0 }, anon_vma_chain: Flow::default(), unclassified: None }
    }

    fn text(d: &TraceDoc) -> String {
        let mut out = vec![];
        report(d, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// The observed table lists the rows where something was observed, in the document's
    /// order; the model's table every row the model counted at, in the feed's order
    /// (`model_order`), its own zero-observed rows included.
    #[test]
    fn each_table_keeps_its_own_rows_and_order() {
        let mut d = doc();
        let row = |proc: usize, observed: u64, model_order: Option<usize>| PhaseRow {
            proc,
            tgid: 100 + proc as u32,
            observed: flows(observed),
            eager: model_order.map(|_| flows(proc as u64 + 1)),
            lazy: model_order.map(|_| flows(0)),
            model_order,
            ..Default::default()
        };
        d.phases = vec![row(0, 1, Some(2)), row(1, 1, None), row(2, 1, Some(0)), row(3, 0, Some(1))];
        let t = text(&d);
        let tgids = |head: &str| -> Vec<String> {
            let at = t.find(head).unwrap_or_else(|| panic!("no `{head}` in {t}"));
            t[at..]
                .lines()
                .skip(1)
                .take_while(|l| !l.is_empty() && !l.starts_with("lazy rules"))
                .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
                .collect()
        };
        assert_eq!(tgids("proc  tgid     phase"), ["100", "101", "102"], "{t}");
        assert_eq!(tgids("proc  tgid  phase"), ["102", "103", "100"], "{t}");
    }

    /// Strings from a recording (anyone's file) are escaped field by field.
    #[test]
    fn kernel_strings_are_escaped() {
        let mut d = doc();
        d.kernel = Some("6.18\n\u{1b}[2J".into());
        d.by_reason.insert("split\u{202e}".into(), flows(1));
        d.by_cgroup = Some(vec![CgroupRow { path: "/a\nb".into(), id: 1, processes: 1, observed: flows(1), eager: None, lazy: None }]);
        let t = text(&d);
        assert!(t.contains("on 6.18\\x0a\\x1b[2J\n") && t.contains("\nsplit\\u{202e} ") && t.contains("\n/a\\x0ab "), "{t}");
    }

    /// Lines no recording of this session reached: counts of neither kind, and the model's
    /// errors (their text escaped like every other string that can come from a file).
    #[test]
    fn unclassified_counts_and_model_errors_are_printed() {
        let mut d = doc();
        d.observed.unclassified = Some(Flow { alloc: 3, free: 1 });
        let mut v = serde_json::to_value(&d).unwrap();
        v["model"]["model_errors"] = serde_json::json!(2);
        v["model"]["first_model_error"] = serde_json::json!("pid 7: no such VMA \u{1b}[2J");
        let t = text(&serde_json::from_value(v).unwrap());
        assert!(t.contains("unclassified                 3 alloc, 1 free of neither size or kind"), "{t}");
        assert!(t.contains("model errors: 2 (first: pid 7: no such VMA "), "{t}");
        assert!(!t.contains('\u{1b}'), "{t}");
    }
}
