//! `lazyvma model FILE`: a scenario through the eager and lazy models, step by step.
use super::ExitCode;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use lazyvma_model::counts::{Counter, Counts, Deltas};
use lazyvma_model::kernel::Kernel;
use lazyvma_model::lazy::Rule;
use lazyvma_model::scenario::{self, Report};
use lazyvma_model::sizes::Sizes;
use serde_json::{json, Value};
use std::fmt::Write;

#[derive(clap::Args)]
pub struct Args {
    /// Scenario file (format: docs/scenarios.md).
    pub file: std::path::PathBuf,
    /// Kernel rules to apply: 5.19 (pre-6.0 `degree`), 6.1 or 6.18 (default: the file's, else 6.18).
    #[arg(long, value_name = "VERSION")]
    pub kernel: Option<String>,
    /// A lazy-model knob, NAME=VALUE (repeatable), e.g. fork_of_tree_parent=share.
    #[arg(long = "knob", value_name = "NAME=VALUE")]
    pub knobs: Vec<String>,
    /// Print one JSON object instead of tables.
    #[arg(short = 'j', long)]
    pub json: bool,
    /// Instead of the steps: re-run the scenario under every value of every knob (the
    /// others at the file's and --knob's values) and print what each saves, with the
    /// lazy-VMA histories (issue 5).
    #[arg(long)]
    pub sweep: bool,
}

fn bad(e: impl Into<anyhow::Error>) -> anyhow::Error {
    e.into().context(ExitCode(2))
}

/// The scenario's text; every failure names the file (and the line, for bytes that are
/// not UTF-8 text).
fn read(file: &std::path::Path, name: &str) -> anyhow::Result<String> {
    let bytes = crate::safe_out::read(file).map_err(|e| anyhow::anyhow!("{name}: cannot read the scenario: {e}"))?;
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = 1 + e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count();
        anyhow::anyhow!("{name}:{line}: expected scenario text, found bytes that are not UTF-8 (a binary file?)")
    })
}

pub fn run(args: Args, btf: Option<&std::path::Path>) -> anyhow::Result<()> {
    let kernel = match &args.kernel {
        None => None,
        Some(k) => Some(Kernel::parse(k).ok_or_else(|| bad(anyhow::anyhow!("unknown kernel `{k}` (5.19, 6.1 or 6.18)")))?),
    };
    let mut probe = lazyvma_model::knobs::Knobs::default();
    for k in &args.knobs {
        probe.set(k).map_err(bad)?;
    }
    let name = args.file.display().to_string();
    let text = read(&args.file, &name).map_err(bad)?;
    let sc = scenario::parse(&name, &text).map_err(|e| bad(anyhow::anyhow!("{e}")))?;
    if args.sweep {
        return super::model_sweep::run(&name, &sc, kernel, &args.knobs, args.json).map_err(bad);
    }
    let report = scenario::run(&sc, kernel, &args.knobs).map_err(|e| bad(anyhow::anyhow!("{e}")))?;
    let sizes = crate::load::sizes::load(btf, btf.is_none()).map_err(bad)?;
    if args.json {
        emit_json(&to_json(&report, &sizes))?;
    } else if report.steps.len() > STEP_TABLE_MAX {
        emit_streamed(&name, &report, &sizes)?;
    } else {
        super::emit(&tables(&name, &report, &sizes))?;
    }
    let failed: Vec<_> = report.checks.iter().filter(|c| c.failure.is_some()).collect();
    if !failed.is_empty() {
        for c in &failed {
            // The scenario is a user's file: its text escaped as one field.
            let ctl = crate::escape::ctl;
            eprintln!("{}:{}: expectation failed: `{}`: {}", ctl(&name), c.line, ctl(&c.text), ctl(c.failure.as_deref().unwrap_or("")));
        }
        anyhow::bail!("{} of {} expectations failed", failed.len(), report.checks.len());
    }
    Ok(())
}

/// Print a JSON document as it is serialised: a scenario of a million steps is never held
/// as a `Value` tree nor as one string (that took 13 GB); a reader that went away ends it
/// quietly, as in [`emit`].
pub(super) fn emit_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let done = crate::escape::json_to(&mut out, v).map_err(std::io::Error::from).and_then(|()| out.write_all(b"\n")).and_then(|()| out.flush());
    match done {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// `model -j`'s document, keys in the order serde_json's maps print them (sorted).
#[derive(serde::Serialize)]
struct Doc<'a> {
    expectations: Vec<Value>,
    kernel: &'static str,
    knobs: serde_json::Map<String, Value>,
    rmap: serde_json::Map<String, Value>,
    /// Rule → {fired, status, what}: fields in sorted order, as the map printed them.
    rules: crate::report::lazy_rules::LazyRules,
    /// Slab bytes per kind (this command's shape since before `Sizes` had both numbers).
    sizes: Value,
    sizes_source: Value,
    steps: Steps<'a>,
    total: Value,
}

