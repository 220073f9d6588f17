//! `lazyvma-workload SCENARIO [-n N] [--hold]`: processes of known anon_vma layout for tests,
//! benchmarks and demos (spec §5/§6). Scenarios, phase markers and the expected eager counts
//! are listed in docs/workload.md.
//!
//! Exit codes: 0 done, 1 the scenario broke, 2 bad arguments, 3 the environment lacks what
//! the scenario needs (KSM, THP, swap, NUMA, root, page_idle).
use clap::{Parser, ValueEnum};

// A bin's crate root resolves `mod x` next to itself, so the modules name their directory.
#[macro_use]
#[path = "workload/out.rs"]
mod out;
#[path = "workload/contend.rs"]
mod contend;
#[path = "workload/fail.rs"]
mod fail;
#[path = "workload/forks.rs"]
mod forks;
#[path = "workload/loops.rs"]
mod loops;
#[path = "workload/procs.rs"]
mod procs;
#[path = "workload/rmap.rs"]
mod rmap;
#[path = "workload/single.rs"]
mod single;
#[path = "workload/sysfs.rs"]
mod sysfs;
#[path = "workload/vfork.rs"]
mod vfork;
#[path = "workload/vma.rs"]
mod vma;
#[path = "workload/zygote.rs"]
mod zygote;

use fail::Res;
use out::{marker, Phase};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Write every page of the N VMAs, exit.
    Touch,
    /// Read every page (zero-page PTE faults only), exit.
    TouchRead,
    /// Write, fork a child that does not write; the child exits, then the parent.
    Fork,
    /// Fork without touching the VMAs first.
    ForkUntouched,
    /// Write, then P→C1→C2→C3, all alive at once; exits leaf first.
    ForkChain,
    /// Write, fork; the child execs `/proc/self/exe noop` at once.
    ForkExec,
    /// Per slot, two adjacent VMAs differing only in PROT_EXEC, both written.
    Adjacent,
    /// P→C→G; C exits; G forks H, whose VMAs reuse C's orphaned anon_vma.
    Reuse,
    /// Write, vfork; the vfork child forks a watcher and exits; P execs noop, held until the
    /// watcher leaves (busybox timeout's shape: the watcher's fork, run by the vfork child,
    /// copies the mm the vfork child shares with P; P's exec then tears its image down while
    /// the watcher's anon_vmas still pin P's).
    VforkFork,
    /// Write, mprotect the middle page PROT_READ (2 splits), then restore (merge).
    Split,
    /// Write, mremap each whole VMA to a non-adjacent address.
    Mremap,
    /// Write, munmap each whole VMA.
    Munmap,
    /// Write, munmap the middle page of each VMA.
    MunmapHole,
    /// A few threads write the VMAs (shared mm: no fork cost).
    Threads,
    /// Write identical pages, MADV_MERGEABLE, wait for ksmd if it runs.
    Ksm,
    /// 2 MiB regions with MADV_HUGEPAGE, one read fault each.
    Thp,
    /// Write, MADV_PAGEOUT (reclaim rmap walks; needs swap).
    Pageout,
    /// Write, set the pages idle in /sys/kernel/mm/page_idle/bitmap (root).
    PageIdle,
    /// Write, move_pages(2) every page to another NUMA node.
    Migrate,
    /// Map the VMAs and touch nothing (also the exec target of fork-exec).
    Noop,
    /// Map, then MADV_POPULATE_WRITE each VMA: prepares by GUP, with no user fault of their own.
    Populate,
    /// Map, then write each VMA through /proc/self/mem: prepares by GUP (FOLL_FORCE) inside
    /// write(2), outside any VMA syscall: placed only where the prepare hook attaches.
    ProcMem,
    /// Write, fork 32 children that split/merge the VMAs and fork/exit for 1 s: root rwsem contention.
    Contend,
    /// Benchmark loops (`--loops`, elapsed_ns= on the done line): fork+exit of the written VMAs.
    ForkLoop,
    /// mmap, write, munmap the N VMAs.
    FaultLoop,
    /// Write, MADV_PAGEOUT the N VMAs (needs swap).
    PageoutLoop,
    /// move_pages(2) the N VMAs' pages between two NUMA nodes.
    MigrateLoop,
    /// --loops (default 60,000) one-page written VMAs and 16 forked children: ≥ 1 M VMAs.
    Manyvmas,
    /// Android's fork server: write N, fork --apps apps that write half of it and map their own.
    Zygote,
}

