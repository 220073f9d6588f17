//! From a header (and trailer) to the traced tree at the start and to the final report:
//! the one path both `trace` and `replay` take, so a replay prints what the trace printed.
use super::format::{Header, Trailer};
use crate::report::{
    schema::Recording,
    trace_doc::{MapStats, Model, RulesThatMatter},
};
use crate::{
    load::backend::Choice,
    trace::{counts::bycgroup, feed::Feed, ingest::stats, out::render, out::text, tree::command::Status, tree::pids::Tree, Tracer},
};
use lazyvma_model::sweep;
use std::io::Write;

/// The processes traced from the start: (tgid, parent's tgid), in tree order.
pub fn initial(tree: &Tree) -> Vec<(u32, Option<u32>)> {
    tree.procs.iter().map(|p| (p.tgid, p.parent.map(|i| tree.procs[i].tgid))).collect()
}

/// The tree the trace started from, rebuilt from what `initial` recorded.
pub fn tree(h: &Header) -> Tree {
    match h.scope.as_str() {
        "command" => Tree::command(h.tree.first().map_or(0, |p| p.0)),
        "pids" | "cgroup" => {
            let pairs: Vec<(u32, u32)> = h.tree.iter().filter_map(|&(t, p)| Some((t, p?))).collect();
            Tree::with_descendants(&h.pids, &pairs)
        }
        _ => Tree::system(),
    }
}

/// Where a replayed report came from; shown as `"recording"` (JSON) or one line (text).
pub struct Source {
    pub path: String,
    pub version: String,
    pub bytes: usize,
    pub chunks: usize,
    pub records: usize,
    pub complete: bool,
    pub lost_bytes: usize,
}

impl Source {
    fn doc(&self) -> Recording {
        Recording {
            path: self.path.clone(),
            format_version: self.version.clone(),
            bytes: self.bytes as u64,
            chunks: self.chunks as u64,
            records: self.records as u64,
            complete: self.complete,
            lost_bytes: self.lost_bytes as u64,
        }
    }
}

/// `trace --by-cgroup`'s rows and cap (live only: a process's cgroup is read from /proc).
pub struct Groups {
    pub rows: Vec<bycgroup::Row>,
    pub cap: u64,
}

/// What only a live trace can add to the report, and where the report document goes.
#[derive(Default)]
pub struct Live {
    pub groups: Option<Groups>,
    /// `--stats`: per BPF program runs and time.
    pub bpf_stats: Option<Vec<stats::ProgStat>>,
    /// `--report FILE`: the lazyvma-report document (docs/report-schema.md), written whole.
    pub report: Option<std::path::PathBuf>,
}

/// The tracer's settings that come from the header (the same live and in a replay); the
/// model takes the tracer's knobs (`replay --knob`), so set them first.
pub fn configure(t: &mut Tracer, h: &Header) {
    t.locks.system = h.scope == "system";
    t.locks.unavailable = h.locks_unavailable.clone();
    if h.feed {
        let mut f = Feed::new(&h.kernel, t.knobs);
        f.from_hooks = h.feed_from_hooks;
        f.prepare_hooked = h.backend.iter().any(|c| c.hook == "__anon_vma_prepare" && matches!(c.backend.as_str(), "fentry" | "kprobe"));
        t.feed = Some(f);
    }
}

/// After the last record: the model's coverage from what the header and trailer say.
pub fn finish(t: &mut Tracer, h: &Header, trailer: Option<&Trailer>) {
    let Tracer { feed, tree, failed_forks, .. } = t;
    let failed = failed_forks.finish();
    if let Some(f) = feed.as_mut() {
        f.finish(tree, trailer.map_or(0, |tr| tr.lost), &h.missing);
        f.coverage.incomplete.extend(failed);
        if trailer.is_none() {
            f.coverage.incomplete.push("recording cut short: the model saw the records up to its last complete chunk".into());
        }
    }
}

