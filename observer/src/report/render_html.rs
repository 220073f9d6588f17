//! One self-contained HTML page: the tables of the text report and SVG charts (eager vs
//! lazy live objects over time, savings by cgroup or process, rmap lock-wait and other
//! distributions). A CSP forbids every external load, so "self-contained" is checked by
//! the browser itself. Cells and marks carry `data-k`/`data-value` for the test.
use std::fmt::Write;

use super::hist;
use super::render_text::{before, cgroup_before, kb, legend, lock_avoidance, opt, seed_rows, title};
use super::schema::Doc;
use super::svg::{bars, esc, lines, Series};
use super::trace_doc::LOCK_WAIT;

const STYLE: &str = "body{font:14px sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:.5em 0}\
td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}td:first-child,th:first-child{text-align:left}\
svg.chart{border:1px solid #ddd;margin:.5em 0;display:block}";

/// The lock-wait histogram the rmap chart draws, when a source measured it.
pub const RMAP_WAIT: &str = "rmap_lock_wait_ns";

fn cell(k: &str, v: &str) -> String {
    format!("<td data-k=\"{}\">{}</td>", esc(k), esc(v))
}

fn row(cells: &[String]) -> String {
    format!("<tr>{}</tr>", cells.concat())
}

fn head(cols: &[&str]) -> String {
    format!("<tr>{}</tr>", cols.iter().map(|c| format!("<th>{}</th>", esc(c))).collect::<String>())
}

fn timeline(d: &Doc) -> String {
    // The earliest point, not the first: a document read from a file may list them in any
    // order (the fuzzer's find), and a time before t0 must not underflow.
    let t0 = d.timeline.iter().map(|p| p.t_unix_ms).min().unwrap_or(0);
    let x = |t: u64| t.saturating_sub(t0) as f64 / 1000.0;
    let series = |name, color, f: &dyn Fn(&super::schema::Point) -> Option<f64>| Series {
        name,
        color,
        points: d.timeline.iter().filter_map(|p| Some((x(p.t_unix_ms), f(p)?))).collect(),
    };
    let all = [
        series("eager anon_vma", "#c0392b", &|p| p.eager.map(|e| e.anon_vma as f64)),
        series("lazy anon_vma", "#27ae60", &|p| p.lazy.map(|l| l.anon_vma as f64)),
        series("eager anon_vma_chain", "#e67e22", &|p| p.eager.map(|e| e.anon_vma_chain as f64)),
        series("lazy anon_vma_chain", "#2980b9", &|p| p.lazy.map(|l| l.anon_vma_chain as f64)),
        series("observed anon_vma", "#7f8c8d", &|p| p.observed.map(|o| o.anon_vma as f64)),
        series("observed anon_vma_chain", "#8e44ad", &|p| p.observed.map(|o| o.anon_vma_chain as f64)),
    ];
    // Only what this source has: a trace without its model draws the observed pair alone.
    let drawn: Vec<Series> = all.into_iter().filter(|s| !s.points.is_empty()).collect();
    lines("chart-timeline", "eager vs lazy live objects over time", "seconds since the first point", &drawn)
}

fn savings(d: &Doc) -> (String, String) {
    let host = |h: &Option<String>| h.as_ref().map(|h| format!("{h}:")).unwrap_or_default();
    if !d.cgroups.is_empty() {
        // A row without its lazy side (a trace whose model was not fed) saves nothing known.
        let b: Vec<(String, f64)> =
            d.cgroups.iter().filter(|c| c.lazy.is_some()).take(12).map(|c| (format!("{}{}", host(&c.host), c.path), c.saved_kb)).collect();
        return ("Savings by cgroup".into(), bars("chart-savings", "saved KB by cgroup", "KB", &b, "no savings: this source ran no lazy model"));
    }
    let mut procs: Vec<_> = d.processes.iter().collect();
    procs.sort_by(|a, b| b.saved_kb.total_cmp(&a.saved_kb).then(a.pid.cmp(&b.pid)));
    let b: Vec<(String, f64)> = procs.iter().take(12).map(|p| (format!("{}{} {}", host(&p.host), p.pid, p.comm), p.saved_kb)).collect();
    ("Savings by process".into(), bars("chart-savings", "saved KB by process", "KB", &b, "no per-process rows in this report"))
}

