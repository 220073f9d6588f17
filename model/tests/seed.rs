//! A Pair seeded from a topology behaves as the Pair the topology was read from.
//!
//! Round trip: run a random stream, export the eager half as a snapshot would read it
//! (`seed::to_topology`), seed a new Pair from it, apply the same further events to both.
//! EAGER must match exactly, always. LAZY is seeded from `snapshot::classify`, which cannot
//! see history (a parent whose children exited stays TREE in lazy, the snapshot calls it
//! LAZY): its live counts equal the snapshot estimate always, and it follows the original
//! exactly when the original's lazy VMAs are where classify puts them.
use lazyvma_model::counts::Counts;
use lazyvma_model::engine::State;
use lazyvma_model::event::{vm, Advice, Event, FaultKind, RmapCaller, PAGE_SIZE};
use lazyvma_model::kernel::Kernel;
use lazyvma_model::knobs::Knobs;
use lazyvma_model::pair::Pair;
use lazyvma_model::seed::{self, Seed, SeedError};
use lazyvma_model::topology::{AnonVmaInfo, ProcessTopo, Topology, VmaTopo};
use proptest::prelude::*;

const PIDS: u32 = 4;
const SLOTS: u64 = 6;

fn addr(slot: u64, page: u64) -> u64 {
    0x1000_0000 + slot * 4 * PAGE_SIZE + page * PAGE_SIZE
}

/// Events with no KSM: a KSM reference is history the snapshot shows only as a refcount
/// (seeded as an outside holder that never lets go).
fn event() -> impl Strategy<Value = Event> {
    let pid = 1..=PIDS;
    prop_oneof![
        4 => (pid.clone(), 0..SLOTS, 1..=4u64, 0..3u8).prop_map(|(pid, s, pages, p)| Event::Map {
            pid,
            start: addr(s, 0),
            pages,
            flags: [vm::READ | vm::WRITE, vm::READ | vm::WRITE | vm::EXEC, vm::READ][p as usize],
        }),
        6 => (pid.clone(), 0..SLOTS, 0..4u64, 0..3u8).prop_map(|(pid, s, pg, k)| Event::Fault {
            pid,
            addr: addr(s, pg),
            kind: [FaultKind::Write, FaultKind::Read, FaultKind::Thp][k as usize],
        }),
        4 => (pid.clone(), pid.clone()).prop_map(|(parent, child)| Event::Fork { parent, child }),
        1 => pid.clone().prop_map(|pid| Event::Exit { pid }),
        1 => pid.clone().prop_map(|pid| Event::Exec { pid, stack: Some(0x7000_0000) }),
        3 => (pid.clone(), 0..SLOTS, 0..4u64, 1..=3u64, 0..2u8).prop_map(|(pid, s, pg, pages, p)| Event::Mprotect {
            pid,
            start: addr(s, pg),
            pages,
            prot: if p == 0 { vm::READ } else { vm::READ | vm::WRITE },
        }),
        2 => (pid.clone(), 0..SLOTS, 0..4u64, 1..=3u64).prop_map(|(pid, s, pg, pages)| Event::Munmap { pid, start: addr(s, pg), pages }),
        2 => (pid.clone(), 0..SLOTS, 1..=2u64, 0..SLOTS, any::<bool>()).prop_map(|(pid, s, pages, d, dontunmap)| Event::Mremap {
            pid,
            old: addr(s, 0),
            pages,
            new: addr(d, 2),
            dontunmap,
        }),
        1 => (pid.clone(), 0..SLOTS, 1..=4u64, 0..6u8).prop_map(|(pid, s, pages, a)| Event::Madvise {
            pid,
            start: addr(s, 0),
            pages,
            advice: [Advice::DontFork, Advice::WipeOnFork, Advice::DoFork, Advice::Hugepage, Advice::NoHugepage, Advice::DontDump][a as usize],
        }),
        1 => (pid.clone(), 0..SLOTS, 1..=2u64, 0..2u8).prop_map(|(pid, s, pages, f)| Event::Mlock {
            pid,
            start: addr(s, 1),
            pages,
            flags: [0, vm::LOCKED][f as usize],
        }),
        1 => (pid.clone(), 0..SLOTS).prop_map(|(pid, s)| Event::RmapWalk { pid, addr: addr(s, 0), caller: RmapCaller::Reclaim }),
        1 => pid.prop_map(|pid| Event::Spawn { pid }),
    ]
}