/// The steps, each made a `Value` only while it is written.
struct Steps<'a>(&'a [scenario::StepReport]);

impl serde::Serialize for Steps<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = ser.serialize_seq(Some(self.0.len()))?;
        for s in self.0 {
            seq.serialize_element(&json!({"line": s.line, "event": s.text, "phase": s.phase, "eager": deltas_json(&s.eager), "lazy": deltas_json(&s.lazy)}))?;
        }
        seq.end()
    }
}

fn counter_json(c: &Counter) -> Value {
    json!({"alloc": c.alloc, "free": c.free, "live": c.live, "peak": c.peak})
}

fn counts_json(c: &Counts, s: &Sizes) -> Value {
    let b = s.bytes(c);
    json!({
        "anon_vma": counter_json(&c.anon_vma),
        "anon_vma_chain": counter_json(&c.anon_vma_chain),
        "vm_area_struct": counter_json(&c.vm_area_struct),
        "bytes": b,
    })
}

fn deltas_json(d: &Deltas) -> Value {
    json!({
        "anon_vma": {"alloc": d.anon_vma.alloc, "free": d.anon_vma.free},
        "anon_vma_chain": {"alloc": d.anon_vma_chain.alloc, "free": d.anon_vma_chain.free},
        "vm_area_struct": {"alloc": d.vm_area_struct.alloc, "free": d.vm_area_struct.free},
    })
}

fn to_json<'a>(r: &'a Report, sizes: &'a Sizes) -> Doc<'a> {
    let rules = crate::report::lazy_rules::from_counts(&r.rules);
    let knobs: serde_json::Map<String, Value> = r.knobs.pairs().into_iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    let rmap: serde_json::Map<String, Value> = r
        .rmap
        .iter()
        .filter(|(_, e, l)| e.walks + e.no_folio + l.walks + l.no_folio > 0)
        .map(|(c, e, l)| (c.name().to_string(), json!({"eager": e, "lazy": l})))
        .collect();
    let checks: Vec<Value> = r.checks.iter().map(|c| json!({"line": c.line, "expect": c.text, "ok": c.failure.is_none(), "failure": c.failure})).collect();
    Doc {
        expectations: checks,
        kernel: r.kernel.name(),
        knobs,
        rmap,
        rules,
        sizes: json!({"anon_vma": sizes.anon_vma.slab_size, "anon_vma_chain": sizes.anon_vma_chain.slab_size, "vm_area_struct": sizes.vm_area_struct.slab_size}),
        sizes_source: json!({"anon_vma": sizes.anon_vma.source, "anon_vma_chain": sizes.anon_vma_chain.source, "vm_area_struct": sizes.vm_area_struct.source}),
        steps: Steps(&r.steps),
        total: json!({"eager": counts_json(&r.eager, sizes), "lazy": counts_json(&r.lazy, sizes)}),
    }
}

fn pm(d: &lazyvma_model::counts::Delta) -> String {
    match (d.alloc, d.free) {
        (0, 0) => "·".into(),
        (a, 0) => format!("+{a}"),
        (0, f) => format!("-{f}"),
        (a, f) => format!("+{a} -{f}"),
    }
}

/// Above this many steps the step table is not a comfy-table (which holds every row to
/// size its columns: 400k steps took 1.3 GB) but plain aligned columns written as they go.
const STEP_TABLE_MAX: usize = 10_000;

const STEP_HEAD: [&str; 9] = ["line", "phase", "event", "eager AV", "eager AVC", "lazy AV", "lazy AVC", "eager VMA", "lazy VMA"];

fn step_cells(s: &lazyvma_model::scenario::StepReport) -> [String; 9] {
    [
        s.line.to_string(),
        s.phase.clone(),
        s.text.clone(),
        pm(&s.eager.anon_vma),
        pm(&s.eager.anon_vma_chain),
        pm(&s.lazy.anon_vma),
        pm(&s.lazy.anon_vma_chain),
        pm(&s.eager.vm_area_struct),
        pm(&s.lazy.vm_area_struct),
    ]
}

fn head_line(name: &str, r: &Report) -> String {
    format!("{name}: kernel {} rules; lazy knobs differing from the defaults: {}\n", r.kernel.name(), {
        let d = lazyvma_model::knobs::Knobs::default().pairs();
        let v: Vec<String> = r.knobs.pairs().into_iter().filter(|p| !d.contains(p)).map(|(k, v)| format!("{k}={v}")).collect();
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(" ")
        }
    })
}

