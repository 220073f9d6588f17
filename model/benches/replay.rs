//! Replays synthetic event streams through eager + lazy together.
//!
//! `cargo bench -p lazyvma-model` prints, before criterion's own report:
//! * events/s for one 10 M-event replay on one core (both models see every event);
//! * heap bytes per live VMA, measured with a counting global allocator over a steady
//!   population of forked processes (both models' structures, divided by the VMAs mapped).

use criterion::{Criterion, Throughput};
use lazyvma_model::eager::Machine;
use lazyvma_model::event::{vm, Event, FaultKind, RmapCaller, PAGE_SIZE};
use lazyvma_model::kernel::Kernel;
use lazyvma_model::knobs::Knobs;
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
}

impl Gen {
    fn rand(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }
    fn new(procs: usize, out: &mut Vec<Event>) -> Gen {
        let mut g = Gen { rng: 0x9e37_79b9_7f4a_7c15, live: vec![], mapped: vec![0; 1 << 20], depth: vec![0; 1 << 20], next_pid: 2, procs };
        out.push(Event::Spawn { pid: 1 });
        for s in 0..SLOTS {
            out.push(Event::Map { pid: 1, start: slot(s), pages: PAGES, flags: vm::READ | vm::WRITE });
            out.push(Event::Fault { pid: 1, addr: slot(s), kind: FaultKind::Write });
        }
        g.mapped[1] = u16::MAX;
        g.live.push(1);
        g
    }
    fn next(&mut self) -> Event {
        let r = self.rand();
        let i = (r >> 8) as usize % self.live.len();
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

fn replay(n: usize, procs: usize) -> (f64, Machine, Machine) {
    let mut eager = Machine::eager(Kernel::V6_18);
    let mut lazy = Machine::lazy(Kernel::V6_18, Knobs::default());
    let mut setup = Vec::new();
    let mut g = Gen::new(procs, &mut setup);
    for ev in &setup {
        eager.apply(ev).unwrap();
        lazy.apply(ev).unwrap();
    }
    let t = Instant::now();
    for _ in 0..n {
        let ev = g.next();
        // The generator only emits events both models accept.
        eager.apply(&ev).expect("eager");
        lazy.apply(&ev).expect("lazy");
    }
    (n as f64 / t.elapsed().as_secs_f64(), eager, lazy)
}

fn memory() {
    let base = HEAP.load(Relaxed);
    let mut eager = Machine::eager(Kernel::V6_18);
    let mut lazy = Machine::lazy(Kernel::V6_18, Knobs::default());
    let mut evs = Vec::new();
    Gen::new(1, &mut evs);
    let procs = 50_000u32;
    for p in 2..procs + 2 {
        evs.push(Event::Fork { parent: 1, child: p });
        for s in (0..SLOTS).step_by(2) {
            evs.push(Event::Fault { pid: p, addr: slot(s), kind: FaultKind::Write });
        }
    }
    let ev_bytes = HEAP.load(Relaxed) - base;
    for ev in &evs {
        eager.apply(ev).unwrap();
        lazy.apply(ev).unwrap();
    }
    drop(evs);
    let total = HEAP.load(Relaxed) - base - ev_bytes.min(HEAP.load(Relaxed) - base);
    let vmas = eager.mapped_vmas();
    let total = HEAP.load(Relaxed).saturating_sub(base).max(total);
    println!(
        "memory: {procs} forked processes, {vmas} live VMAs, {} eager + {} lazy AVs, {} eager + {} lazy AVCs: \
         {total} heap bytes = {:.1} B per live VMA (eager+lazy together; eager alone {} B, lazy alone {} B by capacity)",
        eager.counts().anon_vma.live,
        lazy.counts().anon_vma.live,
        eager.counts().anon_vma_chain.live,
        lazy.counts().anon_vma_chain.live,
        total as f64 / vmas as f64,
        eager.heap_bytes() / vmas,
        lazy.heap_bytes() / vmas,
    );
}

fn main() {
    let n = 10_000_000;
    let (rate, e, l) = replay(n, 2_000);
    println!(
        "replay: {n} events through eager+lazy in one thread: {:.2} M events/s ({} processes, {} VMAs at the end; eager {} AV live, lazy {})",
        rate / 1e6,
        e.processes(),
        e.mapped_vmas(),
        e.counts().anon_vma.live,
        l.counts().anon_vma.live
    );
    memory();

    let mut c = Criterion::default().sample_size(10).configure_from_args();
    let mut g = c.benchmark_group("replay");
    g.throughput(Throughput::Elements(1_000_000));
    g.bench_function("eager+lazy 1M events", |b| b.iter(|| replay(1_000_000, 2_000).0));
    g.finish();
    c.final_summary();
}
