//! Text and markdown: the cover letter's table first, then lock avoidance, the fleet's
//! hosts, top processes and cgroups, rule counts, lost events and knobs.
use std::fmt::Write;

use super::hist;
use super::schema::{Cgroup, Doc, ObjectCounts, ObjectRow, Side};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Text,
    Markdown,
}

pub fn kb(bytes: i64) -> String {
    format!("{:.1}", bytes as f64 / 1024.0)
}

pub fn change(before: i64, after: i64) -> String {
    if before == 0 {
        return "n/a".into();
    }
    format!("{:+.1}%", (after - before) as f64 / before as f64 * 100.0)
}

/// The "before" side: eager where modelled, else what was observed.
pub fn before(r: &ObjectRow) -> Option<&Side> {
    r.eager.as_ref().or(r.observed.as_ref())
}

pub fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "n/a".into(), |v| v.to_string())
}

/// The seed table's rows: (object, before KB, after KB, change).
pub fn seed_rows(d: &Doc) -> Vec<[String; 4]> {
    d.objects
        .rows()
        .iter()
        .map(|(name, r)| {
            let (b, a) = (before(r).map(|s| s.bytes), r.lazy.as_ref().map(|s| s.bytes));
            let ch = match (b, a) {
                (Some(b), Some(a)) => change(b, a),
                _ => "n/a".into(),
            };
            [name.to_string(), opt(b.map(kb)), opt(a.map(kb)), ch]
        })
        .collect()
}

/// A string from the document (another host's names, a comm) as this style shows it.
fn field(style: Style, s: &str) -> String {
    match style {
        Style::Text => crate::escape::ctl(s).into_owned(),
        Style::Markdown => crate::escape::md(s),
    }
}

fn table(o: &mut String, style: Style, head: &[&str], rows: &[Vec<String>]) {
    let rows: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(|c| field(style, c)).collect()).collect();
    match style {
        Style::Text => {
            let _ = writeln!(o, "{}", head.join(" | "));
            for r in &rows {
                let _ = writeln!(o, "{}", r.join(" | "));
            }
        }
        Style::Markdown => {
            let _ = writeln!(o, "| {} |", head.join(" | "));
            let _ = writeln!(o, "|{}", "---|".repeat(head.len()));
            for r in &rows {
                let _ = writeln!(o, "| {} |", r.join(" | "));
            }
        }
    }
}

fn heading(o: &mut String, style: Style, title: &str) {
    match style {
        Style::Text => {
            let _ = writeln!(o, "\n{title}:");
        }
        Style::Markdown => {
            let _ = writeln!(o, "\n## {title}\n");
        }
    }
}

pub fn title(d: &Doc) -> String {
    if d.source == "merge" {
        format!("lazyvma report: {} ({} inputs), kernel {}, arch {}", d.host, d.hosts.len(), d.kernel, d.arch)
    } else {
        format!("lazyvma report: {} on {}, kernel {} ({}), {:.1} ms", d.source, d.host, d.kernel, d.arch, d.span.elapsed_ms)
    }
}

/// What "before" and "after" mean for this document.
pub fn legend(d: &Doc) -> String {
    let r = &d.objects.anon_vma;
    let b = match (r.eager.is_some(), d.kind()) {
        (true, "snapshot") => "today's kernel (EAGER), objects held now",
        (true, _) => "today's kernel (EAGER)",
        (false, _) => "observed on the unpatched kernel, objects allocated during the trace",
    };
    let a = if r.lazy.is_some() {
        format!("ANON_VMA_LAZY ({} knobs)", if d.knobs.is_empty() { "unknown" } else { "listed" })
    } else {
        "n/a (this source ran no lazy model)".into()
    };
    format!("Before = {b}; After = {a}")
}

pub fn lock_avoidance(d: &Doc) -> Vec<String> {
    let mut lines = Vec::new();
    match (d.rmap.get("vmas_with_anon_vma").copied().flatten(), d.rmap.get("lazy_lock_free_vmas").copied().flatten()) {
        (Some(all), Some(free)) => lines.push(format!(
            "{free} of {all} VMAs with an anon_vma ({}) would be LAZY: rmap walks of their folios take no anon_vma root rwsem",
            if all == 0 { "n/a".to_string() } else { format!("{:.1}%", free as f64 / all as f64 * 100.0) }
        )),
        _ => lines.push("VMAs that would be LAZY: not measured by this source".into()),
    }
    match d.rmap.get("walks").copied().flatten() {
        Some(w) => lines.push(format!("rmap walks: {w}")),
        None => lines.push("rmap walks: not measured by this source (needs the rmap function hook)".into()),
    }
    match d.rmap.get("lock_wait_events").copied().flatten() {
        Some(w) => lines.push(format!("anon_vma root rwsem waits: {w}")),
        None => lines.push("anon_vma root rwsem waits: not measured by this source (needs lock:contention_* in trace)".into()),
    }
    lines
}

