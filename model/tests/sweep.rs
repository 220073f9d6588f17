//! The knob sweep and lazy-VMA histories on the shipped scenarios: spec §5's exact counts
//! where the spec states them (B, D, E), and histories counted by hand from each file.

use lazyvma_model::event::{vm, Event, FaultKind, PAGE_SIZE};
use lazyvma_model::kernel::Kernel;
use lazyvma_model::knobs::{Knobs, KNOBS};
use lazyvma_model::lazy::{History, Outcome};
use lazyvma_model::scenario::{parse, Item};
use lazyvma_model::sweep::{sweep, Objects, Row, Sweep, SweepError, Tally};

fn events(name: &str) -> (Kernel, Knobs, Vec<Event>) {
    let path = format!("{}/scenarios/{name}", env!("CARGO_MANIFEST_DIR"));
    let sc = parse(&path, &std::fs::read_to_string(&path).unwrap()).unwrap();
    let evs = sc.lines.iter().filter_map(|l| if let Item::Event(e) = &l.item { Some(e.clone()) } else { None }).collect();
    (sc.kernel, sc.knobs, evs)
}

fn run(name: &str) -> Sweep {
    let (kernel, knobs, evs) = events(name);
    sweep(&evs, kernel, &knobs).unwrap()
}

fn t(alloc: u64, free: u64, peak: u64) -> Tally {
    Tally { alloc, free, peak }
}

/// anon_vma and anon_vma_chain (spec §5 gives no vm_area_struct counts for the lazy model).
fn anon(o: &Objects) -> (Tally, Tally) {
    (o.anon_vma, o.anon_vma_chain)
}

fn row<'a>(s: &'a Sweep, knob: &str, value: &str) -> &'a Row {
    &s.sweep[knob][value]
}

fn o(shared: u64, never_shared: u64) -> Outcome {
    Outcome { shared, never_shared }
}

#[test]
fn every_value_of_every_knob_has_a_row_and_one_base() {
    let s = run("d-fork-chain.lzs");
    assert_eq!(s.sweep.len(), KNOBS.len());
    let held = Knobs::default().pairs();
    for (name, values) in KNOBS {
        let rows = &s.sweep[*name];
        assert_eq!(rows.len(), values.len(), "{name}");
        for v in *values {
            assert_eq!(rows[*v].base, held.contains(&(name, v)), "{name}={v}");
        }
    }
    // The runtime switch off: lazy is eager, nothing saved.
    let off = row(&s, "lazy_enabled", "false");
    assert_eq!(off.lazy, s.eager);
    assert_eq!((off.saved.anon_vma_allocs, off.saved.anon_vma_chain_peak), (0, 0));
}

#[test]
fn d_fork_chain_matches_spec_section_5() {
    let s = run("d-fork-chain.lzs");
    // Eager peak 12 AV / 30 AVC; everything freed by the leaf-first exits. Four processes
    // map the 3 test VMAs: 12 vm_area_structs in both models.
    assert_eq!((s.eager.vm_area_struct, row(&s, "fork_of_tree_parent", "share").lazy.vm_area_struct), (t(12, 12, 12), t(12, 12, 12)));
    assert_eq!(anon(&s.eager), (t(12, 12, 12), t(30, 30, 30)));
    // upgrade_first (the default): peak 9 / 27.
    let up = row(&s, "fork_of_tree_parent", "upgrade_first");
    assert!(up.base);
    assert_eq!(anon(&up.lazy), (t(9, 9, 9), t(27, 27, 27)));
    assert_eq!((up.saved.anon_vma_peak, up.saved.anon_vma_chain_peak), (3, 3));
    // share: peak 3 / 12.
    let share = row(&s, "fork_of_tree_parent", "share");
    assert_eq!(anon(&share.lazy), (t(3, 3, 3), t(12, 12, 12)));
    assert_eq!((share.saved.anon_vma_allocs, share.saved.anon_vma_chain_allocs), (9, 18));
    // P's 3 VMAs were lazy and were forked; nothing happened to them before.
    assert_eq!(s.lazy_vma_history, History { lazy: o(3, 0), ..History::default() });
}

#[test]
fn b_fork_child_exits_totals() {
    let s = run("b-fork-child-exits.lzs");
    assert_eq!((s.eager.anon_vma.alloc, s.eager.anon_vma_chain.alloc), (6, 9));
    let base = row(&s, "cow_in_tree_parent", "lazy_to_vma");
    assert_eq!(anon(&base.lazy), (t(3, 3, 3), t(6, 6, 6)));
    // The child writes nothing: no COW rule changes anything.
    for v in ["parent_av", "upgrade"] {
        assert_eq!(row(&s, "cow_in_tree_parent", v).lazy, base.lazy, "{v}");
    }
}

#[test]
fn b_child_writes_cow_rule_matters() {
    // Spec §5 B: "If the child writes each VMA: LAZY +0 (lazy_to_vma/parent_av) or +3/+3 (upgrade)".
    let s = run("b-child-writes.lzs");
    let base = row(&s, "cow_in_tree_parent", "lazy_to_vma").lazy;
    assert_eq!(row(&s, "cow_in_tree_parent", "parent_av").lazy, base);
    let up = row(&s, "cow_in_tree_parent", "upgrade").lazy;
    assert_eq!((up.anon_vma.alloc - base.anon_vma.alloc, up.anon_vma_chain.alloc - base.anon_vma_chain.alloc), (3, 3));
}

