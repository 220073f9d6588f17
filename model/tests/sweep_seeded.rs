//! The knob sweep of a seeded model (`trace -p`): every knob value's run starts from its
//! own seed of the same topology; the base row is what the seeded model itself counts.
use lazyvma_model::event::{vm, Event, FaultKind, PAGE_SIZE};
use lazyvma_model::kernel::Kernel;
use lazyvma_model::knobs::{Knobs, KNOBS};
use lazyvma_model::pair::Pair;
use lazyvma_model::seed::{self, Seed};
use lazyvma_model::sweep::{sweep_seeded, Tally};
use lazyvma_model::topology::Topology;

const A: u64 = 0x1000_0000;
const K: Kernel = Kernel::V6_18;

/// A parent (1) with a written VMA, forked (2): one shared anon_vma, as a snapshot reads it.
fn topology() -> Topology {
    let mut p = Pair::new(K, Knobs::default());
    for ev in [
        Event::Spawn { pid: 1 },
        Event::Map { pid: 1, start: A, pages: 4, flags: vm::READ | vm::WRITE },
        Event::Fault { pid: 1, addr: A, kind: FaultKind::Write },
        Event::Map { pid: 1, start: A + 16 * PAGE_SIZE, pages: 2, flags: vm::READ | vm::WRITE },
        Event::Fault { pid: 1, addr: A + 16 * PAGE_SIZE, kind: FaultKind::Write },
        Event::Fork { parent: 1, child: 2 },
    ] {
        p.apply(&ev).unwrap();
    }
    seed::to_topology(&p)
}

/// After the seed: the child writes, a new process maps and writes, the parent exits.
fn events() -> Vec<Event> {
    vec![
        Event::Fault { pid: 2, addr: A + PAGE_SIZE, kind: FaultKind::Write },
        Event::Spawn { pid: 3 },
        Event::Map { pid: 3, start: A, pages: 1, flags: vm::READ | vm::WRITE },
        Event::Fault { pid: 3, addr: A, kind: FaultKind::Write },
        Event::Exit { pid: 1 },
    ]
}

fn tally(c: lazyvma_model::counts::Counter, start: lazyvma_model::counts::Counter) -> Tally {
    Tally { alloc: c.alloc - start.alloc, free: c.free - start.free, peak: c.peak }
}

#[test]
fn each_knob_value_starts_from_its_own_seed_and_the_base_row_is_the_seeded_model() {
    let topo = topology();
    let pids = [(1, 1), (2, 2)];
    let s = sweep_seeded(&topo, &pids, &events(), K, &Knobs::default()).unwrap();
    // The base run by hand: seed, then the events; alloc/free are the events' own.
    let (mut p, _) = Seed { kernel: K, knobs: Knobs::default(), skip_bad: false }.run_mapped(&topo, &pids).unwrap();
    let (e0, l0) = p.counts();
    for ev in events() {
        p.apply(&ev).unwrap();
    }
    let (e, l) = p.counts();
    let base = &s.sweep["lazy_enabled"]["true"];
    assert!(base.base);
    assert_eq!((base.lazy.anon_vma, base.lazy.anon_vma_chain), (tally(l.anon_vma, l0.anon_vma), tally(l.anon_vma_chain, l0.anon_vma_chain)));
    assert_eq!((s.eager.anon_vma, s.eager.anon_vma_chain), (tally(e.anon_vma, e0.anon_vma), tally(e.anon_vma_chain, e0.anon_vma_chain)));
    // Eager: the child's write needs nothing (its fork gave it an anon_vma); pid 3's first
    // fault is the one allocation.
    assert_eq!(s.eager.anon_vma.alloc, 1);
    // Lazy: pid 3's private VMA stays LAZY (no object).
    assert_eq!((base.lazy.anon_vma.alloc, base.lazy.anon_vma_chain.alloc), (0, 0));
    // The runtime switch off: the seed itself is eager's (TREE everywhere), nothing saved.
    let off = &s.sweep["lazy_enabled"]["false"];
    assert_eq!(off.lazy, s.eager);
    // A row per knob value, but for the two values a snapshot cannot classify under.
    for (name, values) in KNOBS {
        for v in *values {
            let refused = matches!((*name, *v), ("fork_of_tree_parent", "share") | ("cow_in_tree_parent", "upgrade"));
            assert_eq!(s.sweep[*name].contains_key(*v), !refused, "{name}={v}");
            assert_eq!(s.not_run.get(*name).is_some_and(|m| m.contains_key(*v)), refused, "{name}={v}");
        }
    }
    assert!(s.not_run["fork_of_tree_parent"]["share"].starts_with("the seed cannot start under it: "), "{:?}", s.not_run);
}