fn live(c: &Counts) -> [u64; 3] {
    [c.anon_vma.live, c.anon_vma_chain.live, c.vm_area_struct.live]
}

/// Per process, per VMA: bounds, lazy state and chain length (model ids differ).
type Layout = Vec<(u32, Vec<(u64, u64, State, u32)>)>;

fn layout(p: &Pair, lazy: bool) -> Layout {
    let h = if lazy { p.lazy() } else { p.eager() };
    (1..=PIDS).filter_map(|pid| h.vmas(pid).map(|v| (pid, v.iter().map(|v| (v.start, v.end, v.state, v.chain_len)).collect()))).collect()
}

fn round_trip(kernel: Kernel, before: &[Event], after: &[Event]) -> Result<(), TestCaseError> {
    let knobs = Knobs::default();
    let mut a = Pair::new(kernel, knobs);
    a.apply(&Event::Spawn { pid: 1 }).unwrap();
    // Every slot mapped and written first: the random events then fork, split and exit a
    // populated address space.
    for s in 0..SLOTS {
        a.apply(&Event::Map { pid: 1, start: addr(s, 0), pages: 4, flags: vm::READ | vm::WRITE | ((s % 2) as u16 * vm::EXEC) }).unwrap();
        a.apply(&Event::Fault { pid: 1, addr: addr(s, s % 4), kind: FaultKind::Write }).unwrap();
    }
    for ev in before {
        let _ = a.apply(ev);
    }
    let topo = seed::to_topology(&a);
    let (mut b, report) = Pair::from_topology(&topo, kernel, knobs).map_err(|e| TestCaseError::fail(format!("seed: {e}")))?;
    prop_assert!(report.skipped.is_empty() && report.pinned == 0, "a whole model's topology is closed: {report:?}");
    for m in [b.eager(), b.lazy()] {
        if let Err(e) = m.check_invariants() {
            return Err(TestCaseError::fail(format!("seeded {} model: {e}", if m.is_lazy() { "lazy" } else { "eager" })));
        }
    }
    let (ea, la) = a.counts();
    let (eb, lb) = b.counts();
    prop_assert_eq!(live(&ea), live(&eb));
    prop_assert_eq!(layout(&a, false), layout(&b, false));
    let est = lazyvma_model::snapshot::estimate(&topo, &knobs).unwrap();
    prop_assert_eq!([est.eager.anon_vma, est.eager.anon_vma_chain], [eb.anon_vma.live, eb.anon_vma_chain.live]);
    prop_assert_eq!([est.lazy.anon_vma, est.lazy.anon_vma_chain], [lb.anon_vma.live, lb.anon_vma_chain.live]);
    // Lazy follows exactly where the snapshot's classification is the original's state.
    let lazy_exact = layout(&a, true) == layout(&b, true) && live(&la)[..2] == live(&lb)[..2];
    for (n, ev) in after.iter().enumerate() {
        let (ra, rb) = (a.apply(ev), b.apply(ev));
        if !lazy_exact && ra.is_ok() != rb.is_ok() {
            // The seed rebuilds lazy from the kernel's (eager) layout; where the original's lazy
            // half had a layout of its own (e.g. pieces that VM_HUGEPAGE kept from merging), only
            // its lazy half may fail differently. Eager applies first (`Pair::apply_both`), and
            // identically.
            prop_assert_eq!(layout(&a, false), layout(&b, false), "eager after event {} {:?}: {:?} vs {:?}", n, ev, ra, rb);
            continue;
        }
        prop_assert_eq!(ra.is_ok(), rb.is_ok(), "event {} {:?}: {:?} vs {:?}", n, ev, ra, rb);
        let (Ok((da, dla)), Ok((db, dlb))) = (ra, rb) else { continue };
        prop_assert_eq!(da, db, "eager deltas of event {} {:?}", n, ev);
        if lazy_exact {
            prop_assert_eq!((dla.anon_vma, dla.anon_vma_chain), (dlb.anon_vma, dlb.anon_vma_chain), "lazy deltas of event {} {:?}", n, ev);
        }
        if let Err(e) = b.eager().check_invariants() {
            return Err(TestCaseError::fail(format!("seeded eager after event {n} {ev:?}: {e}")));
        }
    }
    prop_assert_eq!(live(&a.counts().0), live(&b.counts().0));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn seeded_6_18_follows_the_original(before in prop::collection::vec(event(), 0..40), after in prop::collection::vec(event(), 0..40)) {
        round_trip(Kernel::V6_18, &before, &after)?;
    }

    #[test]
    fn seeded_6_1_follows_the_original(before in prop::collection::vec(event(), 0..40), after in prop::collection::vec(event(), 0..40)) {
        round_trip(Kernel::V6_1, &before, &after)?;
    }

    #[test]
    fn seeded_pre_6_0_follows_the_original(before in prop::collection::vec(event(), 0..40), after in prop::collection::vec(event(), 0..40)) {
        round_trip(Kernel::Pre6_0, &before, &after)?;
    }
}

