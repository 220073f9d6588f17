//! Replays synthetic event streams through eager + lazy together (`Pair::apply`).
//!
//! `cargo bench -p lazyvma-model` prints, before criterion's own report:
//! * events/s of a 10 M-event replay on one core, the median of `LAZYVMA_BENCH_RUNS` runs
//!   (default 5; `LAZYVMA_BENCH_EVENTS` changes the 10 M, e.g. for callgrind), each event
//!   on a process picked at random (the headline); then the same stream shape in bursts of
//!   16 events per process (`LAZYVMA_BENCH_BURST=0` skips it);
//! * heap bytes per live VMA, from a counting global allocator: every byte both models
//!   hold, divided by the VMAs mapped, for a fork-heavy population and for the replay's
//!   end state.

use criterion::{Criterion, Throughput};
use lazyvma_model::event::{vm, Event, FaultKind, RmapCaller, PAGE_SIZE};
use lazyvma_model::kernel::Kernel;
use lazyvma_model::knobs::Knobs;
use lazyvma_model::pair::Pair;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

struct Counting;
static HEAP: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        HEAP.fetch_add(l.size(), Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        HEAP.fetch_sub(l.size(), Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        HEAP.fetch_add(n, Relaxed);
        HEAP.fetch_sub(l.size(), Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

const SLOTS: u64 = 16;
const PAGES: u64 = 16;

fn slot(s: u64) -> u64 {
    0x1000_0000 + s * 0x10_0000
}

/// A steady-state workload: faults and rmap walks dominate, with mprotect splits and
/// re-merges, munmap/mmap churn, and forks/exits that keep the population near `procs`.
/// Forks come from processes at most 3 generations deep (zygote/shell-like trees): random
/// parents would grow lineages hundreds deep, whose O(L) chains no real system has.
struct Gen {
    rng: u64,
    live: Vec<u32>,
    mapped: Vec<u16>, // per pid: which slots are mapped
    depth: Vec<u8>,   // per pid: fork generation (forks come from shallow parents)
    next_pid: u32,
    procs: usize,
    /// Events per pick of a process: 1 is the uniform headline workload; more replays
    /// per-task bursts, as a real trace's ring buffer delivers them (second workload).
    burst: u32,
    /// Index in `live` of the process of the current burst, and events left in it.
    cur: usize,
    left: u32,
}

impl Gen {
    fn rand(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }
    fn new(procs: usize, burst: u32, out: &mut Vec<Event>) -> Gen {
        let mut g =
            Gen { rng: 0x9e37_79b9_7f4a_7c15, live: vec![], mapped: vec![0; 1 << 20], depth: vec![0; 1 << 20], next_pid: 2, procs, burst, cur: 0, left: 0 };
        out.push(Event::Spawn { pid: 1 });
        for s in 0..SLOTS {
            out.push(Event::Map { pid: 1, start: slot(s), pages: PAGES, flags: vm::READ | vm::WRITE });
            out.push(Event::Fault { pid: 1, addr: slot(s), kind: FaultKind::Write });
        }
        g.mapped[1] = u16::MAX;
        g.live.push(1);
        g
    }
    // Always inlined into `replay`, as it was before `sweep_cost` became a second caller.
    #[inline(always)]
    fn next(&mut self) -> Event {
        let r = self.rand();
        if self.left == 0 || self.cur >= self.live.len() {
            self.cur = (r >> 8) as usize % self.live.len();
            self.left = self.burst;
        }
        self.left -= 1;
        let i = self.cur;
        let pid = self.live[i];
        let m = self.mapped[pid as usize];
        let s = (r >> 32) % SLOTS;
        let addr = slot(s) + ((r >> 40) % PAGES) * PAGE_SIZE;
        let here = m & (1 << s) != 0;
        match r % 100 {
            0..=39 if here => Event::Fault { pid, addr, kind: FaultKind::Write },
            40..=49 if here => Event::Fault { pid, addr, kind: FaultKind::Read },
            50..=69 if here => Event::RmapWalk { pid, addr, caller: RmapCaller::Reclaim },
            70..=75 if here => Event::Mprotect { pid, start: slot(s) + PAGE_SIZE, pages: 1, prot: vm::READ },
            76..=81 if here => Event::Mprotect { pid, start: slot(s) + PAGE_SIZE, pages: 1, prot: vm::READ | vm::WRITE },
            82..=87 if here => {
                self.mapped[pid as usize] &= !(1 << s);
                Event::Munmap { pid, start: slot(s), pages: PAGES }
            }
            _ if !here && r % 100 < 94 => {
                self.mapped[pid as usize] |= 1 << s;
                Event::Map { pid, start: slot(s), pages: PAGES, flags: vm::READ | vm::WRITE }
            }
            94..=96 if self.live.len() < self.procs => self.fork(if self.depth[pid as usize] < 3 { pid } else { 1 }),
            97..=99 if self.live.len() > 1 && pid != 1 => {
                self.live.swap_remove(i);
                self.left = 0;
                Event::Exit { pid }
            }
            _ if here => Event::RmapWalk { pid, addr, caller: RmapCaller::Unmap },
            _ => {
                self.mapped[pid as usize] |= 1 << s;
                Event::Map { pid, start: slot(s), pages: PAGES, flags: vm::READ | vm::WRITE }
            }
        }
    }
    fn fork(&mut self, parent: u32) -> Event {
        let child = self.next_pid;
        self.next_pid = if self.next_pid as usize + 1 >= self.mapped.len() { 2 } else { self.next_pid + 1 };
        self.mapped[child as usize] = self.mapped[parent as usize];
        self.depth[child as usize] = self.depth[parent as usize] + 1;
        self.live.push(child);
        Event::Fork { parent, child }
    }
}

/// This thread's time on a CPU (ns), from the scheduler: other processes sharing the
/// machine stretch the wall clock, not this. `None` without schedstats.
fn cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat").ok()?.split_whitespace().next()?.parse().ok()
}

/// Events per second: of this thread's CPU time when the kernel reports it, else wall time.
struct Rate {
    cpu: Option<f64>,
    wall: f64,
}

fn replay(n: usize, procs: usize, burst: u32) -> (Rate, Pair) {
    let mut pair = Pair::new(Kernel::V6_18, Knobs::default());
    let mut setup = Vec::new();
    let mut g = Gen::new(procs, burst, &mut setup);
    for ev in &setup {
        pair.apply(ev).unwrap();
    }
    let (t, c) = (Instant::now(), cpu_ns());
    for _ in 0..n {
        // The generator only emits events both models accept.
        pair.apply(&g.next()).expect("replay");
    }
    let cpu = c.zip(cpu_ns()).map(|(a, b)| n as f64 / ((b - a) as f64 / 1e9));
    (Rate { cpu, wall: n as f64 / t.elapsed().as_secs_f64() }, pair)
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Heap bytes live now above `base`, per VMA mapped in the pair's eager half (both halves
/// map the same VMAs).
fn per_vma(base: usize, pair: &Pair) -> (usize, f64) {
    let bytes = HEAP.load(Relaxed) - base;
    (bytes, bytes as f64 / pair.eager().mapped_vmas() as f64)
}

/// 50,000 children of one 16-VMA parent, each writing 8 of its VMAs (a fork server's or
/// a shell's children before exec): the shape where eager allocates the most per VMA.
fn memory_forked() {
    let procs = 50_000u32;
    let mut evs = Vec::new();
    Gen::new(1, 1, &mut evs);
    for p in 2..procs + 2 {
        evs.push(Event::Fork { parent: 1, child: p });
        for s in (0..SLOTS).step_by(2) {
            evs.push(Event::Fault { pid: p, addr: slot(s), kind: FaultKind::Write });
        }
    }
    let base = HEAP.load(Relaxed);
    let mut pair = Pair::new(Kernel::V6_18, Knobs::default());
    for ev in &evs {
        pair.apply(ev).unwrap();
    }
    let (bytes, per) = per_vma(base, &pair);
    let (e, l) = pair.counts();
    let vmas = pair.eager().mapped_vmas();
    println!(
        "memory, forked: {procs} processes, {vmas} live VMAs, {} eager + {} lazy AVs, {} eager + {} lazy AVCs: \
         {bytes} heap bytes = {per:.1} B per live VMA (eager+lazy together; by capacity eager alone {} B, lazy alone {} B)",
        e.anon_vma.live,
        l.anon_vma.live,
        e.anon_vma_chain.live,
        l.anon_vma_chain.live,
        pair.eager().heap_bytes() / vmas,
        pair.lazy().heap_bytes() / vmas,
    );
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `runs` replays of `n` events; prints each and the medians.
fn workload(label: &str, n: usize, runs: usize, burst: u32) {
    let (mut cpu, mut wall) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let base = HEAP.load(Relaxed);
        let (rate, pair) = replay(n, 2_000, burst);
        let (bytes, per) = per_vma(base, &pair);
        let (e, l) = pair.counts();
        println!(
            "{label}: {n} events through eager+lazy in one thread: {:.2} M events/s of CPU time, {:.2} M/s wall \
             ({} processes, {} VMAs at the end, peak {}; AVs live eager {} lazy {}; {bytes} heap bytes = {per:.1} B per live VMA)",
            rate.cpu.unwrap_or(f64::NAN) / 1e6,
            rate.wall / 1e6,
            pair.eager().processes(),
            pair.eager().mapped_vmas(),
            e.vm_area_struct.peak,
            e.anon_vma.live,
            l.anon_vma.live,
        );
        cpu.extend(rate.cpu);
        wall.push(rate.wall);
    }
    let cpu = if cpu.is_empty() { "no schedstat".into() } else { format!("{:.2} M events/s of CPU time", median(cpu) / 1e6) };
    println!("{label}: median of {runs}: {cpu}, {:.2} M events/s wall", median(wall) / 1e6);
}

/// One `sweep` of `n` uniform events against one `Pair` replay of the same stream.
fn sweep_cost(n: usize) {
    let mut evs = Vec::new();
    let mut g = Gen::new(2_000, 1, &mut evs);
    evs.extend((0..n).map(|_| g.next()));
    // CPU time where the kernel reports it: the other builds stretch the wall clock.
    let secs = |f: &mut dyn FnMut()| {
        let (t, c) = (Instant::now(), cpu_ns());
        f();
        c.zip(cpu_ns()).map_or(t.elapsed().as_secs_f64(), |(a, b)| (b - a) as f64 / 1e9)
    };
    let one = secs(&mut || {
        let mut pair = Pair::new(Kernel::V6_18, Knobs::default());
        for ev in &evs {
            pair.apply(ev).unwrap();
        }
    });
    let mut s = None;
    let all = secs(&mut || s = Some(lazyvma_model::sweep::sweep(&evs, Kernel::V6_18, &Knobs::default()).unwrap()));
    let s = s.expect("swept");
    let values: usize = s.sweep.values().map(|v| v.len()).sum();
    println!(
        "sweep: {n} events, {} knobs, {values} values ({} runs): {all:.2} s of CPU time, {:.1}x one replay ({one:.2} s)",
        s.sweep.len(),
        values - s.sweep.len() + 1,
        all / one
    );
}

fn main() {
    let n = env("LAZYVMA_BENCH_EVENTS", 10_000_000);
    let runs = env("LAZYVMA_BENCH_RUNS", 5).max(1);
    // The headline (the target is judged on it): every event picks its process at random.
    workload("replay", n, runs, 1);
    // Secondary: 16 events per process in a row, as per-task bursts arrive from a trace.
    if env("LAZYVMA_BENCH_BURST", 1) != 0 {
        workload("replay, bursts of 16", n, runs, 16);
    }
    memory_forked();
    // The knob sweep's cost (issue 5): off by default, so the timed runs above stay as they were.
    let n = env("LAZYVMA_BENCH_SWEEP", 0);
    if n > 0 {
        sweep_cost(n);
    }

    let mut c = Criterion::default().sample_size(10).configure_from_args();
    let mut g = c.benchmark_group("replay");
    g.throughput(Throughput::Elements(1_000_000));
    g.bench_function("eager+lazy 1M events", |b| b.iter(|| replay(1_000_000, 2_000, 1).1));
    g.finish();
    c.final_summary();
}