/// "Rules that matter": the lazy model re-run under every knob value over the events the
/// trace fed it (those it refused left out: they changed nothing), from an empty model or,
/// seeded (-p), from a seed per knob value. Null when not run (`"model"."knob_sweep"`), and
/// then why, if the model view does not already say it. A big sweep says so on stderr as it
/// starts, and how far it is every two seconds; a signal during it (trace's stop came
/// before) skips it.
fn rules_that_matter(t: &Tracer) -> (Option<RulesThatMatter>, Option<String>) {
    let Some(f) = &t.feed else { return (None, None) };
    if crate::trace::out::model_view::sweep_not_run(f).is_some() {
        return (None, None);
    }
    let events: Vec<_> = f.events.iter().enumerate().filter(|(i, _)| f.refused.binary_search(i).is_err()).map(|(_, e)| e.clone()).collect();
    let signals = crate::interrupt::count();
    let runs = sweep::runs(&t.knobs);
    // Over half a million events applied (about a second): said before it starts.
    if runs * events.len() >= 500_000 {
        eprintln!("lazyvma: knob sweep: {runs} runs over {} model events; SIGINT (Ctrl-C) skips it", events.len());
    }
    let (start, mut shown) = (std::time::Instant::now(), std::time::Duration::ZERO);
    let mut tick = |p: sweep::Progress| {
        let at = start.elapsed();
        if at >= std::time::Duration::from_secs(1) && at >= shown + std::time::Duration::from_secs(2) {
            shown = at;
            eprintln!(
                "lazyvma: knob sweep {:.0}% (run {} of {} over {} model events, {:.0} s so far); SIGINT (Ctrl-C) skips it",
                100.0 * p.fraction(),
                p.done + 1,
                p.runs,
                p.events,
                at.as_secs_f64()
            );
        }
        crate::interrupt::count() == signals
    };
    let s = match &f.seed_start {
        Some(st) => sweep::sweep_prepared_with(&st.prep, &events, f.kernel(), &t.knobs, &mut tick),
        None => sweep::sweep_with(&events, f.kernel(), &t.knobs, &mut tick),
    };
    match s {
        Ok(s) => (Some(RulesThatMatter::Sweep(Box::new(s))), None),
        Err(sweep::SweepError::Stopped { done, runs }) => {
            let why = format!("not run: stopped by a signal after {done} of {runs} runs (replay the recording for it)");
            eprintln!("lazyvma: knob sweep {why}");
            (None, Some(why))
        }
        Err(e) => (Some(RulesThatMatter::Error { error: e.to_string() }), None),
    }
}