/// The text output of a scenario over `STEP_TABLE_MAX` steps: the column widths from one
/// pass over the steps, then each row escaped and written (nothing held but the steps).
fn emit_streamed(name: &str, r: &Report, sizes: &Sizes) -> anyhow::Result<()> {
    use std::io::Write;
    let cells = |s| step_cells(s).map(|c| crate::escape::ctl(&c).into_owned());
    let mut w = STEP_HEAD.map(|h| h.chars().count());
    for s in &r.steps {
        for (w, c) in w.iter_mut().zip(cells(s)) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let row = |out: &mut dyn Write, cells: &[&str]| -> std::io::Result<()> {
        let line: Vec<String> = cells.iter().zip(w).map(|(c, w)| format!("{c:<w$}")).collect();
        writeln!(out, "{}", line.join("  ").trim_end())
    };
    let done = (|| -> std::io::Result<()> {
        out.write_all(crate::escape::lines(&head_line(name, r)).as_bytes())?;
        writeln!(out, "{} steps: the step table in plain columns, written as it goes", r.steps.len())?;
        row(&mut out, &STEP_HEAD)?;
        for s in &r.steps {
            let c = cells(s);
            row(&mut out, &c.iter().map(String::as_str).collect::<Vec<_>>())?;
        }
        out.write_all(crate::escape::lines(&summary_tables(r, sizes)).as_bytes())?;
        out.flush()
    })();
    match done {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn tables(name: &str, r: &Report, sizes: &Sizes) -> String {
    let mut o = head_line(name, r);
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(STEP_HEAD.to_vec());
    for s in &r.steps {
        t.add_row(step_cells(s).to_vec());
    }
    let _ = writeln!(o, "{t}");
    o + &summary_tables(r, sizes)
}

/// The tables after the steps: totals, bytes per object, rules fired, rmap walks, expectations.
fn summary_tables(r: &Report, sizes: &Sizes) -> String {
    let mut o = String::new();
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(vec!["object", "model", "alloc", "free", "live", "peak", "peak bytes"]);
    let rows = |c: &Counts| {
        let b = sizes.bytes(c);
        [
            ("anon_vma", c.anon_vma, b.peak_anon_vma),
            ("anon_vma_chain", c.anon_vma_chain, b.peak_anon_vma_chain),
            ("vm_area_struct", c.vm_area_struct, b.peak_vm_area_struct),
        ]
    };
    for ((name, e, eb), (_, l, lb)) in rows(&r.eager).into_iter().zip(rows(&r.lazy)) {
        for (m, c, b) in [("eager", e, eb), ("lazy", l, lb)] {
            t.add_row(vec![name.into(), m.into(), c.alloc.to_string(), c.free.to_string(), c.live.to_string(), c.peak.to_string(), b.to_string()]);
        }
    }
    let _ = writeln!(o, "{t}");
    let _ = writeln!(o, "bytes per object:");
    for (kind, s) in lazyvma_model::sizes::CACHES.iter().zip(sizes.each()) {
        let _ = writeln!(o, "  {kind:<15} {:>4} B  from {}", s.slab_size, s.source);
    }
    let fired: Vec<(Rule, u64)> = r.rules.iter().filter(|(_, n)| *n > 0).collect();
    if !fired.is_empty() {
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED);
        t.set_header(vec!["rule", "status", "fired", "what"]);
        for (rule, n) in fired {
            t.add_row(vec![rule.name().to_string(), format!("{:?}", rule.status()).to_lowercase(), n.to_string(), rule.what().to_string()]);
        }
        let _ = writeln!(o, "{t}");
    }
    let walks: Vec<_> = r.rmap.iter().filter(|(_, e, l)| e.walks + l.walks > 0).collect();
    if !walks.is_empty() {
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED);
        t.set_header(vec!["rmap caller", "walks", "eager locked", "lazy locked", "lock avoided"]);
        for (c, e, l) in walks {
            t.add_row(vec![c.name().to_string(), e.walks.to_string(), e.locked.to_string(), l.locked.to_string(), l.lock_avoided.to_string()]);
        }
        let _ = writeln!(o, "{t}");
    }
    if !r.checks.is_empty() {
        let ok = r.checks.iter().filter(|c| c.failure.is_none()).count();
        let _ = writeln!(o, "expectations for this kernel and these knobs: {ok}/{} hold", r.checks.len());
    }
    o
}
