//! `lazyvma snapshot` on the live kernel (root): bad input, and the topology of a
//! process of known layout equals what spec §1 predicts.
//!
//! The test process is `lazyvma-workload fork -n N --hold`: N private anonymous 4-page VMAs
//! at 0x1_0000_0000 * (i + 1) written, a child forked that does not write, both holding
//! until stdin closes.
use serde_json::Value;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

mod common;
use common::*;

const LAZYVMA: &str = env!("CARGO_BIN_EXE_lazyvma");
const PAGE: usize = 4096;

/// A failure is exit 1 with exactly one line on stderr containing `needle`.
fn assert_one_line_error(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "stderr: {err}");
    assert!(err.contains(needle), "stderr: {err}");
    assert!(!err.contains("panicked"), "stderr: {err}");
}

/// `(parent, child)` process objects of `lazyvma snapshot -p P,C -j --vmas`, and the whole.
fn snapshot(w: &HeldFork) -> (Value, Value, Value) {
    let out = lazyvma(&["snapshot", "-j", "--vmas", "-p", &format!("{},{}", w.parent, w.child)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let find = |pid: u32| v["processes"].as_array().unwrap().iter().find(|p| p["pid"] == pid).unwrap().clone();
    (find(w.parent), find(w.child), v)
}

fn counts(p: &Value, model: &str) -> (i64, i64) {
    (p[model]["anon_vma"].as_i64().unwrap(), p[model]["anon_vma_chain"].as_i64().unwrap())
}

fn diff(a: (i64, i64), b: (i64, i64)) -> (i64, i64) {
    (a.0 - b.0, a.1 - b.1)
}

#[test]
fn fork_topology_matches_the_spec() {
    if !root_or_skip("fork_topology_matches_the_spec") {
        return;
    }
    let (base_p, base_c, _) = snapshot(&HeldFork::start(0));
    let w = HeldFork::start(3);
    let (p, c, whole) = snapshot(&w);
    assert!(whole["elapsed_ms"].as_f64().unwrap() < 1000.0, "a whole-system pass takes well under a second");
    assert_eq!(whole["truncated_vmas"], 0);

    // Spec §1.2 + §1.4: parent +3 AV / +3 AVC; child +3 AV / +6 AVC over the baseline.
    assert_eq!(diff(counts(&p, "eager"), counts(&base_p, "eager")), (3, 3));
    assert_eq!(diff(counts(&c, "eager"), counts(&base_c, "eager")), (3, 6));
    // ANON_VMA_LAZY (default knobs): the parent is upgraded at fork (3/3), the child is
    // TREE_PARENT: no anon_vma of its own, chain L - 1 = 1 per VMA.
    assert_eq!(diff(counts(&p, "lazy"), counts(&base_p, "lazy")), (3, 3));
    assert_eq!(diff(counts(&c, "lazy"), counts(&base_c, "lazy")), (0, 3));

    // The test VMAs as read through the BTF offsets: exact addresses, pgoff, flags, chains.
    let test_vmas = |proc: &Value| -> Vec<Value> {
        proc["vmas"].as_array().unwrap().iter().filter(|v| v["start"].as_u64().unwrap() % 0x1_0000_0000 == 0).cloned().collect()
    };
    let (pv, cv) = (test_vmas(&p), test_vmas(&c));
    assert_eq!((pv.len(), cv.len()), (3, 3));
    for (i, (pv, cv)) in pv.iter().zip(&cv).enumerate() {
        let start = 0x1_0000_0000u64 * (i as u64 + 1);
        for v in [pv, cv] {
            assert_eq!((v["start"].as_u64(), v["end"].as_u64()), (Some(start), Some(start + 4 * PAGE as u64)));
            assert_eq!(v["pgoff"].as_u64(), Some(start / PAGE as u64));
            let flags = v["flags"].as_u64().unwrap();
            assert_eq!(flags & 0xf, 0x3, "VM_READ|VM_WRITE, not VM_EXEC/VM_SHARED: {flags:#x}");
        }
        // Parent: chain [A], A its own; child: chain [B, A] with B = its anon_vma (head).
        let a = pv["anon_vma"].clone();
        assert_eq!(pv["chain"], serde_json::json!([a]));
        assert_eq!(cv["chain"][1], a);
        assert_eq!(cv["chain"][0], cv["anon_vma"]);
        assert_eq!((pv["lazy_state"].as_str(), cv["lazy_state"].as_str()), (Some("tree"), Some("tree_parent")));
    }
}

#[test]
fn a_snapshot_of_ourselves_lists_us() {
    if !root_or_skip("a_snapshot_of_ourselves_lists_us") {
        return;
    }
    let me = std::process::id();
    let out = lazyvma(&["snapshot", "-j", "-p", &me.to_string()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["processes"][0]["pid"], me);
    assert!(v["total"]["eager"]["anon_vma"].as_u64().unwrap() >= v["total"]["lazy"]["anon_vma"].as_u64().unwrap());
}

#[test]
fn bad_input_is_one_clear_line() {
    if !root_or_skip("bad_input_is_one_clear_line") {
        return;
    }
    assert_one_line_error(&lazyvma(&["snapshot", "-p", "4000000"]), "no process with pid 4000000");
    assert_one_line_error(&lazyvma(&["snapshot", "--cgroup", "/nonexistent/cg"]), "not a cgroup directory");
    assert_one_line_error(&lazyvma(&["--btf", "/nonexistent/vmlinux", "snapshot"]), "/nonexistent/vmlinux");
    let fixture = std::env::temp_dir().join(format!("lazyvma-missing-field-{}.btf", std::process::id()));
    std::fs::write(&fixture, fixtures::kernel_like(fixtures::AnonVma::MissingActive, true)).unwrap();
    let out = lazyvma(&["--btf", fixture.to_str().unwrap(), "snapshot"]);
    std::fs::remove_file(&fixture).unwrap();
    assert_one_line_error(&out, "struct `anon_vma` has no field `num_active_vmas`");
    // Not root: drop to nobody.
    let out = Command::new(LAZYVMA).arg("snapshot").uid(65534).gid(65534).output().unwrap();
    assert_one_line_error(&out, "needs root");
}

mod fixtures;