#[test]
fn the_base_knobs_refused_by_the_seed_is_an_error() {
    let mut k = Knobs::default();
    k.set("fork_of_tree_parent=share").unwrap();
    let e = sweep_seeded(&topology(), &[(1, 1), (2, 2)], &events(), K, &k).unwrap_err();
    assert!(e.to_string().starts_with("the base knobs' start:"), "{e}");
}

/// `trace -p` seeds from the pass itself (`prepare_owned`, no copy) and sweeps from what
/// that seed read: the same model and the same sweep as from a copy, whole or in part.
#[test]
fn a_seed_from_the_pass_itself_is_the_seed_from_a_copy_and_so_is_its_sweep() {
    for (pids, evs) in [(&[(1, 1), (2, 2)][..], events()), (&[(1, 7)], vec![]), (&[(2, 2)], events()[..1].to_vec())] {
        let s = Seed { kernel: K, knobs: Knobs::default(), skip_bad: true };
        let mut copied = Pair::new(K, Knobs::default());
        let want = s.run_into(&mut copied, &topology(), pids).unwrap();
        let prep = s.prepare_owned(topology(), pids).unwrap();
        let mut owned = Pair::new(K, Knobs::default());
        assert_eq!(s.apply_into(&mut owned, &prep).unwrap(), want);
        assert_eq!(owned.counts(), copied.counts(), "{pids:?}");
        assert!(prep.refused().processes.is_empty());
        let swept = lazyvma_model::sweep::sweep_prepared_with(&prep, &evs, K, &Knobs::default(), &mut |_| true).unwrap();
        assert_eq!(swept, sweep_seeded(&topology(), pids, &evs, K, &Knobs::default()).unwrap(), "{pids:?}");
    }
}

/// A process the seed refuses is kept aside with what it links (`trace -p` names the seeded
/// processes sharing an anon_vma tree with it), and a seeded one's roots are its chains'.
#[test]
fn a_refused_process_is_kept_with_its_anon_vmas_and_the_seeded_roots_are_the_chains_roots() {
    let mut topo = topology();
    let child = topo.processes.iter_mut().find(|p| p.pid == 2).unwrap();
    child.vmas[0].chain_len += 1;
    let want_roots: std::collections::HashSet<u64> = topo.processes[0].vmas.iter().filter_map(|v| v.chain.last().copied()).collect();
    let child_avs: Vec<u64> = topo.processes[1].vmas.iter().flat_map(|v| v.chain.clone()).collect();
    let s = Seed { kernel: K, knobs: Knobs::default(), skip_bad: true };
    let prep = s.prepare_owned(topo, &[(1, 1), (2, 2)]).unwrap();
    let mut p = Pair::new(K, Knobs::default());
    let report = s.apply_into(&mut p, &prep).unwrap();
    assert_eq!((report.seeded.as_slice(), report.skipped.len()), (&[1][..], 1));
    let refused = prep.refused();
    assert_eq!(refused.processes.iter().map(|p| p.pid).collect::<Vec<_>>(), [2]);
    assert!(child_avs.iter().all(|a| refused.anon_vmas.contains_key(a)));
    assert_eq!(prep.roots(1), Some(want_roots));
    assert_eq!(prep.roots(2), None);
}
