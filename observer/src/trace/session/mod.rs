//! One trace, start to report, from either source of records: `start` loads and attaches
//! the programs, seeds a -p / --cgroup scope and releases a command; `replay` reads a
//! `trace -o` recording instead. `poll` is one turn of the loop (the ring buffer read, the
//! seed fed, a live row; or a batch of the recording's records); `finish` ends it (a live
//! trace at one point: detached, the kernel's final counts read) and prints the report, the
//! same way for both. `cli/trace.rs` and `cli/replay.rs` only parse the flags.
mod finish;
mod held;
mod poll;
mod replay;
mod start;

use crate::{
    load::backend::Choice,
    record::format::Header,
    record::meta,
    trace::{
        counts::{bycgroup::ByCgroup, slab::Sizes},
        ingest::{bpf::Loaded, stats, symbols::Symbols},
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

/// What a trace is asked for: `lazyvma trace`'s flags, parsed (`cli/trace.rs` says each);
/// a replay takes those of its flags `lazyvma replay` has (`cli/replay.rs`).
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The lazy model's knobs (`replay --knob`; a live trace keeps the defaults).
    pub knobs: lazyvma_model::knobs::Knobs,
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

/// A running trace: the tracer, what the report says of the trace (the recording's header,
/// the backend per hook), and where its records come from.
pub struct Session {
    opts: Options,
    tracer: Tracer,
    about: Header,
    backend: Vec<Choice>,
    records: Records,
}

/// Where a session's records come from.
enum Records {
    /// The kernel's ring buffer: a live trace (`Session::start`).
    Ring(Box<Ring>),
    /// A `trace -o` recording's records: a replay (`Session::replay`).
    Recording(Box<replay::Recorded>),
}

/// A live trace's source: the loaded programs and the loop's state.
struct Ring {
    scope: Scope,
    loaded: Loaded,
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
    drive(Session::start(opts, btf_path)?)
}

/// `lazyvma replay` whole: the recording's records through the same loop and report.
pub fn replay(path: &std::path::Path, opts: Options) -> anyhow::Result<()> {
    drive(Session::replay(path, opts)?)
}

fn drive(mut s: Session) -> anyhow::Result<()> {
    let ended_by = loop {
        if let Some(why) = s.poll()? {
            break why;
        }
    };
    s.finish(ended_by)
}

/// The tracer of a trace or replay: the tree the trace started from, the settings the
/// header gives (`meta::configure`, after the knobs the model takes) and the flags'.
fn tracer(about: &Header, syms: Symbols, sizes: Sizes, opts: &Options) -> Tracer {
    let mut tracer = Tracer::new(meta::tree(about), syms, sizes);
    tracer.knobs = opts.knobs;
    tracer.print_ops = opts.ops;
    meta::configure(&mut tracer, about);
    if let Some(f) = tracer.feed.as_mut() {
        f.print = opts.model_events;
        f.events_max = opts.model_events_max;
    }
    tracer
}

/// Each process's cgroup is read at its first sight (`--by-cgroup`).
fn sight(by_cgroup: &mut Option<ByCgroup>, t: &Tracer) {
    if let Some(b) = by_cgroup.as_mut() {
        b.catch_up(&t.tree);
    }
}