/// name, unit, count, and p50..max of one histogram.
pub type HistRow = (String, String, u64, [(&'static str, u64); 4]);

/// One row per histogram, decoded (the loader checked them).
pub fn hist_rows(d: &Doc) -> Vec<HistRow> {
    d.histograms
        .series
        .iter()
        .filter_map(|(name, h)| {
            let decoded = hist::decode(name, h, d.histograms.contract).ok()?;
            Some((name.clone(), h.unit.clone(), decoded.len(), hist::summary(&decoded)))
        })
        .collect()
}

fn pair_cells(e: &Option<ObjectCounts>, l: &Option<ObjectCounts>) -> Vec<String> {
    vec![opt(e.map(|e| e.anon_vma)), opt(l.map(|l| l.anon_vma)), opt(e.map(|e| e.anon_vma_chain)), opt(l.map(|l| l.anon_vma_chain))]
}

/// A cgroup's "before": eager where modelled, else what its processes allocated (a trace).
pub fn cgroup_before(c: &Cgroup) -> Option<ObjectCounts> {
    c.eager.or(c.observed.map(|o| ObjectCounts { anon_vma: o.anon_vma.alloc, anon_vma_chain: o.anon_vma_chain.alloc }))
}

fn cgroup_section(o: &mut String, style: Style, cgroups: &[Cgroup], fleet: bool, top: usize) {
    if cgroups.is_empty() {
        return;
    }
    heading(o, style, "Top cgroups by savings");
    let rows: Vec<Vec<String>> = cgroups
        .iter()
        .take(top)
        .map(|c| {
            let mut r = vec![c.id.to_string(), c.path.clone()];
            if fleet {
                r.push(c.host.clone().unwrap_or_default());
            }
            r.push(c.processes.to_string());
            r.extend(pair_cells(&cgroup_before(c), &c.lazy));
            r.push(format!("{:.1}", c.saved_kb));
            r
        })
        .collect();
    let mut head = vec!["ID", "Cgroup"];
    if fleet {
        head.push("Host");
    }
    head.extend(["Processes", "anon_vma before", "after", "anon_vma_chain before", "after", "saved (KB)"]);
    table(o, style, &head, &rows);
    if cgroups.len() > top {
        let _ = writeln!(o, "({} more cgroup rows in the JSON)", cgroups.len() - top);
    }
}

/// `snapshot --by-cgroup`'s text: every cgroup row (the cap already bounds them).
pub fn cgroups_text(cgroups: &[Cgroup]) -> String {
    let mut o = String::new();
    cgroup_section(&mut o, Style::Text, cgroups, false, usize::MAX);
    o
}

pub fn render(d: &Doc, style: Style, top: usize) -> String {
    let mut o = String::new();
    match style {
        Style::Text => {
            let _ = writeln!(o, "{}", field(style, &title(d)));
        }
        Style::Markdown => {
            let _ = writeln!(o, "# {}", field(style, &title(d)));
        }
    }
    let _ = writeln!(o, "{}\n", legend(d));
    let seed: Vec<Vec<String>> = seed_rows(d).into_iter().map(Vec::from).collect();
    table(&mut o, style, &["Object", "Before (KB)", "After (KB)", "Change"], &seed);
    let _ = writeln!(o);
    let objects: Vec<Vec<String>> = d
        .objects
        .rows()
        .iter()
        .map(|(name, r)| vec![name.to_string(), opt(before(r).map(|s| s.objects)), opt(r.lazy.as_ref().map(|s| s.objects)), opt(r.size)])
        .collect();
    table(&mut o, style, &["Object", "Before (objects)", "After (objects)", "bytes each"], &objects);

    heading(&mut o, style, "Lock avoidance");
    for l in lock_avoidance(d) {
        let _ = writeln!(o, "- {l}");
    }
    let hists = hist_rows(d);
    if !hists.is_empty() {
        let _ = writeln!(o);
        let rows: Vec<Vec<String>> =
            hists.iter().map(|(n, u, c, s)| [n.clone(), u.clone(), c.to_string()].into_iter().chain(s.iter().map(|(_, v)| v.to_string())).collect()).collect();
        table(&mut o, style, &["Histogram", "unit", "count", "p50", "p90", "p99", "max"], &rows);
    }

    if !d.hosts.is_empty() {
        heading(&mut o, style, "Hosts");
        let mut rows: Vec<Vec<String>> = d
            .hosts
            .iter()
            .map(|h| {
                let s = |r: &ObjectRow| [opt(before(r).map(|s| kb(s.bytes))), opt(r.lazy.as_ref().map(|s| kb(s.bytes)))];
                let [ab, aa] = s(&h.objects.anon_vma);
                let [cb, ca] = s(&h.objects.anon_vma_chain);
                vec![h.host.clone(), h.file.clone(), h.source.clone(), h.kernel.clone(), ab, aa, cb, ca, h.lost_events.to_string()]
            })
            .collect();
        let t = &d.objects;
        let s = |r: &ObjectRow| [opt(before(r).map(|s| kb(s.bytes))), opt(r.lazy.as_ref().map(|s| kb(s.bytes)))];
        let [ab, aa] = s(&t.anon_vma);
        let [cb, ca] = s(&t.anon_vma_chain);
        rows.push(vec!["TOTAL".into(), "".into(), "".into(), "".into(), ab, aa, cb, ca, d.lost_events.to_string()]);
        table(
            &mut o,
            style,
            &["Host", "File", "Source", "Kernel", "anon_vma Before (KB)", "After (KB)", "anon_vma_chain Before (KB)", "After (KB)", "Lost events"],
            &rows,
        );
    }

    let fleet = !d.hosts.is_empty();
    if !d.processes.is_empty() {
        heading(&mut o, style, "Top processes by savings");
        let mut procs: Vec<_> = d.processes.iter().collect();
        procs.sort_by(|a, b| b.saved_kb.total_cmp(&a.saved_kb).then(a.pid.cmp(&b.pid)));
        let rows: Vec<Vec<String>> = procs
            .iter()
            .take(top)
            .map(|p| {
                let mut r = vec![p.pid.to_string(), p.comm.clone()];
                if fleet {
                    r.push(p.host.clone().unwrap_or_default());
                }
                r.extend(pair_cells(&Some(p.eager), &p.lazy));
                r.push(format!("{:.1}", p.saved_kb));
                r
            })
            .collect();
        let mut head = vec!["PID", "COMM"];
        if fleet {
            head.push("Host");
        }
        head.extend(["anon_vma before", "after", "anon_vma_chain before", "after", "saved (KB)"]);
        table(&mut o, style, &head, &rows);
    }
    cgroup_section(&mut o, style, &d.cgroups, fleet, top);
    if !d.rules.is_empty() {
        heading(&mut o, style, "Rule counts");
        let rows: Vec<Vec<String>> = d.rules.iter().map(|(k, v)| vec![k.clone(), v.to_string()]).collect();
        table(&mut o, style, &["Rule", "Count"], &rows);
    }
    if let Some(r) = &d.lazy_rules {
        heading(&mut o, style, "Lazy rules fired (spec §3.2; status: stated, inferred or open)");
        let (rows, idle) = super::lazy_rules::fired_rows(r);
        let rows: Vec<Vec<String>> = rows.into_iter().map(Vec::from).collect();
        table(&mut o, style, &super::lazy_rules::HEAD, &rows);
        let _ = writeln!(o, "({idle} of {} rules did not fire)", r.len());
    }
    if let Some(s) = &d.rules_that_matter {
        let shown = |rows: Vec<super::render_rules::Row>| -> Vec<Vec<String>> { rows.into_iter().map(|r| r.into_iter().map(|(_, v)| v).collect()).collect() };
        heading(&mut o, style, "Rules that matter: lazy counts under every knob value, the others at base");
        table(&mut o, style, &super::render_rules::SWEEP_HEAD, &shown(super::render_rules::sweep_rows(s)));
        heading(&mut o, style, "Lazy VMAs before their first share");
        table(&mut o, style, &super::render_rules::HISTORY_HEAD, &shown(super::render_rules::history_rows(s)));
    }
    if !d.bpf_stats.is_empty() {
        heading(&mut o, style, "BPF programs (--stats)");
        let rows: Vec<Vec<String>> = d.bpf_stats.iter().map(|(k, s)| vec![k.clone(), s.runs.to_string(), s.mean_ns.to_string()]).collect();
        table(&mut o, style, &["Program", "runs", "mean ns"], &rows);
    }
    if let Some(r) = &d.recording {
        heading(&mut o, style, "Recording");
        let _ = writeln!(o, "{}", field(style, &recording(r)));
    }
    heading(&mut o, style, "Lost events");
    let _ = writeln!(o, "{}", d.lost_events);
    heading(&mut o, style, "Knobs");
    if d.knobs.is_empty() {
        let _ = writeln!(o, "none (no lazy model ran)");
    } else {
        let _ = writeln!(o, "{}", field(style, &d.knobs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")));
    }
    let backend: Vec<String> = d.backend.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    let _ = writeln!(o, "\nBackend: {}", field(style, &if backend.is_empty() { "unknown".into() } else { backend.join(", ") }));
    for n in &d.notes {
        let _ = writeln!(o, "- {}", field(style, n));
    }
    // What the fields above did not cover (the title's host in text): no control character.
    crate::escape::lines(&o).into_owned()
}

/// Where a replay's records came from, in one line.
pub fn recording(r: &super::schema::Recording) -> String {
    let cut = if r.complete { String::new() } else { format!(", cut short: {} bytes lost", r.lost_bytes) };
    format!("{} (format {}, {} records in {} chunks, {} bytes){cut}", r.path, r.format_version, r.records, r.chunks, r.bytes)
}