/// Spec §5 B as a snapshot shows it: parent P (A), child C (B → A), three VMAs each.
fn fork_b() -> Topology {
    let mut t = Topology::default();
    let (a, b) = (0xa00u64, 0xb00u64);
    let vma = |i: u64, av: u64, chain: Vec<u64>| VmaTopo {
        start: 0x1_0000_0000 * (i + 1),
        end: 0x1_0000_0000 * (i + 1) + 4 * PAGE_SIZE,
        pgoff: 0x1_0000_0000 * (i + 1) / PAGE_SIZE,
        flags: 0x73, // VM_READ|VM_WRITE|VM_MAY*
        anon_vma: Some(av),
        chain_len: chain.len() as u32,
        chain,
    };
    t.processes.push(ProcessTopo { pid: 10, comm: "p".into(), vmas: (0..3).map(|i| vma(i, a + i, vec![a + i])).collect(), ..Default::default() });
    t.processes.push(ProcessTopo { pid: 11, comm: "c".into(), vmas: (0..3).map(|i| vma(i, b + i, vec![b + i, a + i])).collect(), ..Default::default() });
    for i in 0..3 {
        t.anon_vmas.insert(a + i, AnonVmaInfo { root: a + i, parent: a + i, refcount: 2, num_children: 2, num_active_vmas: 1, degree: None });
        t.anon_vmas.insert(b + i, AnonVmaInfo { root: a + i, parent: a + i, refcount: 1, num_children: 0, num_active_vmas: 1, degree: None });
    }
    t
}

fn av_avc(c: &Counts) -> (u64, u64) {
    (c.anon_vma.live, c.anon_vma_chain.live)
}

#[test]
fn spec_b_seeds_and_exits_as_the_kernel_does() {
    let (mut p, r) = Pair::from_topology(&fork_b(), Kernel::V6_18, Knobs::default()).unwrap();
    assert_eq!((r.seeded.as_slice(), r.vmas, r.pinned, r.states), (&[10, 11][..], 6, 0, [0, 0, 3, 3]));
    assert_eq!((av_avc(&p.counts().0), av_avc(&p.counts().1)), ((6, 9), (3, 6)));
    p.eager().check_invariants().unwrap();
    p.lazy().check_invariants().unwrap();
    // Child exit: eager −3 AV / −6 AVC, lazy −0 / −3 (spec §5 B).
    let (e, l) = p.apply(&Event::Exit { pid: 11 }).unwrap();
    assert_eq!((e.anon_vma.free, e.anon_vma_chain.free, l.anon_vma.free, l.anon_vma_chain.free), (3, 6, 0, 3));
    // A second fork of P reuses nothing (A has a VMA), as after a real fork: +3 / +6.
    let (e, _) = p.apply(&Event::Fork { parent: 10, child: 12 }).unwrap();
    assert_eq!((e.anon_vma.alloc, e.anon_vma_chain.alloc), (3, 6));
}

