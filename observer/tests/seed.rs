//! A model seeded from a real snapshot (root): `lazyvma-workload fork -n 3 --hold`, read by
//! `lazyvma snapshot --topology`, seeded with `lazyvma_model::seed`, holds what the
//! snapshot shows; after the child is killed, the seeded model's `Exit` leaves what a
//! second snapshot shows.
use lazyvma_model::counts::Counts;
use lazyvma_model::event::Event;
use lazyvma_model::kernel::Kernel;
use lazyvma_model::knobs::Knobs;
use lazyvma_model::pair::Pair;
use lazyvma_model::seed::Seed;
use lazyvma_model::topology::Topology;
use serde_json::Value;

mod common;
use common::*;

/// One snapshot pass: the JSON rows of `pids` and the whole topology.
fn snapshot(pids: &[u32], dir: &Dir, name: &str) -> (Vec<Value>, Topology) {
    let list = pids.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(",");
    let out = lazyvma(&["snapshot", "-j", "-p", &list, "--topology", &dir.file(name)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = pids.iter().map(|&pid| v["processes"].as_array().unwrap().iter().find(|p| p["pid"] == pid).unwrap().clone()).collect();
    let topo = serde_json::from_slice(&std::fs::read(dir.path(name)).unwrap()).unwrap();
    (rows, topo)
}

/// (anon_vma, anon_vma_chain) summed over snapshot rows, for `side` ("eager" or "lazy").
fn sum(rows: &[Value], side: &str) -> (u64, u64) {
    rows.iter().fold((0, 0), |(a, c), r| (a + r[side]["anon_vma"].as_u64().unwrap(), c + r[side]["anon_vma_chain"].as_u64().unwrap()))
}

fn live(c: &Counts) -> (u64, u64) {
    (c.anon_vma.live, c.anon_vma_chain.live)
}

fn kernel() -> Kernel {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut it = release.split(|c: char| !c.is_ascii_digit()).filter_map(|x| x.parse::<u32>().ok());
    match (it.next().unwrap_or(0), it.next().unwrap_or(0)) {
        (m, _) if m < 6 => Kernel::Pre6_0,
        (6, n) if n < 16 => Kernel::V6_1,
        _ => Kernel::V6_18,
    }
}

#[test]
fn a_seeded_model_follows_the_kernel_through_an_exit() {
    if !root_or_skip("a_seeded_model_follows_the_kernel_through_an_exit") {
        return;
    }
    let dir = Dir::new("seed");
    let mut w = HeldFork::start(3);
    w.check_exit = false; // the child is killed below
    let (rows, topo) = snapshot(&[w.parent, w.child], &dir, "before.json");
    let seed = Seed { kernel: kernel(), knobs: Knobs::default(), skip_bad: false };
    let (mut pair, report) = seed.run_some(&topo, Some(&[w.parent, w.child])).unwrap();
    // The workload's family is whole in the pair: nothing linked from outside.
    assert_eq!((report.seeded.len(), report.skipped.len(), report.pinned), (2, 0, 0), "{report:?}");
    // Parent and child share only the parent's anon_vmas, which the child does not own:
    // the rows' own anon_vmas add up to the distinct ones.
    let (eager, lazy) = pair.counts();
    eprintln!("seeded parent+child: eager {:?} lazy {:?} (AV, AVC)", live(&eager), live(&lazy));
    assert_eq!(live(&eager), sum(&rows, "eager"));
    assert_eq!(live(&lazy), sum(&rows, "lazy"));
    // The test VMAs alone: parent 3 / 3 and child 3 / 6 eager (spec §5 B).
    assert!(live(&eager).0 >= 6 && live(&eager).1 >= 9, "{:?}", live(&eager));
    pair.eager().check_invariants().unwrap();
    pair.lazy().check_invariants().unwrap();

    // Kill the child and wait until its mm is gone (a zombie has none).
    assert_eq!(unsafe { libc::kill(w.child as i32, libc::SIGKILL) }, 0);
    let t0 = std::time::Instant::now();
    while std::fs::read_to_string(format!("/proc/{}/stat", w.child)).is_ok_and(|s| !s.contains(") Z ")) {
        assert!(t0.elapsed().as_secs() < 10, "child {} did not die", w.child);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (rows2, topo2) = snapshot(&[w.parent], &dir, "after.json");
    let (e, l) = pair.apply(&Event::Exit { pid: w.child }).unwrap();
    let child_eager = (rows[1]["eager"]["anon_vma"].as_u64().unwrap(), rows[1]["eager"]["anon_vma_chain"].as_u64().unwrap());
    assert_eq!((e.anon_vma.free, e.anon_vma_chain.free), child_eager, "the child's exit frees what it held");
    assert_eq!((l.anon_vma.free, e.anon_vma.alloc + l.anon_vma.alloc + l.anon_vma_chain.alloc), (0, 0));
    let (eager, lazy) = pair.counts();
    eprintln!("after Exit(child): eager {:?} lazy {:?}; second snapshot eager {:?}", live(&eager), live(&lazy), sum(&rows2, "eager"));
    assert_eq!(live(&eager), sum(&rows2, "eager"), "seeded model after Exit vs the second snapshot");
    // Lazy has no downgrade: the parent's forked VMAs stay TREE, which the second snapshot
    // (no child visible) calls LAZY. The model holds what eager holds for them.
    assert_eq!(live(&lazy), sum(&rows2, "eager"));
    // And the same layout as a model seeded from the second snapshot.
    let (again, _) = seed.run_some(&topo2, Some(&[w.parent])).unwrap();
    let chains = |p: &Pair| p.eager().vmas(w.parent).unwrap().iter().map(|v| (v.start, v.end, v.chain_len)).collect::<Vec<_>>();
    assert_eq!(chains(&pair), chains(&again));
}

#[test]
fn an_unwritable_topology_file_is_one_clear_line() {
    if !root_or_skip("an_unwritable_topology_file_is_one_clear_line") {
        return;
    }
    let out = lazyvma(&["snapshot", "-j", "--topology", "/nonexistent/dir/topo.json"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "stderr: {err}");
    assert!(err.contains("/nonexistent/dir/topo.json") && !err.contains("panicked"), "stderr: {err}");
}