/// One bar per recorded value when there are few, else per power-of-two bucket.
fn distribution(d: &Doc, name: &str, id: &str, absent: &str) -> String {
    let Some(h) = d.histograms.series.get(name) else { return bars(id, name, "", &[], absent) };
    let Ok(hist) = hist::decode(name, h, d.histograms.contract) else { return bars(id, name, "", &[], "undecodable histogram") };
    let b: Vec<(String, f64)> = if hist.iter_recorded().count() <= 40 {
        hist.iter_recorded().map(|v| (v.value_iterated_to().to_string(), v.count_at_value() as f64)).collect()
    } else {
        hist.iter_log(1, 2.0)
            .filter(|v| v.count_since_last_iteration() > 0)
            .map(|v| (format!("≤{}", v.value_iterated_to()), v.count_since_last_iteration() as f64))
            .collect()
    };
    bars(id, &format!("{name} ({})", h.unit), "samples", &b, absent)
}

fn rules_that_matter(s: &lazyvma_model::sweep::Sweep) -> String {
    use super::render_rules::{history_rows, saved_bars, sweep_rows, Row, HISTORY_HEAD, SWEEP_HEAD};
    let rows = |id: &str, h: &[&str], rows: Vec<Row>| {
        let body: String =
            rows.iter().map(|r| row(&r.iter().map(|(k, v)| if k.is_empty() { "<td></td>".into() } else { cell(k, v) }).collect::<Vec<_>>())).collect();
        format!("<table id=\"{id}\">{}{body}</table>", head(h))
    };
    format!(
        "<h2>Rules that matter: lazy counts under every knob value, the others at base</h2>{}{}{}\
         <h3>Lazy VMAs before their first share</h3>{}",
        rows("rules-sweep", &SWEEP_HEAD, sweep_rows(s)),
        bars("chart-sweep-avc", "saved anon_vma_chain peak by knob value", "objects", &saved_bars(s, true), "no sweep"),
        bars("chart-sweep-av", "saved anon_vma peak by knob value", "objects", &saved_bars(s, false), "no sweep"),
        rows("rules-history", &HISTORY_HEAD, history_rows(s)),
    )
}

/// The fired rules, each row keyed `lazy_rules.RULE.{name,status,fired,what}`.
fn lazy_rules(r: &super::lazy_rules::LazyRules) -> String {
    let (rows, idle) = super::lazy_rules::fired_rows(r);
    let body: String = rows
        .iter()
        .map(|c| {
            let k = |f: &str| format!("lazy_rules.{}.{f}", c[0]);
            row(&[cell(&k("name"), &c[0]), cell(&k("status"), &c[1]), cell(&k("fired"), &c[2]), cell(&k("what"), &c[3])])
        })
        .collect();
    format!(
        "<h2>Lazy rules fired (spec §3.2; status: stated, inferred or open)</h2><table id=\"lazy-rules\">{}{body}</table>\
         <p data-k=\"lazy_rules.idle\">{idle} of {} rules did not fire</p>",
        head(&super::lazy_rules::HEAD),
        r.len()
    )
}