#[test]
fn a_partial_topology_pins_what_outside_processes_link() {
    // Only the parent: A's num_children 2 shows the child's B, so A outlives P's exit. Lazy
    // states come from the whole topology: P's VMAs are TREE (C links A).
    let seed = Seed { kernel: Kernel::V6_18, knobs: Knobs::default(), skip_bad: false };
    let (mut p, r) = seed.run_some(&fork_b(), Some(&[10])).unwrap();
    assert_eq!((r.seeded.as_slice(), r.pinned, r.states), (&[10][..], 3, [0, 0, 3, 0]));
    assert_eq!((av_avc(&p.counts().0), av_avc(&p.counts().1)), ((3, 3), (3, 3)));
    let (e, l) = p.apply(&Event::Exit { pid: 10 }).unwrap();
    assert_eq!((e.anon_vma.free, e.anon_vma_chain.free), (0, 3));
    assert_eq!((l.anon_vma.free, l.anon_vma_chain.free), (0, 3));
    // Only the child: B frees at its exit, A stays (P, outside, still uses it).
    let (mut p, r) = seed.run_some(&fork_b(), Some(&[11])).unwrap();
    assert_eq!((r.pinned, r.states), (3, [0, 0, 0, 3]));
    assert_eq!((av_avc(&p.counts().0), av_avc(&p.counts().1)), ((6, 6), (3, 3)));
    let (e, l) = p.apply(&Event::Exit { pid: 11 }).unwrap();
    assert_eq!((e.anon_vma.free, e.anon_vma_chain.free), (3, 6));
    assert_eq!((l.anon_vma.free, l.anon_vma_chain.free), (0, 3));
}

/// Two chains agreeing on every `next` but starting at different heads, with the same
/// anon_vma: the seed compares chains by their heads (`seed::eager::build`).
#[test]
fn two_chains_with_one_anon_vma_are_refused() {
    let mut t = fork_b();
    t.processes[1].vmas[1].chain = vec![0xc00, 0xb00, 0xa00];
    t.processes[1].vmas[1].chain_len = 3;
    t.processes[1].vmas[1].anon_vma = Some(0xb00);
    t.anon_vmas.insert(0xc00, AnonVmaInfo { root: 0xa00, parent: 0xb00, refcount: 1, num_children: 0, num_active_vmas: 0, degree: None });
    let e = Pair::from_topology(&t, Kernel::V6_18, Knobs::default()).map(|_| ()).unwrap_err();
    assert!(e.to_string().contains("pid 11 VMA 0x200000000: shares anon_vma 0xb00 with a VMA of another chain"), "{e}");
    // The same chain twice is one chain.
    let mut t = fork_b();
    t.processes[1].vmas[1].chain = vec![0xb00, 0xa00];
    t.processes[1].vmas[1].anon_vma = Some(0xb00);
    t.anon_vmas.get_mut(&0xb00).unwrap().num_active_vmas = 2;
    t.anon_vmas.remove(&0xb01);
    assert!(Pair::from_topology(&t, Kernel::V6_18, Knobs::default()).is_ok());
}

