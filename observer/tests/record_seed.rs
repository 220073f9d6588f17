//! `trace -p ... -o REC` on processes started before the trace (root): the recording keeps
//! the snapshot the model was seeded from, so `replay` (as nobody) re-seeds and prints the
//! live report, under `--knob` too; the knob sweep of a seeded trace re-seeds per knob value.
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

mod common;
use common::*;

const LAZYVMA: &str = env!("CARGO_BIN_EXE_lazyvma");

/// `lazyvma-workload fork-chain -n 3 --hold` (4 processes), once all are ready.
fn held() -> (Child, Vec<u32>) {
    let mut w = Command::new(env!("CARGO_BIN_EXE_lazyvma-workload"))
        .args(["fork-chain", "-n", "3", "--hold"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(w.stdout.take().unwrap()).lines();
    let mut pids = Vec::new();
    while pids.len() < 4 {
        let line = lines.next().expect("workload exited before ready").unwrap();
        if let Some((role, pid)) = line.strip_prefix("ready role=").and_then(|r| r.split_once(" pid=")) {
            pids.push((role != "parent", pid.parse().unwrap()));
        }
    }
    // Ready lines come in any order: the parent first, the rest by pid.
    pids.sort_unstable();
    (w, pids.into_iter().map(|p| p.1).collect())
}

/// `lazyvma replay ARGS` as uid 65534: a replay needs no privilege.
fn replay(args: &[&str]) -> Output {
    use std::os::unix::process::CommandExt;
    Command::new(LAZYVMA).arg("replay").args(args).uid(65534).gid(65534).output().expect("running lazyvma replay")
}

fn json(o: &Output) -> Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// (AV alloc, AV free, AVC alloc, AVC free) of a `{anon_vma: {alloc, free}, ...}` object.
fn four(v: &Value) -> [u64; 4] {
    let g = |k: &str, d: &str| v[k][d].as_u64().unwrap_or(u64::MAX);
    [g("anon_vma", "alloc"), g("anon_vma", "free"), g("anon_vma_chain", "alloc"), g("anon_vma_chain", "free")]
}

/// The model's sections of a trace report.
const MODEL: [&str; 7] = ["model", "eager", "lazy", "phases", "lazy_rules", "knobs", "rules_that_matter"];

#[test]
fn a_seeded_trace_replays_the_same_and_its_sweep_starts_from_the_seed() {
    if !root_or_skip("a_seeded_trace_replays_the_same_and_its_sweep_starts_from_the_seed") {
        return;
    }
    let dir = Dir::new("record-seed");
    std::fs::set_permissions(&dir.0, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let rec = dir.file("seed.rec");
    let (mut w, pids) = held();
    let mut t =
        Command::new(LAZYVMA).args(["trace", "-j", "-o", &rec, "-p", &pids[0].to_string()]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // The first live row: the snapshot is taken by then. Then the chain exits.
    let mut err = BufReader::new(t.stderr.take().unwrap()).lines();
    err.next().expect("trace ended before its first row").unwrap();
    std::thread::spawn(move || err.for_each(drop));
    drop(w.stdin.take());
    assert!(w.wait().unwrap().success());
    let live = json(&t.wait_with_output().unwrap());
    let m = &live["model"];
    let mut seeded: Vec<u64> = m["seeded"].as_array().unwrap().iter().filter_map(Value::as_u64).collect();
    seeded.sort_unstable();
    let mut want: Vec<u64> = pids.iter().map(|&p| u64::from(p)).collect();
    want.sort_unstable();
    assert_eq!(seeded, want, "{m}");
    assert_eq!((m["model_errors"].as_u64(), m["complete"].as_bool(), m["events_dropped"].as_u64()), (Some(0), Some(true), Some(0)), "{m}");
    assert!(four(&live["eager"])[3] > 0, "the exits free chains: {}", live["eager"]);

    // Replayed as nobody: re-seeded from the recorded pass, the same model sections.
    let again = json(&replay(&["-j", &rec]));
    assert_eq!(again["recording"]["format_version"], "3.2");
    for k in MODEL {
        assert_eq!(again[k], live[k], "{k}");
    }

    // The sweep: a row per knob value, but the two a snapshot cannot classify under; its
    // base row is the trace's own lazy totals.
    let s = &live["rules_that_matter"];
    let base = &s["sweep"]["lazy_enabled"]["true"];
    assert_eq!(base["base"], true, "{s}");
    assert_eq!(four(&base["lazy"]), four(&live["lazy"]), "{s}");
    assert_eq!(four(&s["eager"]), four(&live["eager"]), "{s}");
    for (knob, values) in lazyvma_model::knobs::KNOBS {
        for v in *values {
            let refused = matches!((*knob, *v), ("fork_of_tree_parent", "share") | ("cow_in_tree_parent", "upgrade"));
            assert_eq!((s["sweep"][knob][v].is_object(), s["not_run"][knob][v].is_string()), (!refused, refused), "{knob}={v}: {s}");
        }
    }

    // The report shows those two values as not run, never leaves them out.
    let file = dir.file("live.json");
    std::fs::write(&file, live.to_string()).unwrap();
    let out = Command::new(LAZYVMA).args(["report", &file]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(text.matches("not run: the seed cannot start under it").count(), 2, "{text}");

    // Under --knob: the replay re-seeds under that knob, and its totals are the sweep's row.
    let off = json(&replay(&["-j", "--knob", "lazy_enabled=false", &rec]));
    assert_eq!(off["model"]["seeded"], live["model"]["seeded"]);
    assert_eq!(four(&off["lazy"]), four(&s["sweep"]["lazy_enabled"]["false"]["lazy"]), "{s}");
    assert_eq!(four(&off["lazy"]), four(&off["eager"]));
    assert_eq!(off["model"]["seeded_live"]["lazy"], off["model"]["seeded_live"]["eager"]);

    // A cap below the events fed: the sweep is not run and "model" says why.
    let capped = json(&replay(&["-j", "--model-events-max", "1", &rec]));
    let fed = capped["model"]["events_fed"].as_u64().unwrap();
    assert!(fed > 1, "{}", capped["model"]);
    assert_eq!(capped["rules_that_matter"], Value::Null);
    assert!(capped["model"]["events_dropped"].as_u64().is_some_and(|d| d > 0 && d < fed));
    // Every event fed is either kept (the first) or dropped.
    assert_eq!(capped["model"]["events_kept"].as_u64().unwrap() + capped["model"]["events_dropped"].as_u64().unwrap(), fed, "{}", capped["model"]);
    assert_eq!(capped["model"]["events_kept"], 1, "{}", capped["model"]);
    assert!(capped["model"]["knob_sweep"].as_str().is_some_and(|w| w.contains("past --model-events-max 1")), "{}", capped["model"]);
    assert_eq!(capped["lazy"], live["lazy"]);
    let text = replay(&["--model-events-max", "1", &rec]);
    assert!(String::from_utf8_lossy(&text.stdout).contains(" past --model-events-max 1 not kept (counted above); knob sweep not run"));
}

/// The seed chunk's body (kind 5, 7 from format 3.1, 8 from 3.2) of a recording, by its framing.
fn seed_chunk(d: &[u8]) -> Option<(u8, usize)> {
    let mut p = 12;
    while p + 9 <= d.len() {
        let len = u32::from_le_bytes(d[p..p + 4].try_into().unwrap()) as usize;
        if [5, 7, 8].contains(&d[p + 8]) {
            return Some((d[p + 8], len - 1));
        }
        p += 8 + len;
    }
    None
}

/// Issue 9: `trace -p` of a small process beside a bigger one outside the scope (manyvmas,
/// 17 processes, ~170k VMAs) seeds as it does alone, and its recording's seed is the
/// scope's size (the whole pass was ~30 MB of JSON here, 317 MiB beside 1 M VMAs).
#[test]
fn a_seed_beside_a_big_process_outside_the_scope_is_the_scope_s_size() {
    if !root_or_skip("a_seed_beside_a_big_process_outside_the_scope_is_the_scope_s_size") {
        return;
    }
    let dir = Dir::new("record-seed-foreign");
    std::fs::set_permissions(&dir.0, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (mut w, pids) = held();
    let trace = |rec: &str| {
        let o = Command::new(LAZYVMA).args(["trace", "-j", "-d", "2", "-o", rec, "-p", &pids[0].to_string()]).output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(!stderr.contains("not recorded"), "{stderr}");
        (json(&o), std::fs::read(rec).unwrap())
    };
    let mut many = Command::new(env!("CARGO_BIN_EXE_lazyvma-workload"))
        .args(["manyvmas", "--loops", "10000", "--hold"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(many.stdout.take().unwrap()).lines();
    let mut ready = 0;
    while ready < 17 {
        ready += usize::from(lines.next().expect("manyvmas exited before ready").unwrap().starts_with("ready role="));
    }
    let (beside, rec) = trace(&dir.file("beside.rec"));
    drop(many.stdin.take());
    assert!(many.wait().unwrap().success());
    let (alone, rec_alone) = trace(&dir.file("alone.rec"));
    drop(w.stdin.take());
    assert!(w.wait().unwrap().success());
    for (k, v) in [("beside", &beside), ("alone", &alone)] {
        assert_eq!(v["model"]["seeded"].as_array().map(Vec::len), Some(4), "{k}: {}", v["model"]);
        assert!(v["model"]["not_seeded"].as_object().is_none_or(|o| o.is_empty()), "{k}: {}", v["model"]);
    }
    assert_eq!(beside["model"]["seeded_live"], alone["model"]["seeded_live"]);
    let ((kind, n), (_, n_alone)) = (seed_chunk(&rec).expect("a seed chunk"), seed_chunk(&rec_alone).expect("a seed chunk"));
    // Alone, the pass's other processes are the machine's few; beside, 17 more, none
    // sharing a tree with the chain: nothing of them is kept.
    assert_eq!(kind, 8);
    assert!(n < 256 << 10 && n < n_alone + (64 << 10), "seed chunk {n} bytes beside manyvmas, {n_alone} without");
    // Replayed: the same model.
    let again = json(&replay(&["-j", &dir.file("beside.rec")]));
    for k in MODEL {
        assert_eq!(again[k], beside[k], "{k}");
    }
}
