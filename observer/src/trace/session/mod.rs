//! One trace, start to report: `start` loads and attaches the programs, seeds a -p /
//! --cgroup scope and releases a command; `poll` is one turn of the loop (the ring buffer
//! read, the seed fed, a live row); `finish` ends it at one point, detaches, reads the
//! kernel's final counts and prints the report. `cli/trace.rs` only parses the flags.
mod finish;
mod held;
mod poll;
mod start;

use crate::{
    load::backend::Choice,
    record::format::Header,
    trace::{
        counts::bycgroup::ByCgroup,
        ingest::{bpf::Loaded, stats},
        tree::command,
        Tracer,
    },
};
use std::{
    ffi::OsString,
    io::Write,
    path::PathBuf,
    time::{Duration, Instant},
};

/// What a trace is asked for: `lazyvma trace`'s flags, parsed (`cli/trace.rs` says each).
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub pids: Vec<i32>,
    pub cgroup: Option<PathBuf>,
    pub by_cgroup: bool,
    pub cgroup_cap: u64,
    pub duration: Option<Duration>,
    pub interval: Duration,
    pub json: bool,
    pub kprobes: bool,
    pub ops: bool,
    pub model_events: bool,
    pub model_events_max: usize,
    pub stacks: bool,
    pub stats: bool,
    pub ringbuf_mb: Option<u32>,
    pub output: Option<PathBuf>,
    pub report: Option<PathBuf>,
    pub command: Vec<OsString>,
}

/// Where the trace's processes come from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Scope {
    /// A command started once the programs are attached, and its descendants.
    Command,
    /// `-p` pids and their descendants.
    Pids,
    /// A cgroup's processes at the start, and their descendants.
    Cgroup,
    /// Everything, no model.
    System,
}

impl Scope {
    /// The name recordings and reports carry.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Command => "command",
            Scope::Pids => "pids",
            Scope::Cgroup => "cgroup",
            Scope::System => "system",
        }
    }

    /// Processes already running when the trace starts, seeded from one snapshot pass.
    fn seeded(self) -> bool {
        matches!(self, Scope::Pids | Scope::Cgroup)
    }
}

/// A running trace: the loaded programs, the tracer they feed, and the loop's state.
pub struct Session {
    opts: Options,
    scope: Scope,
    loaded: Loaded,
    tracer: Tracer,
    about: Header,
    backend: Vec<Choice>,
    /// The command, stopped until `start` releases it.
    held: Option<command::Held>,
    seeding: held::Seeding,
    by_cgroup: Option<ByCgroup>,
    /// --stats' sysctl, restored when dropped.
    stats_on: Option<stats::Enabled>,
    /// The madvise markers are attached: phases, the seed's markers, the end marker.
    markers: bool,
    start: Instant,
    live: Box<dyn Write>,
    header: bool,
    next_row: Instant,
    status: Option<command::Status>,
}

/// `lazyvma trace` whole: start, poll until an end, finish.
pub fn run(opts: Options, btf_path: Option<&std::path::Path>) -> anyhow::Result<()> {
    let mut s = Session::start(opts, btf_path)?;
    let ended_by = loop {
        if let Some(why) = s.poll()? {
            break why;
        }
    };
    s.finish(ended_by)
}

/// Each process's cgroup is read at its first sight (`--by-cgroup`).
fn sight(by_cgroup: &mut Option<ByCgroup>, t: &Tracer) {
    if let Some(b) = by_cgroup.as_mut() {
        b.catch_up(&t.tree);
    }
}