#[test]
fn what_cannot_be_seeded_is_refused_by_name() {
    let seed = |t: &Topology| Pair::from_topology(t, Kernel::V6_18, Knobs::default()).map(|_| ()).unwrap_err();
    let mut t = fork_b();
    t.processes[1].vmas[0].chain.pop();
    let e = seed(&t);
    assert_eq!(e.pid(), Some(11));
    assert!(e.to_string().contains("VMA 0x100000000: chain cut short: 1 of 2 entries seen"), "{e}");

    let mut t = fork_b();
    t.anon_vmas.remove(&0xb01);
    assert!(seed(&t).to_string().contains("anon_vma 0xb01 of its chain is missing"), "{}", seed(&t));

    let mut t = fork_b();
    t.anon_vmas.get_mut(&0xb02).unwrap().root = 0xb02;
    let e = seed(&t);
    assert!(e.to_string().contains("pid 11 VMA 0x300000000: anon_vma 0xb02 has root 0xb02, its chain ends at 0xa02"), "{e}");

    let mut t = fork_b();
    t.anon_vmas.get_mut(&0xa00).unwrap().num_active_vmas = 0;
    assert!(seed(&t).to_string().contains("num_active_vmas 0, but the topology shows 2 / 1"), "{}", seed(&t));

    let mut t = fork_b();
    t.processes[1].vmas[1].anon_vma = Some(0xa00);
    assert!(seed(&t).to_string().contains("anon_vma 0xa00 is not in its own chain"), "{}", seed(&t));

    let mut t = fork_b();
    t.anon_vmas.get_mut(&0xb00).unwrap().parent = 0xa01;
    assert!(seed(&t).to_string().contains("anon_vma 0xb00 (first linked by pid 11): parent 0xa01 is not on its chain"), "{}", seed(&t));

    // Skipping: the bad process is left out, named, and the rest seeded (its anon_vmas
    // now linked from outside: pinned).
    let mut t = fork_b();
    t.processes[1].vmas[2].chain_len = 5;
    let (p, r) = Seed { kernel: Kernel::V6_18, knobs: Knobs::default(), skip_bad: true }.run(&t).unwrap();
    assert_eq!((r.seeded.as_slice(), r.skipped.len(), r.skipped[0].0), (&[10][..], 1, 11));
    assert!(r.skipped[0].1.contains("chain cut short"));
    assert_eq!(av_avc(&p.counts().0), (3, 3));

    let mut k = Knobs::default();
    k.set("fork_of_tree_parent=share").unwrap();
    let e = Pair::from_topology(&fork_b(), Kernel::V6_18, k).map(|_| ()).unwrap_err();
    assert!(matches!(e, SeedError::Knob(_)) && e.to_string().contains("fork_of_tree_parent"), "{e}");
}

#[test]
fn processes_can_be_renamed_for_the_model() {
    let seed = Seed { kernel: Kernel::V6_18, knobs: Knobs::default(), skip_bad: false };
    let (mut p, r) = seed.run_mapped(&fork_b(), &[(10, 1), (11, 2)]).unwrap();
    assert_eq!(r.seeded, [10, 11]);
    assert!(p.eager().vmas(10).is_none() && p.eager().vmas(2).is_some());
    let (e, _) = p.apply(&Event::Exit { pid: 2 }).unwrap();
    assert_eq!((e.anon_vma.free, e.anon_vma_chain.free), (3, 6));
}

/// proptest's shrunk case: VM_HUGEPAGE on one page, a fork, VM_HUGEPAGE on two: eager merges
/// the pieces, the original's lazy half keeps them apart (each got its own anon_vma at the
/// fork), so its mremap of both fails where the seeded pair's (lazy from eager's layout) moves.
#[test]
fn a_lazy_only_layout_may_fail_only_in_lazy() {
    let hugepage = |pages| Event::Madvise { pid: 1, start: addr(2, 0), pages, advice: Advice::Hugepage };
    let before = [hugepage(1), Event::Fork { parent: 1, child: 2 }, hugepage(2)];
    let after = [Event::Mremap { pid: 1, old: addr(2, 0), pages: 2, new: addr(0, 2), dontunmap: false }];
    for kernel in [Kernel::V6_18, Kernel::V6_1, Kernel::Pre6_0] {
        round_trip(kernel, &before, &after).unwrap();
    }
}