impl Scenario {
    fn name(self) -> &'static str {
        use Scenario::*;
        match self {
            Touch => "touch",
            TouchRead => "touch-read",
            Fork => "fork",
            ForkUntouched => "fork-untouched",
            ForkChain => "fork-chain",
            ForkExec => "fork-exec",
            Adjacent => "adjacent",
            Reuse => "reuse",
            VforkFork => "vfork-fork",
            Split => "split",
            Mremap => "mremap",
            Munmap => "munmap",
            MunmapHole => "munmap-hole",
            Threads => "threads",
            Ksm => "ksm",
            Thp => "thp",
            Pageout => "pageout",
            PageIdle => "page-idle",
            Migrate => "migrate",
            Noop => "noop",
            Populate => "populate",
            ProcMem => "proc-mem",
            Contend => "contend",
            ForkLoop => "fork-loop",
            FaultLoop => "fault-loop",
            PageoutLoop => "pageout-loop",
            MigrateLoop => "migrate-loop",
            Manyvmas => "manyvmas",
            Zygote => "zygote",
        }
    }

    fn forks(self) -> bool {
        use Scenario::*;
        matches!(self, Fork | ForkUntouched | ForkChain | ForkExec | Reuse | VforkFork | Contend | ForkLoop | Manyvmas | Zygote)
    }

    /// `--loops` when not given.
    fn loops(self) -> usize {
        use Scenario::*;
        match self {
            ForkLoop => 2000,
            FaultLoop => 500,
            PageoutLoop | MigrateLoop => 200,
            Manyvmas => 60_000,
            _ => 0,
        }
    }
}

#[derive(Parser)]
#[command(name = "lazyvma-workload", version, about = "Processes of known anon_vma layout (see docs/workload.md)")]
struct Cli {
    scenario: Scenario,
    /// Number of test VMAs, at 0x1_0000_0000 * (i + 1); 0 runs the same code as a baseline.
    #[arg(short = 'n', default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=vma::MAX_N as i64))]
    n: u32,
    /// Each live process prints `ready role=R pid=P` when set up, then waits for stdin EOF.
    #[arg(long)]
    hold: bool,
    /// Run as a helper of another scenario (fork-exec's child): this role in the ready line,
    /// no done line.
    #[arg(long, hide = true)]
    role: Option<String>,
    /// *-loop scenarios: iterations; manyvmas: VMAs of the parent (default: the scenario's).
    #[arg(long)]
    loops: Option<usize>,
    /// zygote: the apps forked from the preloaded parent.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    apps: u32,
}

/// What every scenario gets.
pub struct Ctx {
    pub n: usize,
    pub hold: bool,
    /// The top process's role in the ready line.
    pub role: &'static str,
    /// `--loops`, or the scenario's default.
    pub loops: usize,
    /// zygote's app count.
    pub apps: usize,
}

/// What the done line reports: test pages the scenario faulted, plus one scenario-specific
/// count (pages merged, moved, paged out, idle).
pub struct Done {
    pub pages: usize,
    pub extra: Option<(&'static str, u64)>,
}

impl Done {
    pub fn pages(pages: usize) -> Self {
        Done { pages, extra: None }
    }
}

fn run(s: Scenario, c: &Ctx) -> Res<Done> {
    use Scenario::*;
    match s {
        Touch => single::touch(c),
        TouchRead => single::touch_read(c),
        Noop => single::noop(c),
        Populate => single::populate(c),
        ProcMem => single::proc_mem(c),
        Contend => contend::contend(c),
        Zygote => zygote::zygote(c, c.apps),
        Adjacent => single::adjacent(c),
        Split => single::split(c),
        Mremap => single::mremap(c),
        Munmap => single::munmap(c, false),
        MunmapHole => single::munmap(c, true),
        Threads => single::threads(c),
        Fork => forks::fork(c, true),
        ForkUntouched => forks::fork(c, false),
        ForkChain => forks::chain(c),
        ForkExec => forks::exec(c),
        Reuse => forks::reuse(c),
        VforkFork => vfork::vfork_fork(c),
        Ksm => rmap::ksm(c),
        Thp => rmap::thp(c),
        Pageout => rmap::pageout(c),
        PageIdle => rmap::page_idle(c),
        Migrate => rmap::migrate(c),
        ForkLoop => loops::fork_loop(c),
        FaultLoop => loops::fault_loop(c),
        PageoutLoop => loops::pageout_loop(c),
        MigrateLoop => loops::migrate_loop(c),
        Manyvmas => loops::manyvmas(c),
    }
}

fn main() {
    let cli = Cli::parse();
    // A helper role lives as long as the process; leaking it keeps `Ctx` simple.
    let helper = cli.role.is_some();
    let role: &'static str = match cli.role {
        Some(r) => Box::leak(r.into_boxed_str()),
        None if cli.scenario.forks() => "parent",
        None => "main",
    };
    let c = Ctx { n: cli.n as usize, hold: cli.hold, role, loops: cli.loops.unwrap_or(cli.scenario.loops()), apps: cli.apps as usize };
    marker(Phase::Start);
    match run(cli.scenario, &c) {
        Ok(d) => {
            if !helper {
                let (k, v) = d.extra.map_or(("", 0), |(k, v)| (k, v));
                if k.is_empty() {
                    say!("done scenario={} n={} pages={} pid={}", cli.scenario.name(), c.n, d.pages, out::pid());
                } else {
                    say!("done scenario={} n={} pages={} pid={} {k}={v}", cli.scenario.name(), c.n, d.pages, out::pid());
                }
            }
            exit(0)
        }
        Err(e) => {
            warn!("{}: {e}", cli.scenario.name());
            exit(e.code())
        }
    }
}

/// `_exit`: no atexit handlers, which would fault in pages of their own after the marker and
/// blur the exit phase. All output went out with write(2) already.
fn exit(code: i32) -> ! {
    marker(Phase::Exit);
    unsafe { libc::_exit(code) }
}
