//! `trace -p`/`--cgroup`: seed the model with the processes already running, from one
//! iter/task_vma pass taken after the feed programs are attached.
//!
//! The pass is bracketed by two phase markers lazyvma sends itself (`madvise(0, 0, …)`,
//! recorded by `syscalls:sys_enter_madvise` in ring-buffer order, which is the order the
//! records were reserved in). For a process of the scope:
//! * a feed record before the start marker: its effect is in the snapshot; the feed had not
//!   seeded the process yet, so it is dropped;
//! * a record between the markers (a VMA syscall's exit, a prepare, fork, exec, exit):
//!   its effect may or may not be in the snapshot → not modelled, the record named;
//! * a VMA syscall in flight at the end marker (`SYSCALL_ARGS` holds its thread): its record
//!   comes after the end marker though it entered before → not modelled;
//! * a thread inside a VMA syscall, a page fault, or running (what it does is unknown) just
//!   after the start marker: a syscall that entered before the feed traced the process
//!   sends no record at all → not modelled;
//! * otherwise the process is seeded at the end marker and every later record is fed.
use anyhow::Context;
use lazyvma_model::{
    event::Pid,
    kernel::Kernel,
    knobs::Knobs,
    pair::Pair,
    seed::{Prepared, Seed},
    topology::{ProcessTopo, Topology},
    trace_abi::SYS_COUNT,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use crate::load::syscalls::syscall_ids;
use crate::record::format::SeedRec;
use crate::snapshot::{decode, reader};
use crate::trace::{ingest::bpf::Loaded, tree::pids::Tree};

/// Marker ids (behavior − MARKER_BASE) bracketing the pass; far above the workload's.
pub const START: u32 = 0x5e_ed00;
pub const END: u32 = 0x5e_ed01;
/// Sent once every process of the scope is in FEED_TRACED: a child forked before it may
/// have been forked before its parent was, and then the kernel does not follow it.
pub const TRACED: u32 = 0x5e_ed02;
/// Sent once before the programs detach: the trace's end as one point in the record stream
/// (`Tracer::ended`); they detach one by one, some still counting after others are gone.
pub const END_OF_TRACE: u32 = 0x5e_ed03;

/// One of the seed's own markers (the feed reads the counts at each).
pub fn is_seed_marker(id: u32) -> bool {
    [START, END, TRACED].contains(&id)
}

/// Between taking the pass and the feed reaching its end marker.
pub struct Pending {
    /// lazyvma's own tgid: only its markers count.
    pub tgid: u32,
    /// The pass: the candidates whole, the other processes as `Topology::foreign`.
    pub topo: Topology,
    pub knobs: Knobs,
    /// Candidates (tgids) and why each cannot be seeded, once known.
    pub candidates: Vec<u32>,
    pub reasons: BTreeMap<u32, String>,
    /// The start marker was seen.
    pub inside: bool,
    /// The TRACED (or start) marker was seen: forks from here are followed in the kernel.
    pub followed: bool,
    /// µs between the two markers, once the pass is taken.
    pub pass_us: Option<u64>,
}

/// What a knob sweep re-seeds from: what the seed read off the pass (the processes it
/// seeded, no others), the same for every knob value.
pub struct Start {
    pub prep: Prepared,
}

/// What the end marker gave the feed.
pub struct SeedEnd {
    pub start: Option<Start>,
    /// Live objects the seed added: eager AV, AVC, lazy AV, AVC.
    pub live: [i64; 4],
    /// Seeded processes sharing an anon_vma tree with a process not seeded, and why their
    /// rows are not the model's to match (what the kernel frees once the other lets go).
    pub partial: Vec<(usize, String)>,
    /// (tree index, tgid) of each process seeded.
    pub seeded: Vec<(usize, u32)>,
    pub reasons: BTreeMap<u32, String>,
}

pub use crate::trace::ingest::front::marker;

/// The pass on its own thread: the caller keeps draining the ring buffer meanwhile (a busy
/// system fills it in well under a second) and holds what it reads until `join`.
pub struct Running {
    handle: std::thread::JoinHandle<Pending>,
}

impl Running {
    pub fn done(&self) -> bool {
        self.handle.is_finished()
    }

    pub fn join(self) -> Pending {
        self.handle.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
    }
}

/// What the pass loads its iterator with, from the trace's `load::facts`: the offsets (our
/// parse is not made again). aya's parse is not shared: the reader's `EbpfLoader::new`
/// parses the BTF anyway, and the reader parses it after that copy is gone (one at a time),
/// where a shared one would be held beside it (8 MB more at `trace -p`'s peak).
pub struct Facts {
    /// The offset globals; `Err`: why our BTF parse gave none.
    pub offsets: Result<crate::load::btf::Offsets, String>,
}

/// Start the pass for the scope's processes now (see `Running`). A pass that fails leaves
/// every candidate unseeded with the reason; nothing here stops the trace.
/// `flush_front`: the slab programs count in `TALLY_FRONT`, flushed right after the end marker.
pub fn start(loaded: &mut Loaded, tree: &Tree, knobs: Knobs, btf_path: Option<&Path>, facts: Facts, markers: bool, flush_front: bool) -> Running {
    let candidates: Vec<u32> = tree.procs.iter().filter(|p| !p.exited).map(|p| p.tgid).collect();
    let mut p = Pending {
        tgid: std::process::id(),
        topo: Topology::default(),
        knobs,
        candidates,
        reasons: BTreeMap::new(),
        inside: false,
        followed: false,
        pass_us: None,
    };
    // A handle of its own on the feed's map: the thread reads it right after the end marker.
    let args = syscall_args(loaded);
    if markers {
        marker(TRACED);
    }
    let btf_path = btf_path.map(Path::to_path_buf);
    let handle = std::thread::Builder::new()
        .name("lazyvma-seed".into())
        .spawn(move || {
            pass(&mut p, args, btf_path.as_deref(), facts, markers, flush_front);
            p
        })
        .expect("spawning the seeding thread");
    Running { handle }
}

type Args = anyhow::Result<aya::maps::HashMap<aya::maps::MapData, u32, [u64; 8]>>;

fn syscall_args(loaded: &mut Loaded) -> Args {
    let map = loaded.ebpf_mut().map("SYSCALL_ARGS").context("map SYSCALL_ARGS missing from the BPF object")?;
    let id = match map {
        aya::maps::Map::LruHashMap(d) | aya::maps::Map::HashMap(d) => d.info()?.id(),
        _ => anyhow::bail!("map SYSCALL_ARGS is not a hash map"),
    };
    Ok(aya::maps::HashMap::try_from(aya::maps::Map::from_map_data(aya::maps::MapData::from_id(id)?)?)?)
}

fn pass(p: &mut Pending, args: Args, btf_path: Option<&Path>, facts: Facts, markers: bool, flush_front: bool) {
    if !markers {
        let why = "syscalls:sys_enter_madvise not attached: the snapshot cannot be placed in the record stream";
        p.reasons = p.candidates.iter().map(|&t| (t, why.to_string())).collect();
        return;
    }
    // The verifier's part before the start marker: the window holds only the pass itself.
    let loaded_iter = load(btf_path, facts);
    let t0 = std::time::Instant::now();
    marker(START);
    for &t in &p.candidates {
        if let Some(why) = busy(t) {
            p.reasons.entry(t).or_insert(why);
        }
    }
    // Read as the kernel writes it, straight into the topology (never the raw stream whole),
    // the processes outside the candidates only as far as the seed reads them (issue 9).
    let keep: HashSet<u32> = p.candidates.iter().copied().collect();
    let pass = loaded_iter.and_then(|mut bpf| decode::scope_topology(reader::open(&mut bpf)?, |pid| keep.contains(&pid)));
    // What the pass freed (the iter program's BTF, the reader's buffers) goes back now.
    trim();
    marker(END);
    // Every count before the end marker into the map before the feed reads it there (the
    // main thread handles the marker only after this thread is joined): a seeded process's
    // counts before the seed are what its model does not hold.
    if flush_front {
        crate::trace::ingest::front::flush();
    }
    p.pass_us = Some(t0.elapsed().as_micros() as u64);
    match pass {
        Ok((topo, stats)) => {
            // The other processes' links sorted (~2 M entries beside 1 M VMAs), after the
            // window.
            p.topo = topo.finish();
            // iter/task (no iter/task_vma): a process walked in part cannot be seeded.
            for c in stats.cut.iter().filter(|c| p.candidates.contains(&c.pid)) {
                let why = format!("the snapshot pass (iter/task) saw {} of its {} VMAs ({})", c.vmas_seen, c.map_count, c.why);
                p.reasons.entry(c.pid).or_insert(why);
            }
        }
        Err(e) => {
            let why = format!("the snapshot pass failed: {e:#}");
            for &t in &p.candidates {
                p.reasons.entry(t).or_insert_with(|| why.clone());
            }
        }
    }
    match args.and_then(|m| Ok(m.keys().collect::<Result<Vec<_>, _>>()?)) {
        Ok(tids) => {
            for tid in tids {
                if let Some(t) = tgid_of(tid).filter(|t| p.candidates.contains(t)) {
                    p.reasons.entry(t).or_insert_with(|| format!("thread {tid} was in a VMA syscall across the snapshot"));
                }
            }
        }
        Err(e) => {
            let why = format!("VMA syscalls in flight unknown: {e:#}");
            for &t in &p.candidates {
                p.reasons.entry(t).or_insert_with(|| why.clone());
            }
        }
    }
}

/// Hands the pages of freed memory back to the kernel (glibc keeps them, per arena).
pub(crate) fn trim() {
    #[cfg(target_env = "gnu")]
    // SAFETY: no argument but the pad to keep; glibc walks its own arenas under their locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn load(btf_path: Option<&Path>, facts: Facts) -> anyhow::Result<aya::Ebpf> {
    let offsets = facts.offsets.map_err(|e| anyhow::anyhow!("{e}"))?;
    // The seed builds its model from the anon_vmas' fields.
    reader::load(&offsets, btf_path, true)
}

/// Why a thread of `tgid` may be inside a VMA change the feed will never report, if so.
fn busy(tgid: u32) -> Option<String> {
    let ids = syscall_ids();
    let tasks = std::fs::read_dir(format!("/proc/{tgid}/task")).ok()?;
    for task in tasks.flatten() {
        let path = task.path().join("syscall");
        // A running thread's syscall is unknown; a few tries catch most at rest.
        let mut state = String::new();
        for _ in 0..5 {
            state = std::fs::read_to_string(&path).unwrap_or_default();
            if !state.starts_with("running") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let tid = task.file_name().to_string_lossy().into_owned();
        let first = state.split_whitespace().next().unwrap_or("");
        match first.parse::<i64>() {
            _ if first == "running" => return Some(format!("thread {tid} was running when the snapshot began (its syscall unknown)")),
            Ok(-1) => return Some(format!("thread {tid} was in the kernel outside a syscall (a fault?) when the snapshot began")),
            Ok(n) if ids[..SYS_COUNT].contains(&(n as u64)) => return Some(format!("thread {tid} was in syscall {n} (a VMA syscall) when the snapshot began")),
            _ => {}
        }
    }
    None
}

fn tgid_of(tid: u32) -> Option<u32> {
    let status = crate::sys::proc_text(format!("/proc/{tid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("Tgid:")).and_then(|t| t.trim().parse().ok())
}

impl Pending {
    /// What a recording keeps of the pass: a `SEED_PACKED` body (`record::format::seed_body`),
    /// read off the pass in place.
    pub fn record(&self) -> Vec<u8> {
        crate::record::format::seed_body(self.tgid, &self.topo, &self.candidates, &self.reasons, self.pass_us)
    }

    /// A replay's pending seed: the recorded pass under the replay's knobs.
    pub fn replayed(r: &SeedRec, knobs: Knobs) -> Pending {
        Pending {
            tgid: r.tgid,
            topo: r.topology.clone(),
            knobs,
            candidates: r.candidates.clone(),
            reasons: r.reasons.clone(),
            inside: false,
            followed: false,
            pass_us: r.pass_us,
        }
    }

    /// Every candidate not yet refused is refused for `why`.
    pub fn unseeded(&mut self, why: &str) {
        for &t in &self.candidates {
            self.reasons.entry(t).or_insert_with(|| why.to_string());
        }
    }

    /// A record of `tgid` that changes or may change its VMAs.
    pub fn touched(&mut self, tgid: u32, what: &str) {
        if self.inside && self.candidates.contains(&tgid) {
            self.reasons.entry(tgid).or_insert_with(|| format!("{what} raced the snapshot"));
        }
    }

    /// The end marker: seed every candidate with no reason against it into `pair`, which
    /// may already hold processes modelled from an exec since the trace began (`modelled`
    /// tells them by tree index: their exec started them from scratch, so they are neither
    /// seeded nor refused).
    pub fn end(mut self, tree: &Tree, kernel: Kernel, pair: &mut Pair, modelled: impl Fn(usize) -> bool) -> SeedEnd {
        let mut out = SeedEnd { start: None, seeded: vec![], reasons: BTreeMap::new(), live: [0; 4], partial: vec![] };
        if !self.inside {
            // Records between the markers could not be checked.
            self.unseeded("the snapshot's start marker was not seen (ring buffer records lost?)");
        }
        let present: HashSet<u32> = self.topo.processes.iter().map(|p| p.pid).collect();
        let mut pids: Vec<(Pid, Pid)> = Vec::new();
        let mut procs = Vec::new();
        // Only the processes read at the start: a child forked since may have been forked
        // before its parent was in FEED_TRACED (then none of its records come), and its
        // threads were not checked for syscalls in flight. It stays not modelled.
        for &t in &self.candidates {
            // The candidate's own entry, gone or not: one modelled from an exec since (and
            // maybe exited) is not refused.
            let entry = tree.procs.iter().rposition(|p| p.tgid == t);
            if entry.is_some_and(&modelled) {
                self.reasons.remove(&t);
                continue;
            }
            let proc = entry.filter(|&p| !tree.get(p).exited);
            let why = match proc {
                _ if self.reasons.contains_key(&t) => continue,
                None => "exited before the snapshot was placed".to_string(),
                Some(_) if !present.contains(&t) => "not in the snapshot (a kernel thread, or gone)".into(),
                Some(p) => {
                    pids.push((t, p as Pid + 1));
                    procs.push((p, t));
                    continue;
                }
            };
            self.reasons.insert(t, why);
        }
        if !pids.is_empty() {
            let seed = Seed { kernel, knobs: self.knobs, skip_bad: true };
            let (e0, l0) = pair.counts();
            // Who else links each anon_vma tree, before the pass goes into the seed (which
            // keeps only the processes it seeds: a pass of ≥ 1 M VMAs is not held twice).
            let others = others(&self.topo, &pids);
            let topo = std::mem::take(&mut self.topo);
            let r = seed.check_knobs().and_then(|()| seed.prepare_owned(topo, &pids)).and_then(|prep| {
                // The pass was read on the seeding thread, so into its own malloc arena:
                // what the model allocates here could not reuse it.
                trim();
                Ok((seed.apply_into(pair, &prep)?, prep))
            });
            match r {
                Ok((report, prep)) => {
                    for (t, why) in report.skipped {
                        self.reasons.insert(t, format!("refused by the seed: {why}"));
                    }
                    let (e, l) = pair.counts();
                    out.live = [
                        e.anon_vma.live as i64 - e0.anon_vma.live as i64,
                        e.anon_vma_chain.live as i64 - e0.anon_vma_chain.live as i64,
                        l.anon_vma.live as i64 - l0.anon_vma.live as i64,
                        l.anon_vma_chain.live as i64 - l0.anon_vma_chain.live as i64,
                    ];
                    out.seeded = procs.into_iter().filter(|(_, t)| report.seeded.contains(t)).collect();
                    out.partial = shared(&prep, others, &out.seeded);
                    out.start = Some(Start { prep });
                }
                Err(e) => {
                    for (t, _) in pids {
                        self.reasons.insert(t, format!("refused by the seed: {e}"));
                    }
                }
            }
        }
        out.reasons = self.reasons;
        out
    }
}

/// The root of every anon_vma tree a process of the pass not asked to be seeded links,
/// with the first such process: a candidate refused before the seed (kept whole in the
/// topology) first, then those outside the candidates (`Topology::foreign`, as far as they
/// meet the candidates). Where both link a tree, the candidate is named (the whole pass
/// named the first in pass order).
fn others(topo: &Topology, pids: &[(Pid, Pid)]) -> HashMap<u64, u32> {
    let mut out = HashMap::new();
    for p in topo.processes.iter().filter(|p| !pids.iter().any(|s| s.0 == p.pid)) {
        for r in roots(topo, p) {
            out.entry(r).or_insert(p.pid);
        }
    }
    for &(r, pid) in &topo.foreign.roots {
        out.entry(r).or_insert(pid);
    }
    out
}

fn roots(topo: &Topology, p: &ProcessTopo) -> HashSet<u64> {
    p.vmas.iter().flat_map(|v| v.chain.iter().map(|a| topo.anon_vmas.get(a).map_or(*a, |i| i.root))).collect()
}

/// Seeded processes whose anon_vma trees (roots) a process of the pass not seeded (`others`,
/// or one the seed refused) also links: the seed pins those anon_vmas
/// (`lazyvma_model::seed`), so when the kernel frees one after the other process lets go,
/// the model does not.
fn shared(prep: &Prepared, mut others: HashMap<u64, u32>, seeded: &[(usize, u32)]) -> Vec<(usize, String)> {
    let refused = prep.refused();
    for p in &refused.processes {
        for r in roots(refused, p) {
            others.entry(r).or_insert(p.pid);
        }
    }
    let mut out = Vec::new();
    for &(proc, tgid) in seeded {
        let Some(roots) = prep.roots(tgid) else { continue };
        // The lowest pid, not the first in `roots`' hash order: the same run reports the same.
        if let Some(other) = roots.iter().filter_map(|r| others.get(r)).min() {
            out.push((proc, format!("seeded sharing anon_vmas with pid {other}, not seeded: what the kernel frees once that process lets go is not modelled")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::feed::Feed;
    use lazyvma_model::topology::{AnonVmaInfo, ProcessTopo, VmaTopo};
    use lazyvma_model::trace_abi::{SyscallEvent, EV_SYSCALL, SYS_ENTER, SYS_EXECVE, SYS_MUNMAP};

    const ME: u32 = 7;

    /// Two running processes (100, 200), one written VMA each.
    fn pending() -> Pending {
        let mut topo = Topology::default();
        for (pid, av) in [(100u32, 0xa0u64), (200, 0xb0)] {
            let vma = VmaTopo { start: 0x1_0000_0000, end: 0x1_0000_4000, pgoff: 0x10_0000, flags: 3, anon_vma: Some(av), chain: vec![av], chain_len: 1 };
            topo.processes.push(ProcessTopo { pid, vmas: vec![vma], ..Default::default() });
            topo.anon_vmas.insert(av, AnonVmaInfo { root: av, parent: av, refcount: 1, num_children: 1, num_active_vmas: 1, degree: None });
        }
        Pending { tgid: ME, topo, knobs: Knobs::default(), candidates: vec![100, 200], reasons: BTreeMap::new(), inside: false, followed: false, pass_us: None }
    }

    fn munmap(tgid: u32) -> SyscallEvent {
        SyscallEvent { kind: EV_SYSCALL, pid: tgid, tgid, slot: SYS_MUNMAP as u32, args: [0x1_0000_0000, 0x4000, 0, 0, 0, 0], ret: 0, key: 0 }
    }

    #[test]
    fn a_record_between_the_markers_leaves_its_process_unseeded_and_later_ones_are_fed() {
        let tree = Tree::roots(&[100, 200]);
        let mut f = Feed::new("6.18.44", Knobs::default());
        f.seed = Some(pending());
        // Before the start marker: already in the snapshot, dropped.
        f.syscall(&tree, &munmap(200));
        f.seed_marker(&tree, &[], ME + 1, START); // another process's marker: not ours
        f.seed_marker(&tree, &[], ME, START);
        f.syscall(&tree, &munmap(100));
        f.seed_marker(&tree, &[], ME, END);
        let c = &f.coverage;
        assert_eq!(c.seeded, [200]);
        assert_eq!(c.not_seeded.get(&100).map(String::as_str), Some("munmap raced the snapshot"));
        assert_eq!(c.events_fed, 0);
        // After the end marker: fed, on the seeded state (−1 AV −1 AVC).
        f.syscall(&tree, &munmap(200));
        f.syscall(&tree, &munmap(100));
        assert_eq!((f.coverage.events_fed, f.coverage.model_errors), (1, 0));
        assert_eq!((f.eager.anon_vma.free, f.eager.anon_vma_chain.free), (1, 1));
    }

    #[test]
    fn a_process_exec_d_before_the_snapshot_does_not_refuse_the_others_and_work_before_the_seed_is_its_baseline() {
        let mut tree = Tree::roots(&[100, 200]);
        let mut f = Feed::new("6.18.44", Knobs::default());
        f.seed = Some(pending());
        f.seed_marker(&tree, &[], ME, TRACED);
        // 100 execs before the pass (its execve entered once everything was attached):
        // modelled from its exec, not seeded, not refused.
        f.syscall(&tree, &execve_enter(100));
        tree.exec(100);
        f.exec(&tree, 100, 0);
        f.seed_marker(&tree, &[], ME, START);
        let mut counts = crate::trace::counts::slab::SlabCounts::default();
        counts.add(crate::trace::counts::slab::Kind::AnonVma, true);
        let observed = [crate::trace::counts::slab::PhaseRow { proc: 1, tgid: 200, phase: None, counts }];
        f.seed_marker(&tree, &observed, ME, END);
        let c = &f.coverage;
        assert_eq!((c.seeded.as_slice(), c.not_seeded.len(), c.modelled), (&[200][..], 0, 2), "{:?}", c.not_seeded);
        assert_eq!(f.seeded_live, [1, 1, 0, 0], "lazy: a lone written VMA is LAZY");
        let row = f.rows.iter().find(|r| r.proc == 1).expect("200's row");
        assert_eq!((row.before_seed, row.eager), (counts, Default::default()));
        // Both models hold their process: 200's munmap frees its seeded objects.
        f.syscall(&tree, &munmap(200));
        assert_eq!((f.eager.anon_vma.free, f.coverage.model_errors), (1, 0));
    }

    fn execve_enter(tgid: u32) -> SyscallEvent {
        SyscallEvent { slot: SYS_EXECVE as u32 | SYS_ENTER, ..munmap(tgid) }
    }

    /// A fork record means the child joined FEED_TRACED at its fork; what it did before
    /// every program was attached (the TRACED marker) may be missing, an exec that entered
    /// after the marker starts it afresh.
    #[test]
    fn a_child_forked_before_the_scope_was_followed_is_modelled_from_an_exec_that_entered_after_it() {
        let mut tree = Tree::roots(&[100]);
        let mut f = Feed::new("6.18.44", Knobs::default());
        f.seed = Some(pending());
        tree.fork(100, 101);
        f.fork(&tree, 1, 0);
        tree.fork(100, 104);
        f.fork(&tree, 2, 0);
        f.syscall(&tree, &execve_enter(104));
        f.seed_marker(&tree, &[], ME, TRACED);
        tree.fork(101, 103);
        f.fork(&tree, 3, 0);
        tree.fork(100, 102);
        f.fork(&tree, 4, 0);
        for t in [101, 103, 102] {
            f.syscall(&tree, &execve_enter(t));
        }
        for t in [101, 103, 102, 104] {
            tree.exec(t);
            f.exec(&tree, t, 0);
        }
        assert_eq!(f.coverage.modelled, 3);
        f.finish(&tree, 0, &[]);
        assert_eq!(f.coverage.not_modelled, [100, 104]);
        let why: Vec<&str> = f.coverage.not_modelled_why.values().map(|(_, w)| w.as_str()).collect();
        assert!(why[0].contains("end marker was not seen") && why[1].contains("its exec too began before them"), "{why:?}");
        // 101, 103 and 102 exec'd an image the model never saw: their rows say so.
        for r in &f.rows {
            assert!([1, 3, 4].contains(&r.proc) && r.not_modelled.as_deref().is_some_and(|w| w.contains("entered the model at its exec")), "{r:?}");
        }
    }

    #[test]
    fn an_exec_that_entered_before_the_programs_were_attached_leaves_the_process_to_the_seed() {
        let mut tree = Tree::roots(&[100, 200]);
        let mut f = Feed::new("6.18.44", Knobs::default());
        f.seed = Some(pending());
        f.syscall(&tree, &execve_enter(100));
        f.seed_marker(&tree, &[], ME, TRACED);
        tree.exec(100);
        f.exec(&tree, 100, 0);
        f.seed_marker(&tree, &[], ME, START);
        f.seed_marker(&tree, &[], ME, END);
        assert_eq!((f.coverage.seeded.as_slice(), f.coverage.modelled), (&[100, 200][..], 2), "{:?}", f.coverage.not_seeded);
        // Its forks are followed as any seeded process's.
        tree.fork(100, 101);
        f.fork(&tree, 2, 0);
        assert_eq!(f.coverage.modelled, 3);
    }

    #[test]
    fn reasons_found_at_the_pass_and_a_process_missing_from_it_are_kept() {
        let tree = Tree::roots(&[100, 200, 300]);
        let mut f = Feed::new("6.18.44", Knobs::default());
        let mut p = pending();
        p.candidates.push(300);
        p.reasons.insert(100, "thread 101 was running when the snapshot began (its syscall unknown)".into());
        f.seed = Some(p);
        f.seed_marker(&tree, &[], ME, START);
        f.seed_marker(&tree, &[], ME, END);
        let c = &f.coverage;
        assert_eq!(c.seeded, [200]);
        assert!(c.not_seeded[&100].contains("running"));
        assert!(c.not_seeded[&300].contains("not in the snapshot"));
    }

    #[test]
    fn a_lost_marker_seeds_nothing_and_says_so() {
        let tree = Tree::roots(&[100, 200]);
        let mut f = Feed::new("6.18.44", Knobs::default());
        f.seed = Some(pending());
        f.seed_marker(&tree, &[], ME, END);
        assert!(f.coverage.seeded.is_empty());
        assert!(f.coverage.not_seeded[&200].contains("start marker was not seen"));
        let mut f = Feed::new("6.18.44", Knobs::default());
        f.seed = Some(pending());
        f.seed_marker(&tree, &[], ME, START);
        f.finish(&tree, 3, &[]);
        assert!(f.coverage.not_seeded[&100].contains("end marker was not seen"));
        assert_eq!(f.coverage.not_modelled, [100, 200]);
    }

    #[test]
    fn the_sweep_re_seeds_from_the_pass_and_past_the_cap_says_why_it_is_not_run() {
        let tree = Tree::roots(&[100, 200]);
        let mut f = Feed::new("6.18.44", Knobs::default());
        f.events_max = 1;
        f.seed = Some(pending());
        f.seed_marker(&tree, &[], ME, START);
        f.seed_marker(&tree, &[], ME, END);
        assert_eq!(f.seed_start.as_ref().map(|s| s.prep.pids().to_vec()), Some(vec![(100, 1), (200, 2)]));
        assert_eq!(crate::trace::out::model_view::sweep_not_run(&f), None);
        f.syscall(&tree, &munmap(100));
        f.syscall(&tree, &munmap(200));
        // Both applied and counted; one kept.
        assert_eq!((f.coverage.events_fed, f.events.len(), f.events_dropped), (2, 1, 1));
        assert_eq!((f.eager.anon_vma.free, f.lazy.anon_vma.free), (2, 0));
        let why = crate::trace::out::model_view::sweep_not_run(&f).unwrap();
        assert!(why.contains("1 model events past --model-events-max 1"), "{why}");
    }

    /// A process outside the candidates that links candidate 100's anon_vma (a child of it,
    /// not in the scope) makes 100's VMA TREE and flags it, whether the pass is kept whole
    /// or reduced as `pass` reads it; an unrelated one changes nothing.
    #[test]
    fn a_process_outside_the_scope_reads_the_same_whole_or_reduced() {
        let run = |reduce: bool| {
            let mut p = pending();
            let vma = |av: u64, chain: Vec<u64>| VmaTopo {
                start: 0x1_0000_0000,
                end: 0x1_0000_4000,
                flags: 3,
                anon_vma: Some(av),
                chain_len: chain.len() as u32,
                chain,
                ..Default::default()
            };
            p.topo.processes.insert(1, ProcessTopo { pid: 300, vmas: vec![vma(0xc0, vec![0xc0, 0xa0])], ..Default::default() });
            p.topo.processes.push(ProcessTopo { pid: 400, vmas: vec![vma(0xd0, vec![0xd0])], ..Default::default() });
            p.topo.anon_vmas.insert(0xc0, AnonVmaInfo { root: 0xa0, parent: 0xa0, refcount: 1, num_children: 0, num_active_vmas: 1, degree: None });
            p.topo.anon_vmas.insert(0xd0, AnonVmaInfo { root: 0xd0, parent: 0xd0, refcount: 1, num_children: 1, num_active_vmas: 1, degree: None });
            let a0 = p.topo.anon_vmas.get_mut(&0xa0).unwrap();
            (a0.refcount, a0.num_children) = (2, 2);
            if reduce {
                p.topo.reduce(|pid| pid == 100 || pid == 200);
                assert_eq!((p.topo.processes.len(), p.topo.anon_vmas.len(), p.topo.foreign.roots.as_slice()), (2, 2, &[(0xa0, 300)][..]));
            }
            let tree = Tree::roots(&[100, 200]);
            let mut f = Feed::new("6.18.44", Knobs::default());
            f.seed = Some(p);
            f.seed_marker(&tree, &[], ME, START);
            f.seed_marker(&tree, &[], ME, END);
            (f.coverage.seeded.clone(), f.seeded_live, f.partial.clone())
        };
        let whole = run(false);
        assert_eq!(whole.0, [100, 200]);
        assert_eq!(whole.1, [2, 2, 1, 1], "100's VMA TREE, 200's LAZY");
        assert!(whole.2.len() == 1 && whole.2[&0].contains("pid 300, not seeded"), "{:?}", whole.2);
        assert_eq!(run(true), whole);
    }

    #[test]
    fn a_replayed_pass_is_the_recorded_one_under_the_replay_s_knobs() {
        let mut p = pending();
        p.reasons.insert(100, "thread 101 was running".into());
        let mut k = Knobs::default();
        k.set("lazy_enabled=false").unwrap();
        let r: SeedRec = crate::record::format::seed_from_body(&p.record()).unwrap();
        let q = Pending::replayed(&r, k);
        assert_eq!((q.tgid, &q.topo, &q.candidates, &q.reasons, q.knobs, q.inside), (p.tgid, &p.topo, &p.candidates, &p.reasons, k, false));
    }
}
