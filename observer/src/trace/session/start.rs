//! Everything before the first loop turn: the scope, the kernel's facts, the programs
//! loaded and attached, the recording's header, the seeding pass started, the command
//! released.
use super::{held::Held, sight, Options, Records, Ring, Scope, Session};
use crate::{
    cgroup,
    exit::ExitCode,
    load::{
        backend::{Backend, Facts},
        ebpf,
        facts::KernelFacts,
        probe::{self, Prereqs},
    },
    record::{self, format::Header, meta},
    sys,
    trace::{
        counts::{bycgroup::ByCgroup, locks, slab::Sizes},
        ingest::{
            attach,
            bpf::{self, Config},
            hooks, stats,
            symbols::Symbols,
        },
        tree::{
            command,
            pids::Tree,
            procfs::{ppids, tgid_of},
        },
    },
};
use anyhow::{bail, Context};
use lazyvma_model::trace_abi::HookOffsets;
use std::{io::Write, path::Path, time::Instant};

impl Session {
    pub fn start(opts: Options, btf_path: Option<&Path>) -> anyhow::Result<Session> {
        sys::require_root("trace")?;
        if let Some(r) = &opts.report {
            crate::report::write::check_dir(r).context("--report")?;
        }
        if let Some(mb) = opts.ringbuf_mb.filter(|mb| !mb.is_power_of_two() || *mb > 1024) {
            bail!("--ringbuf-mb {mb}: must be a power of two up to 1024");
        }
        let mut roots: Vec<u32> = opts.pids.iter().map(|p| tgid_of(*p)).collect::<anyhow::Result<_>>()?;
        // lazyvma never traces itself, in any scope.
        roots.retain(|t| *t != std::process::id());
        if !opts.pids.is_empty() && roots.is_empty() {
            bail!("-p names only lazyvma itself, which is never traced");
        }
        // Members now only: a process that joins later is traced only if a traced one forked it.
        let cgroup_dir = match &opts.cgroup {
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
        let mut recording = opts.output.as_deref().map(record::writer::Writer::create).transpose()?;
        // Read once: kallsyms, sizes, tracepoint formats, BTF (ours resolved, aya's parsed).
        let mut kf = KernelFacts::load(btf_path)?;
        let (offsets, marker_problem) = kf.formats.clone();
        let sizes: Sizes = kf.sizes.clone();

        // What the kernel allows, by trying (as doctor does), for the report's backend per hook.
        let btf = kf.take_aya_btf();
        let probes = probe::probe_all(ebpf::object(), &Prereqs { btf: btf.as_deref().map_err(Clone::clone), tracefs: Ok(()) });
        let kallsyms = |f: &str| kf.syms.has(f);
        let facts = Facts { probes: &probes, kallsyms: &kallsyms, has_tracepoint: &probe::has_tracepoint, force_kprobes: opts.kprobes };
        let stacks = opts.stacks;
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
        let mut held = if opts.command.is_empty() { None } else { Some(command::spawn_held(&opts.command)?) };
        // From here a SIGINT/SIGTERM ends the trace through its report, so --stats' sysctl is restored.
        crate::interrupt::catch();
        // Before load, so every run is counted; restored when this goes out of scope, error or not.
        let stats_on = opts.stats.then(stats::Enabled::enable).transpose()?;
        // The model is fed for a command's tree or -p (whose already-running processes it
        // cannot see built), never for the whole system.
        let feed = !opts.command.is_empty() || !roots.is_empty();
        let vm_file = kf.btf.as_ref().map_or(u64::MAX, |b| b.vm_file);
        // The scope is known before anything attaches: a scoped trace's kernel side sends only
        // its processes' records from the first one on.
        let (scope, tree) = match (&held, roots.is_empty()) {
            (Some(h), _) => (Scope::Command, Tree::command(h.pid as u32)),
            (None, false) => (if cgroup_dir.is_some() { Scope::Cgroup } else { Scope::Pids }, Tree::with_descendants(&roots, &ppids())),
            (None, true) => (Scope::System, Tree::system()),
        };
        let traced = feed.then(|| tree.procs.iter().map(|p| p.tgid).collect::<Vec<_>>());
        let ringbuf_mb = opts.ringbuf_mb.unwrap_or_else(|| bpf::default_ringbuf_mb(false));
        // Preallocated (~64 B an entry): the machine's live chains, 64 Ki to 256 Ki entries.
        let objects_max = sys::slab_cache("anon_vma_chain").ok().and_then(|c| c.objects).map_or(1 << 18, |n| n.clamp(1 << 16, 1 << 18) as u32);
        let cfg = Config {
            offsets,
            ranges: kf.ranges,
            stack_fns: bpf::stack_fns(stacks),
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
        let tree = if scope.seeded() { Tree::scan(&roots, std::process::id(), ppids, |t| loaded.feed_traced(t), 8)? } else { tree };
        let (kernel, arch) = sys::uname();
        let about = Header {
            lazyvma: env!("CARGO_PKG_VERSION").into(),
            host: Some(crate::report::host()),
            kernel,
            arch,
            sizes: record::format::ObjectSizes { anon_vma: sizes.anon_vma.object_size, anon_vma_chain: sizes.anon_vma_chain.object_size },
            caches: Some(sizes.clone()),
            scope: scope.name().into(),
            pids: roots.clone(),
            cgroup: cgroup_dir.as_ref().map(|d| d.display().to_string()),
            locks_unavailable: lock_outcome.as_ref().err().cloned(),
            // A non-UTF-8 argument (a file name is bytes) is recorded and shown lossily.
            argv: opts.command.iter().map(|a| a.to_string_lossy().into_owned()).collect(),
            tree: meta::initial(&tree),
            stacks,
            backend: backend.iter().map(|c| c.doc()).collect(),
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
        // Our BTF parse (resolved into `kf.btf`) and aya's are gone: their pages (~26 MB of
        // the ~40 MB of heap here on 6.18) would stay with glibc, a trace of an idle scope's
        // RSS for its whole run.
        crate::trace::feed::seed::trim();
        // The tracer starts from the recorded tree, as a replay's does.
        let mut tracer = super::tracer(&about, syms, sizes, &opts);
        tracer.kernel_tally = kernel_tally;
        tracer.kernel_front = kernel_front;
        if let Some(mut w) = recording.take() {
            tracer.syms.track();
            w.header(&about)?;
            tracer.tap = Some(w);
        }
        let mut by_cgroup = opts.by_cgroup.then(|| ByCgroup::new(opts.cgroup_cap as usize));
        // The held command's first sight is now, before it runs.
        sight(&mut by_cgroup, &tracer);
        // -p / --cgroup: the processes already running are seeded from one snapshot, now that
        // the feed programs are attached (trace/feed/seed.rs). The pass runs on its own thread while
        // the loop drains the ring buffer into `seeding`, fed once the pass is in.
        let seeding = (scope.seeded() && tracer.feed.is_some()).then(|| {
            (
                Some(crate::trace::feed::seed::start(&mut loaded, &tracer.tree, tracer.knobs, btf_path, seed_facts, markers, tracer.kernel_front.is_some())),
                Held::default(),
            )
        });
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
                return Err(anyhow::anyhow!("stopped by a signal before `{cmd}` started: it was not run, nothing traced").context(ExitCode(130)));
            }
        }
        // Started: only now may the recording replace a file at its path.
        if let Some(w) = tracer.tap.as_mut() {
            w.commit()?;
        }
        let live: Box<dyn Write> =
            if opts.json { Box::new(crate::escape::Terminal::new(std::io::stderr())) } else { Box::new(crate::escape::Terminal::new(std::io::stdout())) };
        let next_row = start + opts.interval;
        let ring = Ring { scope, loaded, held, seeding, by_cgroup, stats_on, markers, start, live, header: false, next_row, status: None };
        Ok(Session { opts, tracer, about, backend, records: Records::Ring(Box::new(ring)) })
    }
}
