//! `lazyvma serve [--listen ADDR] [-i INTERVAL] [-p PID,.. | --cgroup PATH]`: the trace,
//! continuously, and a snapshot pass every interval, of the whole system or of a scope, as
//! OpenMetrics on `/metrics` until SIGINT/SIGTERM.
use crate::{
    cgroup,
    cli::parse_duration,
    load::{
        backend::Facts,
        ebpf,
        facts::KernelFacts,
        probe::{self, Prereqs},
    },
    serve::{
        events::Counter,
        follow, http,
        metrics::Metrics,
        passes::Passes,
        scope::{self, Scope},
    },
    snapshot::reader::NoTaskVmaIter,
    sys,
    trace::{
        ingest::bpf::{self, Config},
        ingest::hooks,
        ingest::symbols::Symbols,
        tree::pids::Tree,
        tree::procfs::{ppids, tgid_of},
    },
};
use anyhow::{bail, Context};
use lazyvma_model::hook_abi::HookOffsets;
use lazyvma_model::trace_abi::AGG_SERVE;
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{atomic::AtomicBool, Arc},
    time::Duration,
};

#[derive(clap::Args)]
pub struct Args {
    /// Address and port to serve on. Loopback by default; any other address exposes this
    /// host's metrics to whoever can reach it, and is warned about.
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:9464")]
    pub listen: SocketAddr,
    /// Period of the snapshot pass behind the object gauges (e.g. 10s, 500ms, 1m).
    #[arg(short = 'i', long, value_name = "INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Take the kernel stack where the task's context leaves a clone's or teardown's reason
    /// ambiguous (a split or a merge inside mprotect, mmap, madvise..., an mmput outside
    /// exit), as `split`/`merge`/... instead of `split/merge`; costs ~0.3-1 µs per such event.
    #[arg(long)]
    pub stacks: bool,
    /// No kernel stacks: the default (kept for old command lines).
    #[arg(long, hide = true, conflicts_with = "stacks")]
    pub no_stacks: bool,
    /// Ring buffer size in MiB (a power of two; default: from the CPU count and the scope).
    #[arg(long, value_name = "MIB")]
    pub ringbuf_mb: Option<u32>,
    /// Cover only these processes and their descendants (comma-separated pids).
    #[arg(short = 'p', long = "pid", value_name = "PID[,PID...]", value_delimiter = ',')]
    pub pids: Vec<i32>,
    /// Cover only the processes in this cgroup (and below) at start, and their descendants.
    /// Absolute, or relative to the cgroup2 mount, else to a v1 hierarchy.
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<PathBuf>,
    /// No tracing: only the snapshot pass every interval (the object gauges and the lazy
    /// estimate). No program runs in the kernel between passes, so the machine pays for
    /// the passes alone; the slab counters stay absent (`lazyvma_build_info{trace="off"}`).
    /// A scope is read again at each pass (the pids and their descendants, the cgroup's
    /// processes then).
    #[arg(long, conflicts_with_all = ["stacks", "ringbuf_mb"])]
    pub snapshot_only: bool,
}

/// The scope's members now: the pids, the cgroup's processes, and their descendants.
fn members(pids: &[u32], cgroup: Option<&Path>) -> anyhow::Result<Vec<u32>> {
    let mut roots = pids.to_vec();
    if let Some(dir) = cgroup {
        roots.extend(cgroup::procs(dir)?.into_iter().filter(|p| !pids.contains(p)));
    }
    Ok(Tree::with_descendants(&roots, &ppids()).procs.iter().map(|p| p.tgid).collect())
}

/// `backend_<hook>` label name: the hook's name with everything but [a-zA-Z0-9_] as `_`.
fn backend_label(hook: &str) -> String {
    let clean: String = hook.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    format!("backend_{}", clean.trim_start_matches('_'))
}

/// The backend each hook has in this run, as trace reports it.
fn backends(kf: &KernelFacts, stacks: bool) -> Vec<(String, String)> {
    let probes = probe::probe_all(ebpf::object(), &Prereqs { btf: kf.aya_btf.as_deref().map_err(Clone::clone), tracefs: Ok(()) });
    let kallsyms = |n: &str| kf.syms.has(n);
    let facts = Facts { probes: &probes, kallsyms: &kallsyms, has_tracepoint: &probe::has_tracepoint, force_kprobes: false };
    // serve attaches the always-on programs only: every function hook reports "not attached".
    hooks::used(&facts, stacks, &[]).iter().map(|c| (backend_label(c.hook), c.backend.name().to_string())).collect()
}

