//! busybox `timeout`'s process shape under `trace -j` (workload `vfork-fork`): P vforks V
//! (CLONE_VM | CLONE_VFORK), V forks the watcher W (dup_mmap of the mm V shares with P) and
//! exits, P execs while W pins its anon_vmas. The model follows the fork from the borrowed
//! mm: every (process, phase) row exact, and the test VMAs' difference is spec §5's.
//! Root, real BPF on the host kernel (6.18 here: tracepoints only, its backend printed).
use serde_json::{json, Value};
use std::{collections::BTreeMap, os::unix::process::CommandExt, process::Command};

mod common;
use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_lazyvma");
const WORKLOAD: &str = env!("CARGO_BIN_EXE_lazyvma-workload");
const N: i64 = 3;

/// [AV alloc, AV free, AVC alloc, AVC free].
type Four = [i64; 4];

fn four(v: &Value) -> Four {
    let g = |k: &str, op: &str| v[k][op].as_i64().unwrap_or(0);
    [g("anon_vma", "alloc"), g("anon_vma", "free"), g("anon_vma_chain", "alloc"), g("anon_vma_chain", "free")]
}

/// The report of one run without lost records (a starved reader on a loaded machine loses
/// some: run again, at most three times).
fn trace(n: i64) -> Value {
    for _ in 0..3 {
        let mut cmd = Command::new(BIN);
        cmd.args(["trace", "-j", "--", WORKLOAD, "vfork-fork", "-n", &n.to_string()]);
        // ASLR off: the process's own VMAs lie the same for N=3 and N=0.
        unsafe {
            cmd.pre_exec(|| {
                libc::personality(libc::ADDR_NO_RANDOMIZE as libc::c_ulong);
                Ok(())
            })
        };
        let out = cmd.output().expect("running lazyvma");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "trace vfork-fork -n {n}: {err}");
        let s = String::from_utf8_lossy(&out.stdout);
        let at = s.find("\n{").map_or(0, |i| i + 1);
        let j: Value = serde_json::from_str(&s[at..]).unwrap_or_else(|e| panic!("no JSON report ({e}): {s}"));
        if j["lost_events"] == 0 {
            return j;
        }
        eprintln!("trace vfork-fork -n {n}: {} records lost: run again", j["lost_events"]);
    }
    panic!("trace vfork-fork -n {n}: records lost in each of 3 runs");
}

/// (proc, phase) → observed, checked against the model: exact and complete, every process
/// of the tree modelled.
fn exact_rows(j: &Value, n: i64) -> BTreeMap<(i64, i64), Four> {
    let m = &j["model"];
    assert_eq!(j["command"]["exit_status"], 0, "-n {n}");
    // What the host kernel gives: the fork seen by tracepoints alone (guests: fentry, kprobes).
    eprintln!("-n {n}: anon_vma_fork backend {}", j["backend"]["anon_vma_fork"]);
    assert_eq!(m["complete"], true, "-n {n}: {m}");
    assert_eq!(m["not_modelled"], json!([]), "-n {n}: {m}");
    assert_eq!(m["processes_modelled"], 2, "-n {n}: P from its exec and the watcher W from its fork (V borrows P's mm): {m}");
    let tree: Vec<(i64, Value)> = j["processes"].as_array().unwrap().iter().map(|p| (p["proc"].as_i64().unwrap(), p["parent"].clone())).collect();
    assert_eq!(tree, [(0, Value::Null), (1, json!(0)), (2, json!(1))], "-n {n}");
    let mut rows = BTreeMap::new();
    for p in j["phases"].as_array().unwrap() {
        let key = (p["proc"].as_i64().unwrap(), p["phase"].as_i64().unwrap_or(-1));
        assert!(p["not_modelled"].is_null(), "-n {n}: {key:?} flagged: {p}");
        assert_eq!(four(&p["eager"]), four(p), "-n {n}: {key:?}: model eager != observed [+AV, -AV, +AVC, -AVC]");
        rows.insert(key, four(p));
    }
    rows
}

#[test]
fn a_vfork_child_s_fork_is_modelled_from_the_mm_it_borrows() {
    if !root_or_skip("a_vfork_child_s_fork_is_modelled_from_the_mm_it_borrows") {
        return;
    }
    let (a, b) = (exact_rows(&trace(N), N), exact_rows(&trace(0), 0));
    let mut d = BTreeMap::new();
    for k in a.keys().chain(b.keys()) {
        let (x, y) = (a.get(k).copied().unwrap_or_default(), b.get(k).copied().unwrap_or_default());
        let v = [x[0] - y[0], x[1] - y[1], x[2] - y[2], x[3] - y[3]];
        if v != [0; 4] {
            d.insert(*k, v);
        }
    }
    // Per test VMA: P's touch +1/+1; W's fork, run by V: +1/+2; P's exec frees its chain
    // only (the anon_vma is W's root); W's exit frees both anon_vmas and its two chains.
    let want = BTreeMap::from([((0, 2), [N, 0, N, 0]), ((1, 3), [N, 0, 2 * N, 0]), ((0, 4), [0, 0, 0, N]), ((2, 16), [0, 2 * N, 0, 2 * N])]);
    assert_eq!(d, want, "(proc, phase) → N={N} minus N=0");
}
