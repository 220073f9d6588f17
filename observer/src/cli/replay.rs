//! `lazyvma replay FILE [--knob NAME=VALUE]... [-j]`: the final report of a `trace -o`
//! recording, without root or BPF: the recorded records go through the same Tracer and
//! the same report path as the live trace.
use super::ExitCode;
use crate::{
    record::{meta, reader},
    trace::{ingest::symbols::Symbols, Tracer},
};
use anyhow::Context;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// A recording written by `lazyvma trace -o`.
    #[arg(value_name = "RECORDING")]
    pub file: PathBuf,
    /// A lazy-model knob, NAME=VALUE (repeatable), e.g. fork_of_tree_parent=share.
    #[arg(long = "knob", value_name = "NAME=VALUE")]
    pub knobs: Vec<String>,
    /// Keep at most N model events for the knob sweep (as `trace --model-events-max`).
    #[arg(long, value_name = "N", default_value_t = crate::trace::feed::EVENTS_MAX)]
    pub model_events_max: usize,
    /// Print the final report as one JSON object.
    #[arg(short = 'j', long)]
    pub json: bool,
    /// Print every kernel operation the function hooks decoded, one per line, on stderr (as `trace --ops`).
    #[arg(long)]
    pub ops: bool,
    /// Print every event fed to the model, one per line, on stderr (as `trace --model-events`).
    #[arg(long)]
    pub model_events: bool,
    /// Also write the final report as a lazyvma-report document (docs/report-schema.md).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::interrupt::catch();
    let mut knobs = lazyvma_model::knobs::Knobs::default();
    for k in &args.knobs {
        knobs.set(k).map_err(|e| anyhow::Error::from(e).context(ExitCode(2)))?;
    }
    let path = args.file.display().to_string();
    let data = crate::safe_out::read(&args.file).with_context(|| format!("cannot read recording {path}"))?;
    let rec = reader::read(&path, data)?;
    let h = &rec.header;
    let backend = h.backend.iter().map(|c| c.choice()).collect::<Result<Vec<_>, _>>().map_err(|e| anyhow::anyhow!("recording {path}: header: {e}"))?;
    let mut tracer = Tracer::new(meta::tree(h), Symbols::from_entries(rec.symbols.clone()), h.sizes());
    tracer.knobs = knobs;
    tracer.print_ops = args.ops;
    meta::configure(&mut tracer, h);
    if let Some(f) = tracer.feed.as_mut() {
        f.print = args.model_events;
        f.events_max = args.model_events_max;
        // -p / --cgroup: re-seeded from the recorded pass, under this replay's knobs.
        match &rec.seed {
            Some(s) => f.seed = Some(crate::trace::feed::seed::Pending::replayed(s, knobs)),
            None if matches!(h.scope.as_str(), "pids" | "cgroup") => f.coverage.incomplete.push(format!(
                "the recording (format {}.{}) keeps no snapshot: the processes running at the start are not seeded in this replay",
                rec.major, rec.minor
            )),
            None => {}
        }
    }
    if let Err(n) = crate::trace::counts::timeline::replay(&mut tracer, &rec, || crate::interrupt::count() > 0) {
        // Nothing half-counted is printed or written as if it were the recording's report.
        return Err(anyhow::anyhow!("replay of {path} stopped by a signal after {n} of {} records: no report", rec.record_count()).context(ExitCode(130)));
    }
    tracer.finish();
    match &rec.trailer {
        None => eprintln!(
            "lazyvma: recording cut short after chunk {}: {} bytes lost (no trailer: the end reason and lost-event counters are unknown)",
            rec.chunks, rec.lost_bytes
        ),
        Some(t) if t.records != rec.record_count() as u64 => {
            eprintln!("lazyvma: recording {path}: the trailer counts {} records but {} were read", t.records, rec.record_count())
        }
        Some(_) => {}
    }
    let source = meta::Source {
        path: path.clone(),
        version: format!("{}.{}", rec.major, rec.minor),
        bytes: rec.bytes(),
        chunks: rec.chunks,
        records: rec.record_count(),
        complete: rec.complete(),
        lost_bytes: rec.lost_bytes,
    };
    meta::finish(&mut tracer, h, rec.trailer.as_ref());
    meta::print(
        &mut tracer,
        h,
        &backend,
        rec.trailer.as_ref(),
        rec.last_ms,
        args.json,
        Some(&source),
        &meta::Live { report: args.report.clone(), ..Default::default() },
    )
}