#[test]
fn e_mprotect_split_matches_spec_section_5() {
    let s = run("e-mprotect-split.lzs");
    assert_eq!(anon(&s.eager), (t(1, 1, 1), t(3, 3, 3)));
    // split_upgrades=false (default): 0 at every step; true: +1/+1 at the split, then +2 AVC.
    assert_eq!(anon(&row(&s, "split_upgrades", "false").lazy), (t(0, 0, 0), t(0, 0, 0)));
    assert_eq!(anon(&row(&s, "split_upgrades", "true").lazy), (t(1, 1, 1), t(3, 3, 3)));
    // One lazy VMA split into three pieces, merged back into one, unmapped at exit unshared.
    assert_eq!(s.lazy_vma_history, History { lazy: o(0, 1), split: o(0, 1), merged: o(0, 1), ..History::default() });
}

#[test]
fn a_touch_exit_history_and_savings() {
    let s = run("a-touch-exit.lzs");
    assert_eq!(anon(&s.eager), (t(3, 3, 3), t(3, 3, 3)));
    let base = row(&s, "split_upgrades", "false");
    assert_eq!(anon(&base.lazy), (t(0, 0, 0), t(0, 0, 0)));
    assert_eq!((base.saved.anon_vma_peak, base.saved.anon_vma_chain_peak), (3, 3));
    assert_eq!(s.lazy_vma_history, History { lazy: o(0, 3), ..History::default() });
}

#[test]
fn mremap_and_ksm_histories() {
    // Three lazy VMAs moved (the copies carry their history; the unmapped sources do not
    // count), one moved again with DONTUNMAP, a fourth moved with DONTUNMAP only, all torn
    // down at exit.
    let s = run("mremap-move.lzs");
    assert_eq!(s.lazy_vma_history, History { lazy: o(0, 4), mremapped: o(0, 4), ..History::default() });
    assert_eq!(row(&s, "mremap_upgrades", "false").lazy.anon_vma.alloc, 0);
    assert_eq!(row(&s, "mremap_upgrades", "true").lazy.anon_vma.alloc, 4);
    // Two mergeable lazy VMAs KSM-merged (upgraded; one made unmergeable later), one not
    // mergeable; all unmapped.
    let s = run("ksm.lzs");
    assert_eq!(s.lazy_vma_history, History { lazy: o(0, 3), ksm_merged: o(0, 2), ..History::default() });
    assert_eq!(row(&s, "ksm_upgrades", "false").lazy.anon_vma.alloc, 0);
}

fn split_then_fork(collapse: bool) -> Vec<Event> {
    let (a, rw) = (0x1_0000_0000, vm::READ | vm::WRITE);
    let mut v = vec![
        Event::Spawn { pid: 1 },
        Event::Map { pid: 1, start: a, pages: 4, flags: rw },
        Event::Fault { pid: 1, addr: a, kind: FaultKind::Write },
        Event::Mprotect { pid: 1, start: a + PAGE_SIZE, pages: 1, prot: vm::READ },
    ];
    if collapse {
        v.push(Event::ThpCollapse { pid: 1, addr: a });
    }
    v.extend([Event::Fork { parent: 1, child: 2 }, Event::Fork { parent: 1, child: 3 }, Event::Exit { pid: 2 }, Event::Exit { pid: 1 }]);
    v
}

#[test]
fn split_pieces_forked_count_as_shared_once() {
    // The mprotect leaves three lazy pieces; the first fork shares all three, the second
    // fork and the exits settle nothing more.
    let s = sweep(&split_then_fork(false), Kernel::V6_18, &Knobs::default()).unwrap();
    assert_eq!(s.lazy_vma_history, History { lazy: o(3, 0), split: o(3, 0), ..History::default() });
    // With a collapse of the first piece before the fork (process 3 is still alive).
    let s = sweep(&split_then_fork(true), Kernel::V6_18, &Knobs::default()).unwrap();
    assert_eq!(s.lazy_vma_history, History { lazy: o(3, 0), split: o(3, 0), thp_collapsed: o(1, 0), ..History::default() });
}

#[test]
fn a_bad_stream_names_the_event() {
    let evs = [Event::Spawn { pid: 1 }, Event::Fault { pid: 1, addr: 0x5000, kind: FaultKind::Write }];
    let e = sweep(&evs, Kernel::V6_18, &Knobs::default()).unwrap_err();
    assert!(matches!(e, SweepError::Event { index: 1, .. }), "{e}");
    assert!(e.to_string().contains("process 1 has no VMA at 0x5000"), "{e}");
}

#[test]
fn sums_add_every_count() {
    let a = run("d-fork-chain.lzs");
    let mut s = a.clone();
    s.add(&a);
    assert_eq!(s.eager.anon_vma_chain, t(60, 60, 60));
    assert_eq!(row(&s, "fork_of_tree_parent", "share").saved.anon_vma_chain_allocs, 36);
    assert!(row(&s, "fork_of_tree_parent", "upgrade_first").base);
    assert_eq!(s.lazy_vma_history.lazy, o(6, 0));
    let json = serde_json::to_string(&s).unwrap();
    assert_eq!(serde_json::from_str::<Sweep>(&json).unwrap(), s);
}
