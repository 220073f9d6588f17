//! `lazyvma`: what would ANON_VMA_LAZY save on this workload, measured on an unpatched kernel.
//! A thin main: the flags, then the library's command (`lazyvma::cli`).
use clap::{CommandFactory, Parser, Subcommand};
use lazyvma::cli;

#[derive(Parser)]
#[command(name = "lazyvma", version, about, propagate_version = true)]
struct Cli {
    /// BTF of the kernel to observe (default: /sys/kernel/btf/vmlinux).
    #[arg(long, global = true, value_name = "PATH")]
    btf: Option<std::path::PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// What this kernel lets lazyvma observe, found by trying.
    Doctor(cli::doctor::Args),
    /// One iter/task_vma pass: anon_vma topology now, and what ANON_VMA_LAZY would hold (root).
    Snapshot(cli::snapshot::Args),
    /// Run a scenario file through the eager and lazy models (no root needed).
    Model(cli::model::Args),
    /// Observed anon_vma / anon_vma_chain allocations and frees of CMD, pids or the system.
    Trace(cli::trace::Args),
    /// The final report of a `trace -o` recording, without root (knobs: as `model`).
    Replay(cli::replay::Args),
    /// Render reports (snapshot -j, trace -j, merge) as text, markdown, JSON or HTML.
    Report(cli::report::Args),
    /// Merge reports of many hosts into one fleet report (counts summed, histograms added).
    Merge(cli::merge::Args),
    /// Trace the whole system continuously and serve OpenMetrics for Prometheus on /metrics.
    Serve(cli::serve::Args),
}

/// Whether fd 1 was closed when the process started. Read before Rust's runtime starts:
/// it reopens a closed fd 1 on /dev/null, after which `>&-` looks like `>/dev/null`.
static STDOUT_CLOSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[used]
#[link_section = ".init_array"]
static CHECK_STDOUT: extern "C" fn() = {
    extern "C" fn check() {
        // SAFETY: F_GETFD on a descriptor number has no side effect.
        let closed = unsafe { libc::fcntl(1, libc::F_GETFD) } < 0;
        STDOUT_CLOSED.store(closed, std::sync::atomic::Ordering::Relaxed);
    }
    check
};

fn main() {
    let cli = Cli::try_parse().unwrap_or_else(|e| cli::usage_error(e, Cli::command()));
    // A report piped into `head` ends as other Unix tools do, not with a "failed printing
    // to stdout" panic. Not trace and serve: a peer that closes their pipes and sockets is
    // an error for them to handle, not a reason to die.
    if !matches!(cli.cmd, Cmd::Trace(_) | Cmd::Serve(_)) {
        // SAFETY: no other thread exists yet; SIG_DFL is a valid disposition.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    // Rust's stdout drops writes to a closed fd 1 silently: a report nobody can see would exit 0.
    let to_stdout = match &cli.cmd {
        Cmd::Serve(_) => false,
        Cmd::Report(a) => a.out.is_none(),
        Cmd::Merge(a) => a.out.is_none(),
        _ => true,
    };
    if to_stdout && STDOUT_CLOSED.load(std::sync::atomic::Ordering::Relaxed) {
        eprintln!("lazyvma: stdout is closed: the output would be lost (redirect it, e.g. >/dev/null)");
        std::process::exit(1);
    }
    let res = match cli.cmd {
        Cmd::Doctor(a) => cli::doctor::run(a, cli.btf.as_deref()),
        Cmd::Snapshot(a) => cli::snapshot::run(a, cli.btf.as_deref()),
        Cmd::Model(a) => cli::model::run(a, cli.btf.as_deref()),
        Cmd::Trace(a) => cli::trace::run(a, cli.btf.as_deref()),
        Cmd::Replay(a) => cli::replay::run(a),
        Cmd::Report(a) => cli::report::run(a),
        Cmd::Merge(a) => cli::merge::run(a),
        Cmd::Serve(a) => cli::serve::run(a, cli.btf.as_deref()),
    };
    if let Err(e) = res {
        let code = e.downcast_ref::<cli::ExitCode>().map_or(1, |c| c.0);
        eprintln!("lazyvma: {}", cli::error_line(&e));
        std::process::exit(code);
    }
}
