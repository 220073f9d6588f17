//! `lazyvma trace [-p PID,..] [--cgroup PATH] [--by-cgroup] [-d DUR] [-i INT] [-j] [-k] [-- CMD ARGS...]`: observed
//! anon_vma / anon_vma_chain allocations and frees of a command, some processes or the whole
//! system, by function, reason and phase, until CMD exits, -d elapses or SIGINT/SIGTERM.
use crate::{
    cgroup,
    load::{
        backend::{Backend, Facts},
        ebpf,
        facts::KernelFacts,
        probe::{self, Prereqs},
    },
    record::{
        self,
        format::{Header, MapStats, Trailer},
        meta,
    },
    sys,
    trace::{
        counts::bycgroup::ByCgroup,
        counts::locks,
        counts::slab::Sizes,
        ingest::attach,
        ingest::bpf::{self, Config},
        ingest::hooks,
        ingest::stats,
        ingest::symbols::Symbols,
        out::render,
        tree::command,
        tree::pids::Tree,
        Tracer,
    },
};
use anyhow::{bail, Context};
use lazyvma_model::trace_abi::{HookOffsets, FN_CLONE, FN_PUT, FN_UNLINK};
use std::{
    io::Write,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

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

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).map_or((s, "s"), |i| s.split_at(i));
    let v: f64 = num.parse().map_err(|_| format!("`{s}` is not a duration (e.g. 10s, 500ms, 2m)"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (ms, s, m, h)")),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("`{s}`: a duration must be positive"));
    }
    // Bounded both ways: an Instant plus a year cannot overflow, and 1 ms is no busy loop.
    if !(0.001..=MAX_DURATION_SECS).contains(&secs) {
        return Err(format!("`{s}`: a duration must be from 1ms to 365 days"));
    }
    Ok(Duration::from_secs_f64(secs))
}

const MAX_DURATION_SECS: f64 = 365.0 * 86400.0;

/// The tgid of a `-p` pid (a thread id names its process).
pub fn tgid_of(pid: i32) -> anyhow::Result<u32> {
    let status = sys::proc_text(format!("/proc/{pid}/status")).map_err(|_| anyhow::anyhow!("no such process: {pid}"))?;
    status.lines().find_map(|l| l.strip_prefix("Tgid:")).and_then(|v| v.trim().parse().ok()).with_context(|| format!("reading the tgid of pid {pid}"))
}

/// (pid, ppid) of every live process but lazyvma. Zombies are left out: their
/// `sched_process_exit` has run, so one scanned into a scope would never exit in the trace
/// (an exit before its FEED_TRACED entry is not sent).
pub fn ppids() -> Vec<(u32, u32)> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return vec![] };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        // lazyvma is nobody's traced descendant (`-p 1`).
        .filter(|pid| *pid != std::process::id())
        .filter_map(|pid| {
            let (state, ppid) = state_ppid(pid)?;
            (!exited(state)).then_some((pid, ppid))
        })
        .collect()
}

/// Gone or a zombie: its mm has been torn down.
fn gone(tgid: u32) -> bool {
    state_ppid(tgid).is_none_or(|(state, _)| exited(state))
}

/// `/proc/PID/stat`'s state and ppid (the fields after the command's closing parenthesis).
fn state_ppid(pid: u32) -> Option<(char, u32)> {
    let st = sys::proc_text(format!("/proc/{pid}/stat")).ok()?;
    let mut rest = st.rsplit_once(')')?.1.split_ascii_whitespace();
    let state = rest.next()?.chars().next()?;
    Some((state, rest.next()?.parse().ok()?))
}

/// Zombie or dead.
fn exited(state: char) -> bool {
    state == 'Z' || state == 'X'
}

/// Records read while the seeding pass runs, in order; once it is in, fed a slice per
/// loop turn (`feed`), the ring buffer drained between slices, until none is left.
#[derive(Default)]
struct Held {
    bytes: Vec<u8>,
    ends: Vec<usize>,
    /// Records fed so far.
    next: usize,
}

impl Held {
    fn push(&mut self, b: &[u8]) {
        self.bytes.extend_from_slice(b);
        self.ends.push(self.bytes.len());
    }

