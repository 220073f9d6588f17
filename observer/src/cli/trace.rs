//! `lazyvma trace [-p PID,..] [--cgroup PATH] [--by-cgroup] [-d DUR] [-i INT] [-j] [-k] [-- CMD ARGS...]`: observed
//! anon_vma / anon_vma_chain allocations and frees of a command, some processes or the whole
//! system, by function, reason and phase, until CMD exits, -d elapses or SIGINT/SIGTERM.
//! The flags; the trace itself is `trace::session`.
use super::parse_duration;
use crate::trace::session::{self, Options};
use std::{path::Path, path::PathBuf, time::Duration};

#[derive(clap::Args)]
pub struct Args {
    /// Trace these processes and their descendants (comma-separated pids).
    #[arg(short = 'p', long = "pid", value_name = "PID[,PID...]", value_delimiter = ',', conflicts_with = "command")]
    pub pids: Vec<i32>,
    /// Trace the processes in this cgroup (and the cgroups below it) at start, and their
    /// descendants. Absolute, or relative to the cgroup2 mount, else to a v1 hierarchy.
    #[arg(long, value_name = "PATH", conflicts_with = "command")]
    pub cgroup: Option<PathBuf>,
    /// Group the final report's counts by each traced process's cgroup (read at first sight).
    #[arg(long)]
    pub by_cgroup: bool,
    /// With --by-cgroup: this many cgroups keep their own row; the rest are summed into `other`.
    #[arg(long, value_name = "N", default_value_t = 20, requires = "by_cgroup", value_parser = clap::value_parser!(u64).range(1..))]
    pub cgroup_cap: u64,
    /// Stop after this long (e.g. 10s, 500ms, 2m; a bare number is seconds).
    #[arg(short = 'd', long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Live table period.
    #[arg(short = 'i', long, value_name = "INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Print the final report as one JSON object on stdout (live rows go to stderr).
    #[arg(short = 'j', long)]
    pub json: bool,
    /// Attach function hooks with kprobe/kretprobe even where fentry/fexit work.
    #[arg(short = 'k', long)]
    pub kprobes: bool,
    /// Print every kernel operation the function hooks decode, one per line, on stderr.
    #[arg(long)]
    pub ops: bool,
    /// Print every event fed to the model, one per line, on stderr.
    #[arg(long)]
    pub model_events: bool,
    /// Keep at most N model events for the knob sweep (rules_that_matter); past it the
    /// sweep is not run and `"model"` says why.
    #[arg(long, value_name = "N", default_value_t = crate::trace::feed::EVENTS_MAX)]
    pub model_events_max: usize,
    /// Take the kernel stack where the task's context leaves a clone's or teardown's reason
    /// ambiguous (a split or a merge inside mprotect, mmap, madvise..., an mmput outside
    /// exit), as `split`/`merge`/... instead of `split/merge`; costs ~0.3-1 µs per such event.
    #[arg(long)]
    pub stacks: bool,
    /// No kernel stacks: the default (kept for old command lines).
    #[arg(long, hide = true, conflicts_with = "stacks")]
    pub no_stacks: bool,
    /// Per BPF program run count and mean ns (sets kernel.bpf_stats_enabled=1, restores it).
    #[arg(long)]
    pub stats: bool,
    /// Ring buffer size in MiB (a power of two; default: from the CPU count and the scope).
    #[arg(long, value_name = "MIB")]
    pub ringbuf_mb: Option<u32>,
    /// Also write a recording to this file, for `lazyvma replay` (docs/recording.md).
    #[arg(short = 'o', long = "output", value_name = "RECORDING")]
    pub output: Option<std::path::PathBuf>,
    /// Also write the final report as a lazyvma-report document (docs/report-schema.md),
    /// for `lazyvma report` / `merge`.
    #[arg(long, value_name = "FILE")]
    pub report: Option<std::path::PathBuf>,
    /// Start CMD once the programs are attached and trace it and its descendants.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<std::ffi::OsString>,
}

impl Args {
    pub fn options(self) -> Options {
        Options {
            // No --knob on a live trace: `replay --knob` re-runs the model under others.
            knobs: Default::default(),
            pids: self.pids,
            cgroup: self.cgroup,
            by_cgroup: self.by_cgroup,
            cgroup_cap: self.cgroup_cap,
            duration: self.duration,
            interval: self.interval,
            json: self.json,
            kprobes: self.kprobes,
            ops: self.ops,
            model_events: self.model_events,
            model_events_max: self.model_events_max,
            stacks: self.stacks,
            stats: self.stats,
            ringbuf_mb: self.ringbuf_mb,
            output: self.output,
            report: self.report,
            command: self.command,
        }
    }
}

pub fn run(args: Args, btf_path: Option<&Path>) -> anyhow::Result<()> {
    session::run(args.options(), btf_path)
}