pub fn run(args: Args, btf_path: Option<&Path>) -> anyhow::Result<()> {
    sys::require_root("serve")?;
    if let Some(mb) = args.ringbuf_mb.filter(|mb| !mb.is_power_of_two() || *mb > 1024) {
        bail!("--ringbuf-mb {mb}: must be a power of two up to 1024");
    }
    let pids: Vec<u32> = args.pids.iter().map(|p| tgid_of(*p)).collect::<anyhow::Result<_>>()?;
    let cgroup_dir = args.cgroup.as_deref().map(|c| cgroup::resolve(c, &cgroup::mounts())).transpose()?;
    if let Some(dir) = &cgroup_dir {
        if pids.is_empty() && cgroup::procs(dir)?.is_empty() {
            bail!("cgroup {} has no processes to serve", dir.display());
        }
    }
    if !args.listen.ip().is_loopback() {
        eprintln!("lazyvma: warning: --listen {} is not a loopback address: anyone who can reach it reads this host's metrics", args.listen);
    }
    // Bound first: a busy port fails before any BPF is loaded.
    let listener = std::net::TcpListener::bind(args.listen).with_context(|| format!("--listen {}: cannot listen there", args.listen))?;
    listener.set_nonblocking(true)?;
    sys::ensure_tracefs()?;
    // Once per run: kallsyms, the sizes (the Counter classifies by them, every snapshot pass
    // prices with them), the tracepoint formats, BTF.
    let mut kf = KernelFacts::load(btf_path)?;
    let sizes = kf.sizes.clone();
    // Phase markers are trace's; serve counts the whole system and does without them.
    let (offsets, _) = kf.formats.clone();
    let stacks = args.stacks;
    let (kernel, arch) = sys::uname();
    let trace = if args.snapshot_only { "off" } else { "on" };
    let mut info =
        vec![("version".to_string(), env!("CARGO_PKG_VERSION").to_string()), ("kernel".into(), kernel), ("arch".into(), arch), ("trace".into(), trace.into())];
    if !args.snapshot_only {
        info.extend(backends(&kf, stacks));
    }
    let scoped = cgroup_dir.is_some() || !pids.is_empty();
    let metrics = Arc::new(Metrics::new(info, scope::labels(cgroup_dir.as_deref(), &pids)));
    if args.snapshot_only {
        let scope = Arc::new(if scoped { Scope::of(members(&pids, cgroup_dir.as_deref())?) } else { Scope::system() });
        let offsets = kf.btf.as_ref().ok().and_then(|b| b.offsets.as_ref().ok()).cloned();
        let mut passes = Passes::new(btf_path.map(Path::to_path_buf), offsets, sizes, args.interval, metrics.clone(), scope);
        if scoped {
            let cgroup_dir = cgroup_dir.clone();
            passes = passes.refreshed_by(Box::new(move || members(&pids, cgroup_dir.as_deref())));
        }
        // Without the iterator there is nothing to serve: no counters either.
        passes.pass().context("the first snapshot pass (--snapshot-only serves nothing else)")?;
        drop(kf);
        return serve(listener, &args, metrics, None, Some(passes));
    }

    let mut loaded = bpf::load(&Config {
        offsets,
        ranges: kf.ranges,
        stack_fns: bpf::stack_fns(stacks),
        ringbuf_bytes: args.ringbuf_mb.unwrap_or_else(|| bpf::default_ringbuf_mb(!stacks)) << 20,
        btf_globals: Vec::new(),
        hook_offsets: HookOffsets::UNSET,
        locks: None,
        feed: false,
        vm_file: u64::MAX,
        fault_fn: (0, 0),
        // Members before the programs attach, so the kernel sends only theirs.
        traced: scoped.then(|| members(&pids, cgroup_dir.as_deref())).transpose()?,
        objects_max: 1 << 18,
        wake_shift: bpf::WAKE_SHIFT,
        context: kf.context(),
        // serve only sums: what needs no stack is counted in the kernel.
        aggregate: Some(bpf::Aggregate { sizes: (sizes.anon_vma.object_size, sizes.anon_vma_chain.object_size), mode: AGG_SERVE, tally_entries: 1 }),
        cache_fields: kf.cache_fields(),
        kernel_btf: kf.take_aya_btf().ok(),
        arg_regs: [lazyvma_model::trace_abi::NO_FIELD; 6],
        fexit_args: [lazyvma_model::hook_abi::FEXIT_RET_HELPER; lazyvma_model::hook_abi::FEXIT_RET_PROGRAMS.len()],
    })?;
    bpf::say_fallbacks(&loaded);
    // Only --stacks' records have frames to name: otherwise the table (~10 MB) goes now.
    let syms = std::mem::replace(&mut kf.syms, Symbols::empty());
    let syms = if stacks { syms } else { Symbols::empty() };
    // Members read again once the programs are attached: a fork in between is not missed.
    let scope = Arc::new(if scoped {
        let now = members(&pids, cgroup_dir.as_deref())?;
        loaded.feed_traced(&now)?;
        Scope::of(now)
    } else {
        Scope::system()
    });
    // The first pass runs before the port answers: every scrape sees object gauges, and a
    // kernel the snapshot cannot read fails here, not in the background.
    // Where our parse gave no offsets, each pass tries again and says why it cannot.
    let offsets = kf.btf.as_ref().ok().and_then(|b| b.offsets.as_ref().ok()).cloned();
    let mut passes = Passes::new(btf_path.map(Path::to_path_buf), offsets, sizes.clone(), args.interval, metrics.clone(), scope.clone());
    // A kernel without the iterator still gets the trace counters, said once; any other
    // failure of the first pass stops here.
    let with_gauges = match passes.pass() {
        Ok(()) => true,
        Err(e) if e.downcast_ref::<NoTaskVmaIter>().is_some() => {
            eprintln!("lazyvma: no object gauges on this kernel, trace counters only: {e}");
            false
        }
        Err(e) => return Err(e.context("the first snapshot pass")),
    };

    let counter = Counter::new(metrics.clone(), syms, sizes, scope);
    serve(listener, &args, metrics, Some((loaded, counter)), with_gauges.then_some(passes))
}