/// `trace -p` keeps only the candidates whole (`Topology::reduce`, the others as
/// `Topology::foreign`): every subset of a random topology's processes seeds, classifies and
/// tells who shares its trees exactly as from the whole topology.
fn reduced_reads_as_whole(kernel: Kernel, before: &[Event]) -> Result<(), TestCaseError> {
    let mut a = Pair::new(kernel, Knobs::default());
    a.apply(&Event::Spawn { pid: 1 }).unwrap();
    for s in 0..SLOTS {
        a.apply(&Event::Map { pid: 1, start: addr(s, 0), pages: 4, flags: vm::READ | vm::WRITE }).unwrap();
        a.apply(&Event::Fault { pid: 1, addr: addr(s, s % 4), kind: FaultKind::Write }).unwrap();
    }
    for ev in before {
        let _ = a.apply(ev);
    }
    let whole = seed::to_topology(&a);
    let all: Vec<u32> = whole.processes.iter().map(|p| p.pid).collect();
    let states = lazyvma_model::snapshot::classify(&whole);
    let root = |t: &Topology, av: &u64| t.anon_vmas.get(av).map_or(*av, |i| i.root);
    for mask in 0u32..1 << all.len() {
        let kept: Vec<u32> = all.iter().enumerate().filter(|(i, _)| mask & 1 << i != 0).map(|(_, p)| *p).collect();
        let mut small = whole.clone();
        small.reduce(|pid| kept.contains(&pid));
        prop_assert_eq!(small.processes.iter().map(|p| p.pid).collect::<Vec<_>>(), kept.clone());
        // Classified alike.
        let s2 = lazyvma_model::snapshot::classify(&small);
        let s1: Vec<_> = whole.processes.iter().zip(&states).filter(|(p, _)| kept.contains(&p.pid)).map(|(_, s)| s.clone()).collect();
        prop_assert_eq!(&s1, &s2, "kept {:?}", kept);
        // Seeded alike (skip_bad: refusals alike too).
        let pids: Vec<(u32, u32)> = kept.iter().map(|&p| (p, p)).collect();
        let seed = Seed { kernel, knobs: Knobs::default(), skip_bad: true };
        let (pw, pr) = (seed.prepare(&whole, &pids), seed.prepare_owned(small.clone(), &pids));
        prop_assert_eq!(pw.is_ok(), pr.is_ok());
        let (Ok(pw), Ok(pr)) = (pw, pr) else { continue };
        let ((aw, rw), (ar, rr)) = (seed.run_prepared(&pw).unwrap(), seed.run_prepared(&pr).unwrap());
        prop_assert_eq!(&rw, &rr);
        prop_assert_eq!((live(&aw.counts().0), live(&aw.counts().1)), (live(&ar.counts().0), live(&ar.counts().1)));
        prop_assert_eq!((layout(&aw, false), layout(&aw, true)), (layout(&ar, false), layout(&ar, true)));
        // The first process outside linking each of a kept one's trees: the same pid.
        for p in &small.processes {
            for r in p.vmas.iter().flat_map(|v| &v.chain).map(|a| root(&small, a)) {
                let first = whole.processes.iter().find(|q| !kept.contains(&q.pid) && q.vmas.iter().flat_map(|v| &v.chain).any(|a| root(&whole, a) == r));
                prop_assert_eq!(first.map(|q| q.pid), small.foreign.root_pid(r), "root {:#x}", r);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn a_reduced_topology_seeds_as_the_whole_6_18(before in prop::collection::vec(event(), 0..40)) {
        reduced_reads_as_whole(Kernel::V6_18, &before)?;
    }

    #[test]
    fn a_reduced_topology_seeds_as_the_whole_pre_6_0(before in prop::collection::vec(event(), 0..40)) {
        reduced_reads_as_whole(Kernel::Pre6_0, &before)?;
    }
}

#[test]
fn a_reduced_topology_keeps_only_what_meets_the_kept() {
    // fork_b plus an unrelated process: reduced to the parent, the child's links to the
    // parent's trees stay, the stranger leaves nothing.
    let mut t = fork_b();
    t.processes.push(ProcessTopo {
        pid: 12,
        vmas: vec![VmaTopo { anon_vma: Some(0xf00), chain: vec![0xf00], chain_len: 1, ..Default::default() }],
        ..Default::default()
    });
    t.anon_vmas.insert(0xf00, AnonVmaInfo { root: 0xf00, parent: 0xf00, refcount: 1, num_children: 1, num_active_vmas: 1, degree: None });
    t.reduce(|p| p == 10);
    assert_eq!(t.processes.len(), 1);
    assert_eq!(t.anon_vmas.keys().copied().collect::<Vec<_>>(), [0xa00, 0xa01, 0xa02]);
    assert_eq!(t.foreign.linked, [0xa00, 0xa01, 0xa02]);
    assert_eq!(t.foreign.roots, [(0xa00, 11), (0xa01, 11), (0xa02, 11)]);
    let (_, r) = Seed { kernel: Kernel::V6_18, knobs: Knobs::default(), skip_bad: false }.run(&t).unwrap();
    assert_eq!((r.pinned, r.states), (3, [0, 0, 3, 0]), "TREE: the child, outside, links A");
}