    /// Feed up to `n` held records; true once none is left.
    fn feed(&mut self, tracer: &mut Tracer, n: usize, sight: &mut impl FnMut(&Tracer)) -> bool {
        let stop = (self.next + n).min(self.ends.len());
        for k in self.next..stop {
            let from = if k == 0 { 0 } else { self.ends[k - 1] };
            tracer.record(&self.bytes[from..self.ends[k]]);
            sight(tracer);
        }
        self.next = stop;
        self.next == self.ends.len()
    }
}

/// The seeding pass (while `Some`), and the records held meanwhile.
type Seeding = Option<(Option<crate::trace::feed::seed::Running>, Held)>;

/// The pass is in: its seed goes to the feed (and the recording, before any record, where a
/// replay installs it); the held records follow (`Held::feed`).
fn seeded(tracer: &mut Tracer, seeding: &mut Seeding) -> anyhow::Result<()> {
    let Some((running, _)) = seeding.as_mut() else { return Ok(()) };
    let Some(pending) = running.take().map(|r| r.join()) else { return Ok(()) };
    if let Some(w) = tracer.tap.as_mut() {
        if let Some(n) = w.seed(&pending.record())? {
            eprintln!("lazyvma: the snapshot ({} MiB) is over a recording chunk's 64 MiB: not recorded, a replay will not seed", n >> 20);
        }
    }
    if let Some(f) = tracer.feed.as_mut() {
        f.seed = Some(pending);
    }
    Ok(())
}

/// Held records fed per loop turn: a few ms of the model's work.
const HELD_SLICE: usize = 4096;