/// Serves until SIGINT/SIGTERM (or the trace thread's error): the trace thread (unless
/// --snapshot-only), the snapshot thread (where the kernel has the iterator), the port.
fn serve(
    listener: std::net::TcpListener,
    args: &Args,
    metrics: Arc<Metrics>,
    trace: Option<(bpf::Loaded, Counter)>,
    passes: Option<Passes>,
) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let tracer = trace
        .map(|(loaded, c)| {
            let (m, s) = (metrics.clone(), stop.clone());
            std::thread::Builder::new().name("trace".into()).spawn(move || follow::run(loaded, c, m, s))
        })
        .transpose()?;
    let snapshots = passes
        .map(|passes| {
            let s = stop.clone();
            std::thread::Builder::new().name("snapshot".into()).spawn(move || passes.run(s))
        })
        .transpose()?;
    let what = if tracer.is_some() { "" } else { ", no tracing" };
    eprintln!("lazyvma: serving OpenMetrics on http://{}/metrics (snapshot every {:?}{what}); SIGINT/SIGTERM to stop", args.listen, args.interval);

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let served = rt.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        let stopped = async {
            // The trace thread ends early only on an error: then stop serving too.
            let watch = async {
                while !tracer.as_ref().is_some_and(|t| t.is_finished()) {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            };
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
                _ = watch => {},
            }
        };
        http::serve(listener, metrics.clone(), stopped).await;
        anyhow::Ok(())
    });
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let traced = tracer.map(|t| t.join().map_err(|_| anyhow::anyhow!("the trace thread panicked"))).transpose()?;
    if let Some(s) = snapshots {
        s.join().map_err(|_| anyhow::anyhow!("the snapshot thread panicked"))?;
    }
    served?;
    traced.transpose().context("tracing")?;
    let lost = metrics.events.lost.get();
    if lost > 0 {
        eprintln!("lazyvma: {lost} events were lost over the run (ring buffer full); they were exposed as lazyvma_events_lost_total");
    }
    Ok(())
}