/// The final report. `trailer` None: the recording was cut short, the end is unknown and
/// `last_ms` (its last chunk's time) stands for the elapsed time.
#[allow(clippy::too_many_arguments)]
pub fn print(
    t: &mut Tracer,
    h: &Header,
    backend: &[Choice],
    trailer: Option<&Trailer>,
    last_ms: u64,
    json: bool,
    source: Option<&Source>,
    live: &Live,
) -> anyhow::Result<()> {
    if let Some(tr) = trailer {
        if tr.lost > 0 {
            eprintln!("lazyvma: {} events lost (ring buffer full); counts below are short by up to that many", tr.lost);
        }
        // `sent` counts committed records only (a failed reserve is `lost`, never sent).
        if t.received != tr.sent {
            eprintln!("lazyvma: {} events sent but {} received", tr.sent, t.received);
        }
    }
    let status = trailer.and_then(|tr| match (tr.exit_status, tr.signal) {
        (Some(c), _) => Some(Status::Exited(c)),
        (None, Some(s)) => Some(Status::Signaled(s)),
        (None, None) => None,
    });
    let run = render::Run {
        scope: &h.scope,
        argv: &h.argv,
        status,
        pids: &h.pids,
        cgroup: h.cgroup.as_deref().map(std::path::Path::new),
        elapsed_ms: trailer.map_or(last_ms, |tr| tr.elapsed_ms).into(),
        sent: trailer.map(|tr| tr.sent),
        lost: trailer.map(|tr| tr.lost),
        backend,
        tracepoints: &h.tracepoints,
        missing: &h.missing,
        stacks: h.stacks,
        kernel: h.kernel.clone(),
        ended_by: trailer.map_or("recording cut short", |tr| &tr.ended_by),
        ops: h.ops,
        rmap: h.rmap,
    };
    let lock_counters = trailer.and_then(|tr| tr.lock_counters);
    let mut j = render::document(t, &run);
    j.kernel_counts = trailer.and_then(|tr| tr.kernel_counts).map(|k| MapStats { full: k.full, retired: k.retired });
    j.locks = Some(t.locks.doc(&t.tree, lock_counters));
    (j.lazy_rules, j.lazy_rules_why) = crate::trace::out::model_view::lazy_rules(t.feed.as_ref(), &h.scope);
    if t.feed.is_some() {
        j.knobs = Some(t.knobs.pairs().into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    }
    j.arch = Some(h.arch.clone());
    j.start_unix_ms = Some(h.start_unix_ms);
    j.host = h.host.clone();
    j.bpf_stats = live.bpf_stats.as_deref().map(stats::doc);
    if let Some(g) = &live.groups {
        j.by_cgroup = Some(bycgroup::doc(&g.rows));
        j.cgroup_cap = Some(g.cap);
    }
    j.recording = source.map(Source::doc);
    if !json {
        // The same document as text. To a terminal: the comms and paths in it cannot drive it.
        let mut out = crate::escape::Terminal::new(std::io::stdout().lock());
        text::report(&j, &mut out)?;
        out.flush()?;
    }
    // Only JSON and the report document show the sweep: text output does not wait for it.
    // Everything else read the model already: its state goes before the sweep's own.
    if t.feed.is_some() && (json || live.report.is_some()) {
        if let Some(f) = t.feed.as_mut() {
            f.release_model();
        }
        let (rules, why) = rules_that_matter(t);
        j.rules_that_matter = Some(rules);
        if let (Some(why), Some(Model::Fed(m))) = (why, j.model.as_mut()) {
            m.knob_sweep = Some(why);
        }
    }
    if json {
        writeln!(std::io::stdout().lock(), "{}", crate::escape::json_pretty(&j.to_json()?)?)?;
    }
    // After the report is out: a file that cannot be written loses nothing shown.
    if let Some(path) = &live.report {
        let doc = j.report().map_err(|e| anyhow::anyhow!("--report {}: {e}", path.display()))?;
        // Keys sorted, as every report document `report -o` and `merge` write.
        crate::report::write::output(Some(path), &crate::escape::json_pretty(&serde_json::to_value(doc)?)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::ingest::symbols::Symbols;

    #[test]
    fn the_pids_tree_rebuilds_from_its_initial_processes() {
        let ppids = [(10, 1), (11, 10), (12, 10), (13, 11), (20, 1), (30, 20)];
        let live = Tree::with_descendants(&[10, 30], &ppids);
        let h = Header { scope: "pids".into(), pids: vec![10, 30], tree: initial(&live), ..crate::record::format::tests_header() };
        let again = tree(&h);
        let shape = |t: &Tree| t.procs.iter().map(|p| (p.proc, p.tgid, p.parent)).collect::<Vec<_>>();
        assert_eq!(shape(&again), shape(&live));
        assert_eq!(shape(&live).len(), 5);
    }

    #[test]
    fn the_used_symbols_answer_a_replay_as_kallsyms_did() {
        let text: String = (0..200u64).map(|i| format!("{:x} t f{}\n", 0xffffffff81000000u64 + 0x40 * i + (i % 3) * 0x10, i / 2)).collect();
        let tail = "ffffffff80000000 T _stext\nffffffff81001000 T _etext\nffffffff81002000 D x\nffffffff81002400 T _sinittext\n\
                    ffffffff81002800 t init_fn\nffffffff81002c00 T _einittext\nffffffff81003000 D y\nffffffffc0000000 t modfn [m]\n";
        let mut live = Symbols::parse(&format!("{text}{tail}")).unwrap();
        live.track();
        let queries: Vec<u64> = (0..500u64).map(|i| 0xffffffff80fffff0 + i * 37).chain([0xffffffff81002900, 0xffffffffc0000010, 0xffffffff81003010]).collect();
        let answer = |s: &Symbols| queries.iter().map(|a| (s.name(*a).map(str::to_string), s.outside_kernel_image(*a))).collect::<Vec<_>>();
        let answers = answer(&live);
        assert!(answers.iter().any(|(n, _)| n.is_some()) && answers.iter().any(|(n, _)| n.is_none()));
        assert!(answers.iter().any(|(_, outside)| *outside));
        let replay = Symbols::from_entries(live.take_used());
        assert!(live.take_used().is_empty());
        assert_eq!(answer(&replay), answers);
    }
}
