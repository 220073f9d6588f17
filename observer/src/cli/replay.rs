//! `lazyvma replay FILE [--knob NAME=VALUE]... [-j]`: the final report of a `trace -o`
//! recording, without root or BPF: the recorded records drive the same trace session
//! (`trace::session`) and its report as the live trace's.
use super::ExitCode;
use crate::trace::session::{self, Options};
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
    let opts = Options {
        knobs,
        json: args.json,
        ops: args.ops,
        model_events: args.model_events,
        model_events_max: args.model_events_max,
        report: args.report,
        ..Options::default()
    };
    session::replay(&args.file, opts)
}