pub fn run(args: Args, btf_path: Option<&Path>) -> anyhow::Result<()> {
    sys::require_root("trace")?;
    if let Some(r) = &args.report {
        crate::report::write::check_dir(r).context("--report")?;
    }
    if let Some(mb) = args.ringbuf_mb.filter(|mb| !mb.is_power_of_two() || *mb > 1024) {
        bail!("--ringbuf-mb {mb}: must be a power of two up to 1024");
    }
    let mut roots: Vec<u32> = args.pids.iter().map(|p| tgid_of(*p)).collect::<anyhow::Result<_>>()?;
    // lazyvma never traces itself, in any scope.
    roots.retain(|t| *t != std::process::id());
    if !args.pids.is_empty() && roots.is_empty() {
        bail!("-p names only lazyvma itself, which is never traced");
    }
    // Members now only: a process that joins later is traced only if a traced one forked it.
    let cgroup_dir = match &args.cgroup {
        Some(cg) => {
            let dir = cgroup::resolve(cg, &cgroup::mounts())?;
            let members = cgroup::procs(&dir)?;
            if members.is_empty() {
                bail!("cgroup {} has no processes to trace", dir.display());
            }
            roots.extend(members.iter().filter(|m| !roots.contains(m) && **m != std::process::id()).collect::<Vec<_>>());
            Some(dir)
        }
        None => None,
    };
    sys::ensure_tracefs()?;
    let mut recording = args.output.as_deref().map(record::writer::Writer::create).transpose()?;
    // Read once: kallsyms, sizes, tracepoint formats, BTF (ours resolved, aya's parsed).
    let mut kf = KernelFacts::load(btf_path)?;
    let (offsets, marker_problem) = kf.formats.clone();
    let sizes: Sizes = kf.sizes.clone();

    // What the kernel allows, by trying (as doctor does), for the report's backend per hook.
    let btf = kf.take_aya_btf();
    let probes = probe::probe_all(ebpf::object(), &Prereqs { btf: btf.as_deref().map_err(Clone::clone), tracefs: Ok(()) });
    let kallsyms = |f: &str| kf.syms.has(f);
    let facts = Facts { probes: &probes, kallsyms: &kallsyms, has_tracepoint: &probe::has_tracepoint, force_kprobes: args.kprobes };
    let stacks = args.stacks;
    // Offsets the function hooks read; without them no hook is attached (slab still works).
    let (btf_globals, hook_offsets, blocked, rwsem) = match &kf.btf {
        Ok(b) => match &b.offsets {
            Ok(o) => (o.globals.clone(), b.hook_offsets, None, b.rwsem.clone()),
            Err(e) => (vec![], HookOffsets::UNSET, Some(format!("kernel BTF offsets: {e}")), b.rwsem.clone()),
        },
        Err(e) => (vec![], HookOffsets::UNSET, Some(format!("kernel BTF: {e}")), Err(format!("kernel BTF: {e}"))),
    };
    let live_avs = sys::slab_cache("anon_vma").ok().and_then(|c| c.objects);
    let lock_setup = locks::setup(rwsem, sizes.anon_vma.object_size, live_avs);
    let vmg = hook_offsets.vmg_start != u64::MAX;

    // Fork CMD's process now (single-threaded, before any BPF fd exists), release it once attached.
    let mut held = if args.command.is_empty() { None } else { Some(command::spawn_held(&args.command)?) };
    let stack_fns = if stacks { (1 << FN_CLONE) | (1 << FN_UNLINK) | (1 << FN_PUT) } else { 0 };
    // From here a SIGINT/SIGTERM ends the trace through its report, so --stats' sysctl is restored.
    crate::interrupt::catch();
    // Before load, so every run is counted; restored when this goes out of scope, error or not.
    let stats_on = args.stats.then(stats::Enabled::enable).transpose()?;
    // The model is fed for a command's tree or -p (whose already-running processes it
    // cannot see built), never for the whole system.
    let feed = !args.command.is_empty() || !roots.is_empty();
    let vm_file = kf.btf.as_ref().map_or(u64::MAX, |b| b.vm_file);
    // The scope is known before anything attaches: a scoped trace's kernel side sends only
    // its processes' records from the first one on.
    let (scope, tree) = match (&held, roots.is_empty()) {
        (Some(h), _) => ("command", Tree::command(h.pid as u32)),
        (None, false) => (if cgroup_dir.is_some() { "cgroup" } else { "pids" }, Tree::with_descendants(&roots, &ppids())),
        (None, true) => ("system", Tree::system()),
    };
    let traced = feed.then(|| tree.procs.iter().map(|p| p.tgid).collect::<Vec<_>>());
    let ringbuf_mb = args.ringbuf_mb.unwrap_or_else(|| bpf::default_ringbuf_mb(false));
    // Preallocated (~64 B an entry): the machine's live chains, 64 Ki to 256 Ki entries.
    let objects_max = sys::slab_cache("anon_vma_chain").ok().and_then(|c| c.objects).map_or(1 << 18, |n| n.clamp(1 << 16, 1 << 18) as u32);
    let cfg = Config {
        offsets,
        ranges: kf.ranges,
        stack_fns,
        ringbuf_bytes: ringbuf_mb << 20,
        btf_globals,
        hook_offsets,
        locks: lock_setup.as_ref().ok().copied(),
        feed,
        vm_file,
        traced,
        objects_max,
        wake_shift: bpf::WAKE_SHIFT,
        context: kf.context(),
        fault_fn: kf.syms.range("exc_page_fault").unwrap_or((0, 0)),
        // Counted in the kernel unless a recording needs every record for its replay.
        aggregate: recording.is_none().then(|| bpf::Aggregate::trace((sizes.anon_vma.object_size, sizes.anon_vma_chain.object_size), feed)),
        cache_fields: kf.cache_fields(),
        kernel_btf: btf.as_ref().ok().cloned(),
        arg_regs: kf.arg_regs(),
        fexit_args: kf.fexit_args(),
    };
    let mut loaded = bpf::load(&cfg)?;
    drop(cfg);
    bpf::say_fallbacks(&loaded);
    let kernel_tally = loaded.take_tally();
    let kernel_front = loaded.take_front();
    // Attaching the function hooks and seeding take long: the ring is drained meanwhile.
    loaded.keep_draining();
    let setup = attach::Setup { btf: btf.as_deref().ok(), vmg, blocked, unreadable: attach::unreadable(&hook_offsets) };
    let outcomes = attach::attach(loaded.ebpf_mut(), &facts, &setup);
    let mut backend = hooks::used(&facts, stacks, &outcomes);
    let lock_outcome = lock_setup.and_then(|_| locks::attach(loaded.ebpf_mut(), btf.as_deref().ok()));
    hooks::locks(&mut backend, &lock_outcome);
    // Frames are named only for --stacks' records and the function hooks' (the rmap walk's
    // caller), and a recording carries the symbols a replay asks for: otherwise nothing asks
    // a name from here on, and the table (~10 MB) goes before the seeding pass.
    let hooks_attached = outcomes.iter().any(|(_, o)| !o.functions.is_empty() || !o.tracepoints.is_empty());
    let syms = std::mem::replace(&mut kf.syms, Symbols::empty());
    let syms = if stacks || hooks_attached || recording.is_some() { syms } else { Symbols::empty() };
    let hooked = |name: &str| backend.iter().any(|c| c.hook == name && matches!(c.backend, Backend::Fentry | Backend::Kprobe));
    let (any_hook, rmap_hook) = (backend.iter().any(|c| matches!(c.backend, Backend::Fentry | Backend::Kprobe)), hooked("rmap"));
    let mut missing = loaded.missing.clone();
    let mut attached = loaded.attached.clone();
    match &lock_outcome {
        Ok(()) => attached.extend(locks::TRACEPOINTS.map(String::from)),
        Err(e) => missing.extend(locks::TRACEPOINTS.map(|tp| (tp.to_string(), format!("{e}; anon_vma lock contention unavailable")))),
    }
    let markers = marker_problem.is_none() && attached.iter().any(|t| t == "syscalls:sys_enter_madvise");
    if let Some(p) = marker_problem {
        missing.retain(|(tp, _)| tp != "syscalls:sys_enter_madvise");
        missing.push(("syscalls:sys_enter_madvise".into(), format!("{p}; phases unavailable")));
    }
    // Scanned again until FEED_TRACED holds every process of the scope: a child forked
    // since the scan above was not followed in the kernel (trace/feed/seed.rs's TRACED marker).
    let tree = if matches!(scope, "pids" | "cgroup") { Tree::scan(&roots, std::process::id(), ppids, |t| loaded.feed_traced(t), 8)? } else { tree };
    let (kernel, arch) = sys::uname();
    let about = Header {
        lazyvma: env!("CARGO_PKG_VERSION").into(),
        host: Some(crate::report::host()),
        kernel,
        arch,
        sizes: record::format::ObjectSizes { anon_vma: sizes.anon_vma.object_size, anon_vma_chain: sizes.anon_vma_chain.object_size },
        caches: Some(sizes.clone()),
        scope: scope.into(),
        pids: roots.clone(),
        cgroup: cgroup_dir.as_ref().map(|d| d.display().to_string()),
        locks_unavailable: lock_outcome.as_ref().err().cloned(),
        // A non-UTF-8 argument (a file name is bytes) is recorded and shown lossily.
        argv: args.command.iter().map(|a| a.to_string_lossy().into_owned()).collect(),
        tree: meta::initial(&tree),
        stacks,
        backend: backend.iter().map(record::format::ChoiceRec::of).collect(),
        tracepoints: attached.clone(),
        missing: missing.clone(),
        ops: any_hook,
        rmap: rmap_hook,
        feed,
        // Without a fault tracepoint (arm64), or without the feed's prepare program (5.10:
        // no bpf_find_vma before 5.17), the prepare hook says which VMA was prepared.
        feed_from_hooks: (!loaded.attached.iter().any(|t| t == "exceptions:page_fault_user")
            || loaded.missing.iter().any(|(t, _)| t == "kmem:kmem_cache_alloc"))
            && hooked("__anon_vma_prepare"),
        start_unix_ms: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
    };
    // Attached: aya's parse goes before the seeding pass (`trace::seed::Facts` says why).
    drop(btf);
    let seed_facts = kf.seed();
    // The tracer starts from the recorded tree, as a replay's does.
    let mut tracer = Tracer::new(meta::tree(&about), syms, sizes);
    tracer.kernel_tally = kernel_tally;
    tracer.kernel_front = kernel_front;
    if let Some(mut w) = recording.take() {
        tracer.syms.track();
        w.header(&about)?;
        tracer.tap = Some(w);
    }
    let mut by_cgroup = args.by_cgroup.then(|| ByCgroup::new(args.cgroup_cap as usize));
    // The held command's first sight is now, before it runs.
    let mut sight = |t: &Tracer| {
        if let Some(b) = by_cgroup.as_mut() {
            b.catch_up(&t.tree);
        }
    };
    sight(&tracer);
    tracer.print_ops = args.ops;
    meta::configure(&mut tracer, &about);
    if let Some(f) = tracer.feed.as_mut() {
        f.print = args.model_events;
        f.events_max = args.model_events_max;
    }
    // -p / --cgroup: the processes already running are seeded from one snapshot, now that
    // the feed programs are attached (trace/feed/seed.rs). The pass runs on its own thread while
    // this one drains the ring buffer into `seeding`, fed once the pass is in.
    let mut seeding: Seeding = None;
    if matches!(scope, "pids" | "cgroup") && tracer.feed.is_some() {
        seeding = Some((
            Some(crate::trace::feed::seed::start(&mut loaded, &tracer.tree, tracer.knobs, btf_path, seed_facts, markers, tracer.kernel_front.is_some())),
            Held::default(),
        ));
    }
    let start = Instant::now();
    if let Some(h) = held.as_mut() {
        // A SIGINT/SIGTERM while loading (Ctrl-C also reaches the held child, whose pipe then
        // breaks) stops here: the command is never run, nothing traced, no report.
        let stopped = || crate::interrupt::count() > 0;
        if let Err(e) = if stopped() { Err(anyhow::anyhow!("")) } else { h.release() } {
            if !stopped() {
                return Err(e);
            }
            let cmd = about.argv.join(" ");
            return Err(anyhow::anyhow!("stopped by a signal before `{cmd}` started: it was not run, nothing traced").context(super::ExitCode(130)));
        }
    }
    // Started: only now may the recording replace a file at its path.
    if let Some(w) = tracer.tap.as_mut() {
        w.commit()?;
    }

    let live_to_stderr = args.json;
    let mut live: Box<dyn Write> =
        if live_to_stderr { Box::new(crate::escape::Terminal::new(std::io::stderr())) } else { Box::new(crate::escape::Terminal::new(std::io::stdout())) };
    let mut header = false;
    let mut next_row = start + args.interval;
    let mut status = None;
    let ended_by = loop {
        let now = Instant::now();
        let mut wait = next_row.saturating_duration_since(now).min(Duration::from_millis(50));
        if matches!(seeding, Some((None, _))) {
            // Held records to feed: only what is in the ring now.
            wait = Duration::ZERO;
        }
        loaded.poll(wait, |b| match seeding.as_mut() {
            Some((_, h)) => h.push(b),
            None => {
                tracer.record(b);
                sight(&tracer);
            }
        });
        if seeding.as_ref().is_some_and(|(r, _)| r.as_ref().is_some_and(|r| r.done())) {
            seeded(&mut tracer, &mut seeding)?;
        }
        if let Some((None, held)) = seeding.as_mut() {
            if held.feed(&mut tracer, HELD_SLICE, &mut sight) {
                seeding = None;
                next_row = next_row.max(Instant::now());
            }
        }
        if seeding.is_none() && tracer.kernel_counts.retire_due() {
            tracer.sync_seen();
        }
        // The first live row comes once the processes running are seeded.
        if seeding.is_none() && Instant::now() >= next_row {
            let (_, lost) = loaded.counters()?;
            if !std::mem::replace(&mut header, true) {
                render::live_header(&mut live)?;
            }
            let t_ms = start.elapsed().as_millis();
            // The row holds what every CPU counted so far, not only what left its front.
            if tracer.kernel_front.is_some() {
                crate::trace::ingest::front::flush();
            }
            tracer.sync_seen();
            render::live_row(&tracer, t_ms, lost, &mut live)?;
            tracer.interval = Default::default();
            tracer.locks.interval = None;
            next_row += args.interval;
            if let Some(w) = tracer.tap.as_mut() {
                w.flush(&tracer.syms)?;
            }
            tracer.row_point(t_ms as u64);
        }
        if let Some(h) = &held {
            if let Some(s) = h.try_wait() {
                status = Some(s);
                break "command exit";
            }
        }
        if scope != "command" && scope != "system" && tracer.tree.procs.iter().all(|p| gone(p.tgid)) {
            break "all traced processes exited";
        }
        if crate::interrupt::count() > 0 {
            break "signal";
        }
        if args.duration.is_some_and(|d| start.elapsed() >= d) {
            break "duration";
        }
    };
    // Ended while seeding: the pass ends soon, and what was held goes first.
    seeded(&mut tracer, &mut seeding)?;
    if let Some((_, held)) = seeding.as_mut() {
        held.feed(&mut tracer, usize::MAX, &mut sight);
    }
    // Everything the exited processes did was committed before they were reaped.
    let elapsed_ms = start.elapsed().as_millis();
    let prog_stats = stats_on.map(|on| {
        let s = stats::read(loaded.ebpf_mut());
        drop(on);
        s
    });
    let lock_counters = locks::counters(loaded.ebpf_mut());
    // The end as one point: the programs detach one by one (each link's release waits for
    // the kernel, ~180 ms in all on 2 CPUs), and a process busy meanwhile would have part of
    // an operation counted and part not (seen: a brk trim's anon_vma_chain clone counted,
    // its unlink and syscall record gone). Nothing after the end marker counts; what was in
    // flight across it is flagged. A short grace lets such operations finish while every
    // program still sees them.
    if markers {
        crate::trace::feed::seed::marker(crate::trace::feed::seed::END_OF_TRACE);
        let until = Instant::now() + Duration::from_secs(2);
        let mut grace: Option<Instant> = None;
        while grace.is_none_or(|g| Instant::now() < g) && Instant::now() < until {
            loaded.poll(Duration::from_millis(20), |b| {
                tracer.record(b);
                sight(&tracer);
            });
            if tracer.ended.is_some() && grace.is_none() {
                grace = Some(Instant::now() + Duration::from_millis(100));
            }
        }
    }
    loaded.detach();
    let mut sink = |b: &[u8]| {
        tracer.record(b);
        sight(&tracer);
    };
    loaded.drain(&mut sink);
    // Detached and drained: the kernel's counts are final, and every marker is in.
    tracer.sync_end();
    sight(&tracer);
    tracer.finish();
    let (sent, lost) = loaded.counters()?;
    let objects_full = loaded.objects_full();
    let tally_full = loaded.tally_full();
    drop(loaded);
    let status = status.or_else(|| held.as_ref().and_then(|h| h.try_wait()));
    let trailer = Trailer {
        ended_by: ended_by.into(),
        exit_status: match status {
            Some(command::Status::Exited(c)) => Some(c),
            _ => None,
        },
        signal: match status {
            Some(command::Status::Signaled(s)) => Some(s),
            _ => None,
        },
        elapsed_ms: elapsed_ms as u64,
        sent,
        lost,
        records: tracer.received,
        lock_counters,
        kernel_counts: tracer.kernel_tally.is_some().then_some(MapStats { full: tally_full, retired: tracer.kernel_counts.retired }),
    };
    if tally_full > 0 {
        eprintln!("lazyvma: the kernel's slab count map was full: {tally_full} slab events were sent instead (all counted)");
    }
    if tracer.kernel_counts.unattributed > 0 {
        eprintln!(
            "lazyvma: {} slab events the kernel counted for a process the trace never saw start (not in the per-process counts)",
            tracer.kernel_counts.unattributed
        );
    }
    if let Some(e) = &tracer.kernel_counts.retire_error {
        eprintln!("lazyvma: deleting an exited process's counts from the kernel's slab count map failed ({e}): the map kept them and could fill");
    }
    if tracer.kernel_counts.recycled_unsynced > 0 {
        eprintln!("lazyvma: {} forks reused a tgid too soon after the last read of the kernel's counts: the old and new process's slab counts of one phase may be merged", tracer.kernel_counts.recycled_unsynced);
    }
    if objects_full > 0 {
        eprintln!("lazyvma: {objects_full} objects of the traced processes did not fit the kernel's set: a free of one of them from outside the scope (ksmd, another process's mmput) was not seen");
    }
    if let Some(w) = tracer.tap.take() {
        let w = w.finish(&tracer.syms, trailer.clone())?;
        if let Some(ms) = w.flushed {
            tracer.push_point(ms);
        }
        eprintln!("lazyvma: {}", w.summary());
    }
    meta::finish(&mut tracer, &about, Some(&trailer));
    let live = meta::Live {
        groups: by_cgroup.map(|b| meta::Groups { rows: b.rows(&tracer.tally, &tracer.sizes), cap: args.cgroup_cap }),
        bpf_stats: prog_stats,
        report: args.report.clone(),
    };
    meta::print(&mut tracer, &about, &backend, Some(&trailer), elapsed_ms as u64, args.json, None, &live)?;
    Ok(())
}