pub fn render(d: &Doc, top: usize) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\
         <title>{}</title><style>{STYLE}</style></head><body><h1>{}</h1><p id=\"legend\">{}</p>",
        esc(&title(d)),
        esc(&title(d)),
        esc(&legend(d))
    );
    let _ = write!(o, "<table id=\"seed\">{}", head(&["Object", "Before (KB)", "After (KB)", "Change"]));
    for [name, b, a, ch] in seed_rows(d) {
        let k = |c: &str| format!("objects.{name}.{c}");
        let _ = write!(o, "{}", row(&[cell(&k("name"), &name), cell(&k("before_kb"), &b), cell(&k("after_kb"), &a), cell(&k("change"), &ch)]));
    }
    let _ = write!(o, "</table><table id=\"objects\">{}", head(&["Object", "Before (objects)", "After (objects)", "bytes each"]));
    for (name, r) in d.objects.rows() {
        let k = |c: &str| format!("objects.{name}.{c}");
        let _ = write!(
            o,
            "{}",
            row(&[
                cell(&k("name"), name),
                cell(&k("before_objects"), &opt(before(r).map(|s| s.objects))),
                cell(&k("after_objects"), &opt(r.lazy.as_ref().map(|s| s.objects))),
                cell(&k("size"), &opt(r.size)),
            ])
        );
    }
    let _ = write!(o, "</table><h2>Eager vs lazy live objects over time</h2>{}", timeline(d));
    let (title, chart) = savings(d);
    let _ = write!(o, "<h2>{}</h2>{chart}", esc(&title));
    let _ = write!(o, "<h2>Lock avoidance</h2><ul id=\"lock-avoidance\">");
    for l in lock_avoidance(d) {
        let _ = write!(o, "<li>{}</li>", esc(&l));
    }
    let _ = write!(o, "</ul><h3>rmap lock-wait distribution</h3>");
    let _ = write!(o, "{}", distribution(d, RMAP_WAIT, "chart-rmap-wait", "rmap lock waits: not measured by this source"));
    let _ = write!(o, "<h3>anon_vma root rwsem waits (lock:contention_*)</h3>");
    let _ = write!(o, "{}", distribution(d, LOCK_WAIT, "chart-lock-wait", "anon_vma root rwsem waits: not measured by this source"));
    let _ = write!(o, "<table id=\"histograms\">{}", head(&["Histogram", "unit", "count", "p50", "p90", "p99", "max"]));
    for (name, unit, count, s) in super::render_text::hist_rows(d) {
        let k = |c: &str| format!("histograms.{name}.{c}");
        let mut cells = vec![cell(&k("name"), &name), cell(&k("unit"), &unit), cell(&k("count"), &count.to_string())];
        cells.extend(s.iter().map(|(p, v)| cell(&k(p), &v.to_string())));
        let _ = write!(o, "{}", row(&cells));
    }
    let _ = write!(o, "</table>");
    for name in d.histograms.series.keys().filter(|n| n.as_str() != RMAP_WAIT && n.as_str() != LOCK_WAIT) {
        let _ = write!(o, "<h3>{}</h3>{}", esc(name), distribution(d, name, &format!("chart-hist-{name}"), "no samples"));
    }
    if !d.hosts.is_empty() {
        let _ = write!(
            o,
            "<h2>Hosts</h2><table id=\"hosts\">{}",
            head(&["Host", "File", "Source", "Kernel", "anon_vma Before (KB)", "After (KB)", "anon_vma_chain Before (KB)", "After (KB)", "Lost events"])
        );
        let mut rows: Vec<(String, String, String, String, &super::schema::Objects, u64)> =
            d.hosts.iter().map(|h| (h.host.clone(), h.file.clone(), h.source.clone(), h.kernel.clone(), &h.objects, h.lost_events)).collect();
        rows.push(("TOTAL".into(), String::new(), String::new(), String::new(), &d.objects, d.lost_events));
        for (i, (host, file, source, kernel, objs, lost)) in rows.into_iter().enumerate() {
            let k = |c: &str| format!("hosts.{i}.{c}");
            let side = |r: &super::schema::ObjectRow| (opt(before(r).map(|s| kb(s.bytes))), opt(r.lazy.as_ref().map(|s| kb(s.bytes))));
            let (ab, aa) = side(&objs.anon_vma);
            let (cb, ca) = side(&objs.anon_vma_chain);
            let _ = write!(
                o,
                "{}",
                row(&[
                    cell(&k("host"), &host),
                    cell(&k("file"), &file),
                    cell(&k("source"), &source),
                    cell(&k("kernel"), &kernel),
                    cell(&k("anon_vma.before_kb"), &ab),
                    cell(&k("anon_vma.after_kb"), &aa),
                    cell(&k("anon_vma_chain.before_kb"), &cb),
                    cell(&k("anon_vma_chain.after_kb"), &ca),
                    cell(&k("lost_events"), &lost.to_string()),
                ])
            );
        }
        let _ = write!(o, "</table>");
    }
    if !d.processes.is_empty() {
        let mut procs: Vec<_> = d.processes.iter().collect();
        procs.sort_by(|a, b| b.saved_kb.total_cmp(&a.saved_kb).then(a.pid.cmp(&b.pid)));
        let _ = write!(
            o,
            "<h2>Top processes</h2><table id=\"processes\">{}",
            head(&["PID", "COMM", "Host", "anon_vma before", "after", "anon_vma_chain before", "after", "saved (KB)"])
        );
        for p in procs.iter().take(top) {
            let k = |c: &str| format!("processes.{}.{c}", p.pid);
            let _ = write!(
                o,
                "{}",
                row(&[
                    cell(&k("pid"), &p.pid.to_string()),
                    cell(&k("comm"), &p.comm),
                    cell(&k("host"), p.host.as_deref().unwrap_or("")),
                    cell(&k("eager.anon_vma"), &p.eager.anon_vma.to_string()),
                    cell(&k("lazy.anon_vma"), &opt(p.lazy.map(|l| l.anon_vma))),
                    cell(&k("eager.anon_vma_chain"), &p.eager.anon_vma_chain.to_string()),
                    cell(&k("lazy.anon_vma_chain"), &opt(p.lazy.map(|l| l.anon_vma_chain))),
                    cell(&k("saved_kb"), &format!("{:.1}", p.saved_kb)),
                ])
            );
        }
        let _ = write!(o, "</table>");
    }
    if !d.cgroups.is_empty() {
        let _ = write!(
            o,
            "<h2>Top cgroups</h2><table id=\"cgroups\">{}",
            head(&["ID", "Cgroup", "Host", "Processes", "anon_vma before", "after", "anon_vma_chain before", "after", "saved (KB)"])
        );
        for (i, c) in d.cgroups.iter().take(top).enumerate() {
            let k = |f: &str| format!("cgroups.{i}.{f}");
            let _ = write!(
                o,
                "{}",
                row(&[
                    cell(&k("id"), &c.id.to_string()),
                    cell(&k("path"), &c.path),
                    cell(&k("host"), c.host.as_deref().unwrap_or("")),
                    cell(&k("processes"), &c.processes.to_string()),
                    cell(&k("before.anon_vma"), &opt(cgroup_before(c).map(|b| b.anon_vma))),
                    cell(&k("lazy.anon_vma"), &opt(c.lazy.map(|l| l.anon_vma))),
                    cell(&k("before.anon_vma_chain"), &opt(cgroup_before(c).map(|b| b.anon_vma_chain))),
                    cell(&k("lazy.anon_vma_chain"), &opt(c.lazy.map(|l| l.anon_vma_chain))),
                    cell(&k("saved_kb"), &format!("{:.1}", c.saved_kb)),
                ])
            );
        }
        let _ = write!(o, "</table>");
    }
    if let Some(r) = &d.lazy_rules {
        let _ = write!(o, "{}", lazy_rules(r));
    }
    if let Some(s) = &d.rules_that_matter {
        let _ = write!(o, "{}", rules_that_matter(s));
    }
    if !d.bpf_stats.is_empty() {
        let _ = write!(o, "<h2>BPF programs (--stats)</h2><table id=\"bpf-stats\">{}", head(&["Program", "runs", "mean ns"]));
        for (p, s) in &d.bpf_stats {
            let k = |c: &str| format!("bpf_stats.{p}.{c}");
            let _ = write!(o, "{}", row(&[cell(&k("program"), p), cell(&k("runs"), &s.runs.to_string()), cell(&k("mean_ns"), &s.mean_ns.to_string())]));
        }
        let _ = write!(o, "</table>");
    }
    if let Some(r) = &d.recording {
        let _ = write!(o, "<h2>Recording</h2><p data-k=\"recording\">{}</p>", esc(&super::render_text::recording(r)));
    }
    let _ = write!(o, "<h2>Lost events</h2><p data-k=\"lost_events\">{}</p>", d.lost_events);
    let knobs: Vec<String> = d.knobs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let _ = write!(o, "<h2>Knobs</h2><p id=\"knobs\">{}</p>", esc(&if knobs.is_empty() { "none (no lazy model ran)".into() } else { knobs.join(", ") }));
    let backend: Vec<String> = d.backend.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    let _ = write!(o, "<p id=\"backend\">Backend: {}</p><ul id=\"notes\">", esc(&backend.join(", ")));
    for n in &d.notes {
        let _ = write!(o, "<li>{}</li>", esc(n));
    }
    o + "</ul></body></html>\n"
}
