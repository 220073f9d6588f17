//! `lazyvma trace` on the real kernel: the host fidelity check. Each workload scenario runs
//! under `trace -j` with N=3 and N=0 test VMAs; the difference, per (process, phase) and in
//! total, must equal the exact eager counts of spec §5 / §1.12 in the table shared with
//! `cargo xtask fidelity` (observer/tests/fidelity/expected.json).
use serde_json::Value;
use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    os::unix::process::CommandExt,
    process::{Command, Stdio},
};

mod common;
use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_lazyvma");
/// `LAZYVMA_WORKLOAD` overrides the built one (e.g. a workload built elsewhere).
fn workload() -> String {
    std::env::var("LAZYVMA_WORKLOAD").unwrap_or_else(|_| env!("CARGO_BIN_EXE_lazyvma-workload").into())
}
const N: i64 = 3;
/// lazyvma-workload's exit phase marker (madvise(0, 0, 1000 + id)).
const EXIT: i64 = 16;

/// The workload binary, unless this tree still has the placeholder (before the workload
/// branch is merged): then the scenario tests say so and skip.
fn workload_ready(test: &str) -> bool {
    let out = Command::new(workload()).args(["noop", "-n", "0"]).output().expect("running lazyvma-workload");
    if out.status.success() {
        return true;
    }
    eprintln!("{test}: skipped: lazyvma-workload has no scenarios here ({})", String::from_utf8_lossy(&out.stderr).trim());
    false
}

/// Address-space randomisation off, so the process's own VMAs (heap, stack, libraries) lay
/// out the same in the N=3 and N=0 runs and the difference is the test VMAs' alone.
fn no_aslr(cmd: &mut Command) -> &mut Command {
    // SAFETY: personality is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::personality(libc::ADDR_NO_RANDOMIZE as libc::c_ulong);
            Ok(())
        })
    }
}

/// A trace that lost ring-buffer records (its reader starved of CPU on a loaded machine; the
/// report says how many) cannot be compared exactly: it is run again, up to three times.
fn trace_json(scenario: &str, n: i64) -> Value {
    for attempt in 1..=3 {
        let (j, stderr) = trace_once(scenario, n);
        if j["lost_events"] == 0 {
            return check_trace(scenario, n, j, &stderr);
        }
        eprintln!("trace {scenario} -n {n}: {} events lost (run {attempt} of 3): incomplete, not compared", j["lost_events"]);
    }
    panic!("trace {scenario} -n {n}: events lost in each of 3 runs");
}

/// Scenarios whose reasons only the kernel stack tells: `split`'s clones inside mprotect
/// are a split's, which the syscall alone leaves `split/merge`.
const STACKS: &[&str] = &["split"];

fn trace_once(scenario: &str, n: i64) -> (Value, String) {
    let n = n.to_string();
    let stacks: &[&str] = if STACKS.contains(&scenario) { &["--stacks"] } else { &[] };
    let out = no_aslr(Command::new(BIN).args(["trace", "-j", "--model-events"]).args(stacks).args(["--", &workload(), scenario, "-n", &n]))
        .output()
        .expect("running lazyvma");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // --model-events lines are for model_matches' message, not every failure's.
    let stderr: String = stderr.lines().filter(|l| !l.starts_with("model proc")).collect::<Vec<_>>().join("\n");
    assert!(out.status.success(), "trace {scenario} -n {n}: {stderr}");
    let j = report(&out.stdout).unwrap_or_else(|e| panic!("trace {scenario}: no JSON report on stdout ({e}): {stderr}"));
    (j, stderr)
}

fn check_trace(scenario: &str, n: i64, j: Value, stderr: &str) -> Value {
    assert_eq!(j["command"]["exit_status"], 0, "{scenario} -n {n} failed: {stderr}");
    assert_eq!(j["events"]["sent"], j["events"]["received"], "{scenario} -n {n}: sent != received");
    assert_eq!(j["backend"]["__anon_vma_prepare"].as_str().map(|b| b != "unavailable"), Some(true));
    let what = format!("{scenario} -n {n}");
    match scenario_entry(scenario)["model_inexact"].as_str() {
        // Fed, and complete or saying why not (never silently inexact).
        Some(_) => assert!(
            j["model"]["fed"] == true && (j["model"]["complete"] == true || j["model"]["incomplete"].as_array().is_some_and(|v| !v.is_empty())),
            "{what}: {}",
            j["model"]
        ),
        None => model_matches(&what, &j, &combined(scenario)),
    }
    j
}

/// The scenario's entry in expected.json (null if it has none).
fn scenario_entry(scenario: &str) -> Value {
    table()["scenarios"].as_array().unwrap().iter().find(|e| e["name"] == scenario).cloned().unwrap_or_default()
}

/// The scenario's `combine` phases (expected.json) as ids: one thread's marker races
/// another's records, so those phases are summed.
fn combined(scenario: &str) -> Vec<i64> {
    let t = table();
    let e = scenario_entry(scenario);
    e["combine"].as_array().into_iter().flatten().map(|p| phase_id(&t, p.as_str().unwrap())).collect()
}

/// The model fed with the trace reproduces the slab exactly: eager == observed in total and
/// per (process, phase), for the whole tree (the workload's own image included), with
/// nothing it could not place. On a mismatch: the first diverging row and its events.
fn model_matches(what: &str, j: &Value, combine: &[i64]) {
    let m = &j["model"];
    assert_eq!(m["fed"], true, "{what}: {m}");
    assert_eq!(m["complete"], true, "{what}: {m}");
    for k in ["faults_not_placed", "layout_mismatches", "model_errors"] {
        assert_eq!(m[k], 0, "{what}: {k}: {m}");
    }
    assert_eq!(m["not_modelled"], serde_json::json!([]), "{what}: {m}");
    let plus = |a: Four, b: Four| [a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3]];
    let key = |p: &Value| {
        let phase = p["phase"].as_i64().unwrap_or(-1);
        (p["proc"].as_i64().unwrap_or(-1), if combine.contains(&phase) { combine[0] } else { phase })
    };
    let (mut model, mut slab) = (BTreeMap::<(i64, i64), Four>::new(), BTreeMap::<(i64, i64), Four>::new());
    for p in j["phases"].as_array().expect("phases") {
        // Spares of a lost prepare race (threads) are the slab's, not the model's.
        let m = model.entry(key(p)).or_default();
        *m = plus(*m, plus(four(&p["eager"]), four(&p["prepare_race_spares"])));
        let s = slab.entry(key(p)).or_default();
        *s = plus(*s, four(p));
    }
    for (k, v) in &slab {
        let there: Vec<&str> = m["events"].as_array().into_iter().flatten().filter(|e| key(e) == *k).filter_map(|e| e["event"].as_str()).collect();
        assert_eq!(model.get(k), Some(v), "{what}: (proc, phase) {k:?}: model eager != observed [+AV, -AV, +AVC, -AVC]; events there: {there:?}");
    }
    assert_eq!(plus(four(&j["eager"]), four(&m["prepare_race_spares"])), four(&j["observed"]), "{what}: model eager (+ race spares) total != observed");
}

/// The JSON report: the command shares stdout and writes first, the report starts at the
/// first line that opens an object.
fn report(stdout: &[u8]) -> serde_json::Result<Value> {
    let s = String::from_utf8_lossy(stdout);
    let at = if s.starts_with('{') { 0 } else { s.find("\n{").map_or(s.len(), |i| i + 1) };
    serde_json::from_str(&s[at..])
}

/// [AV alloc, AV free, AVC alloc, AVC free].
type Four = [i64; 4];

fn four(v: &Value) -> Four {
    let g = |k: &str, op: &str| v[k][op].as_i64().unwrap_or(0);
    [g("anon_vma", "alloc"), g("anon_vma", "free"), g("anon_vma_chain", "alloc"), g("anon_vma_chain", "free")]
}

/// (proc, phase) → counts; phase -1 is "before any marker".
fn phases(j: &Value) -> BTreeMap<(i64, i64), Four> {
    let mut m = BTreeMap::new();
    for p in j["phases"].as_array().expect("phases") {
        let key = (p["proc"].as_i64().unwrap(), p["phase"].as_i64().unwrap_or(-1));
        m.insert(key, four(p));
    }
    m
}

fn sub<K: Ord + Clone>(a: &BTreeMap<K, Four>, b: &BTreeMap<K, Four>) -> BTreeMap<K, Four> {
    let mut out = BTreeMap::new();
    for k in a.keys().chain(b.keys()) {
        let x = a.get(k).copied().unwrap_or_default();
        let y = b.get(k).copied().unwrap_or_default();
        let d = [x[0] - y[0], x[1] - y[1], x[2] - y[2], x[3] - y[3]];
        if d != [0; 4] {
            out.insert(k.clone(), d);
        }
    }
    out
}

struct Diff {
    total: Four,
    phases: BTreeMap<(i64, i64), Four>,
    reasons: BTreeMap<String, Four>,
}

/// counts(N=3) − counts(N=0).
fn diff(scenario: &str) -> Diff {
    let a = trace_json(scenario, N);
    let b = trace_json(scenario, 0);
    let t = |j: &Value| four(&j["observed"]);
    let (ta, tb) = (t(&a), t(&b));
    let reasons = |j: &Value| j["by_reason"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), four(v))).collect::<BTreeMap<_, _>>();
    Diff {
        total: [ta[0] - tb[0], ta[1] - tb[1], ta[2] - tb[2], ta[3] - tb[3]],
        phases: sub(&phases(&a), &phases(&b)),
        reasons: sub(&reasons(&a), &reasons(&b)),
    }
}

/// observer/tests/fidelity/expected.json: the eager counts per test VMA, shared with
/// `cargo xtask fidelity` (which checks the same rows on Debian 6.1 / 6.12 guests).
fn table() -> Value {
    serde_json::from_str(include_str!("fidelity/expected.json")).expect("expected.json is JSON")
}

fn phase_id(t: &Value, name: &str) -> i64 {
    t["phases"][name].as_i64().unwrap_or_else(|| panic!("phase {name} not in expected.json"))
}

/// The table's rows for `scenario` checked against counts(N) − counts(N=0): every
/// (process, phase) listed equals its row × N, every other one is unchanged. Phases in the
/// entry's `combine` are summed first (their order races); `reasons` are checked too.
fn check(scenario: &str) -> Diff {
    check_as(scenario, scenario)
}

/// `check` of `scenario` against the table's entry `entry`.
fn check_as(scenario: &str, entry: &str) -> Diff {
    let t = table();
    let e = t["scenarios"].as_array().unwrap().iter().find(|e| e["name"] == entry).unwrap_or_else(|| panic!("{entry} not in expected.json"));
    let combine: Vec<i64> = e["combine"].as_array().into_iter().flatten().map(|p| phase_id(&t, p.as_str().unwrap())).collect();
    let mut d = diff(scenario);
    if let Some((first, rest)) = combine.split_first() {
        let mut merged = BTreeMap::new();
        for ((proc, phase), v) in std::mem::take(&mut d.phases) {
            let key = (proc, if rest.contains(&phase) { *first } else { phase });
            let e: &mut Four = merged.entry(key).or_default();
            for (x, y) in e.iter_mut().zip(v) {
                *x += y;
            }
        }
        d.phases = merged.into_iter().filter(|(_, v)| *v != [0; 4]).collect();
    }
    let times = |v: &Value| -> Four {
        let r: Vec<i64> = v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap() * N).collect();
        [r[0], r[1], r[2], r[3]]
    };
    let want: BTreeMap<(i64, i64), Four> =
        e["rows"].as_array().unwrap().iter().map(|r| ((r[0].as_i64().unwrap(), phase_id(&t, r[1].as_str().unwrap())), times(&r[2]))).collect();
    assert_eq!(d.phases, want, "{scenario}: per-phase difference N={N} minus N=0, (proc, phase) → [+AV, -AV, +AVC, -AVC]");
    let total = want.values().fold([0; 4], |a, v| [a[0] + v[0], a[1] + v[1], a[2] + v[2], a[3] + v[3]]);
    assert_eq!(d.total, total, "{scenario}: total difference");
    for (reason, per) in e["reasons"].as_object().into_iter().flatten() {
        assert_eq!(d.reasons.get(reason), Some(&times(per)), "{scenario}: reason {reason}: {:?}", d.reasons);
    }
    d
}

macro_rules! scenario {
    ($name:ident, $scenario:expr) => {
        #[test]
        fn $name() {
            if !root_or_skip(stringify!($name)) || !workload_ready(stringify!($name)) {
                return;
            }
            check($scenario);
        }
    };
}

scenario!(touch, "touch");
scenario!(touch_read, "touch-read");
scenario!(fork, "fork");
scenario!(fork_untouched, "fork-untouched");
scenario!(fork_chain, "fork-chain");
scenario!(fork_exec, "fork-exec");
scenario!(adjacent, "adjacent");
scenario!(reuse, "reuse");
scenario!(vfork_fork, "vfork-fork");
scenario!(munmap, "munmap");
scenario!(munmap_hole, "munmap-hole");
scenario!(threads, "threads");
scenario!(noop, "noop");
// §5 E, and the reason of each clone told from the kernel stack (`--stacks`).
scenario!(split_then_merge_with_reasons, "split");
// §1.7, with the reasons (from the syscall: no stack).
scenario!(mremap_with_reasons, "mremap");

/// GUP prepares (place.rs): each placed at madvise's exit by its anon_vma_chain, never at
/// the thread's last fault address; the objects are `touch`'s exactly, and the fed model
/// (check_trace) is exact and complete. Host only: the guests' prepare hooks see the VMA.
#[test]
fn populate_is_placed_like_a_fault() {
    if !root_or_skip("populate_is_placed_like_a_fault") || !workload_ready("populate_is_placed_like_a_fault") {
        return;
    }
    check_as("populate", "touch");
}

/// A write through /proc/self/mem prepares inside write(2): no fault address, and no VMA
/// syscall's exit to place it at. Where the `__anon_vma_prepare` hook attaches (the guests:
/// `cargo xtask fidelity`, scenario proc-mem) its VMA places each exactly; on a host without
/// that hook (this one: fentry refused, no kprobes) each is counted not placed and the model
/// says it is incomplete: never placed at the thread's stale fault address.
#[test]
fn proc_mem_prepares_need_the_hook() {
    if !root_or_skip("proc_mem_prepares_need_the_hook") || !workload_ready("proc_mem_prepares_need_the_hook") {
        return;
    }
    let j = (1..=3).map(|_| trace_once("proc-mem", N).0).find(|j| j["lost_events"] == 0).expect("proc-mem: records lost in 3 runs");
    assert_eq!(j["command"]["exit_status"], 0, "proc-mem: {j}");
    let m = &j["model"];
    if matches!(j["backend"]["__anon_vma_prepare"].as_str(), Some("fentry" | "kprobe")) {
        assert_eq!(m["prepares_placed_by_hook"], N, "{m}");
        model_matches("proc-mem", &j, &[]);
        return;
    }
    let counted = [&m["faults_not_placed"], &m["prepares_outside_fault"], &m["prepares_placed_by_hook"]].map(|v| v.as_i64());
    assert_eq!(counted, [Some(N), Some(N), Some(0)], "proc-mem: not placed, outside a fault, placed by the hook: {m}");
    assert_eq!(m["complete"], false, "{m}");
    // What the model lacks is exactly those N prepares (the image's own are placed).
    let (e, o) = (four(&j["eager"]), four(&j["observed"]));
    assert_eq!([o[0] - e[0], o[1] - e[1], o[2] - e[2], o[3] - e[3]], [N; 4], "proc-mem: observed - eager: {}", j["observed"]);
}

/// Every scenario the table marks for this host has a test above.
#[test]
fn table_scenarios_are_all_tested_here() {
    let tested = [
        "touch",
        "touch-read",
        "fork",
        "fork-untouched",
        "fork-chain",
        "fork-exec",
        "adjacent",
        "reuse",
        "vfork-fork",
        "munmap",
        "munmap-hole",
        "threads",
        "noop",
        "split",
        "mremap",
    ];
    let t = table();
    for e in t["scenarios"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap();
        assert!(e["host"] == false || tested.contains(&name), "{name} is in expected.json for the host but not tested here");
    }
}

/// `-p`: processes alive before the trace (a held fork: parent and child) and their exits.
#[test]
fn pids_follow_existing_descendants() {
    if !root_or_skip("pids_follow_existing_descendants") || !workload_ready("pids_follow_existing_descendants") {
        return;
    }
    let run = |n: i64| -> Value {
        let mut w = no_aslr(Command::new(workload()).args(["fork", "-n", &n.to_string(), "--hold"]))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("running lazyvma-workload");
        let mut lines = BufReader::new(w.stdout.take().unwrap()).lines();
        for _ in 0..2 {
            assert!(lines.next().unwrap().unwrap().starts_with("ready "));
        }
        let mut t = Command::new(BIN)
            .args(["trace", "-j", "-i", "100ms", "-p", &w.id().to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running lazyvma");
        // The first live row means the programs are attached.
        let mut err = BufReader::new(t.stderr.take().unwrap()).lines();
        assert!(err.next().unwrap().unwrap().contains("AV alloc"));
        drop(w.stdin.take());
        assert!(w.wait().unwrap().success());
        let out = t.wait_with_output().unwrap();
        assert!(out.status.success());
        serde_json::from_slice(&out.stdout).expect("JSON report")
    };
    let (a, b) = (run(N), run(0));
    assert_eq!(a["ended_by"], "all traced processes exited");
    assert_eq!(a["processes"].as_array().unwrap().len(), 2, "{}", a["processes"]);
    // Objects allocated before the trace are told apart by the freeing function.
    let d = sub(&phases(&a), &phases(&b));
    let want = BTreeMap::from([((1, EXIT), [0, N, 0, 2 * N]), ((0, EXIT), [0, N, 0, N])]);
    assert_eq!(d, want);
    // Built before the trace: seeded from the snapshot taken at its start (trace/feed/seed.rs),
    // then modelled exactly.
    assert_eq!(a["model"]["seeded"].as_array().map(Vec::len), Some(2), "{}", a["model"]);
    assert_eq!(a["model"]["not_modelled"], serde_json::json!([]), "{}", a["model"]);
    assert_eq!(four(&a["eager"]), four(&a["observed"]));
}

#[test]
fn command_not_found_is_one_line() {
    if !root_or_skip("command_not_found_is_one_line") {
        return;
    }
    let out = lazyvma(&["trace", "--", "/nonexistent/lazyvma-no-such-cmd"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim(), "lazyvma: command not found: /nonexistent/lazyvma-no-such-cmd");
    let out = lazyvma(&["trace", "--", "lazyvma-no-such-cmd"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "lazyvma: command not found: lazyvma-no-such-cmd (not in PATH)");
}

#[test]
fn command_exit_status_is_reported() {
    if !root_or_skip("command_exit_status_is_reported") {
        return;
    }
    let out = lazyvma(&["trace", "-j", "--", "sh", "-c", "exit 7"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["command"]["exit_status"], 7);
    assert_eq!(j["command"]["argv"], serde_json::json!(["sh", "-c", "exit 7"]));
    // sh's own image, all of it, through the model: a real program, not a workload.
    model_matches("sh -c 'exit 7'", &j, &[]);
    assert!(j["rmap"].is_null());
    // sh's own image: every object it allocated was freed by its exit.
    let o = four(&j["observed"]);
    assert!(o[0] > 0 && o[0] == o[1] && o[2] == o[3], "{o:?}");
}

#[test]
fn unknown_pid_is_one_line() {
    if !root_or_skip("unknown_pid_is_one_line") {
        return;
    }
    // Above the default pid_max ceiling (4194304), so never a live pid.
    let out = lazyvma(&["trace", "-p", "4194305"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "lazyvma: no such process: 4194305");
}

#[test]
fn not_root_is_one_line_exit_1() {
    if !root_or_skip("not_root_is_one_line_exit_1") {
        return;
    }
    let out = Command::new(BIN).args(["trace", "--", "true"]).uid(65534).gid(65534).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("needs root"), "{err}");
}

#[test]
fn duration_ends_a_whole_system_trace() {
    if !root_or_skip("duration_ends_a_whole_system_trace") {
        return;
    }
    let out = lazyvma(&["trace", "-j", "-d", "300ms"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["scope"], "system");
    assert_eq!(j["ended_by"], "duration");
    assert_eq!(j["model"]["fed"], false);
    assert!(j["eager"].is_null() && j["lazy"].is_null());
    assert!(j["elapsed_ms"].as_u64().unwrap() >= 300);
    assert!(j["command"].is_null());
}

/// glibc's posix_spawn child (CLONE_VM | CLONE_VFORK) runs on a stack its parent mapped and
/// faults it in: the prepare is the child's task in the parent's mm. The feed applies it to
/// the parent's model, counted at the child's row, as the slab tally counts it; then the
/// child's exec gives it its own mm. Python's `os.posix_spawn` is glibc's.
#[test]
fn posix_spawn_child_prepares_in_its_parents_mm() {
    if !root_or_skip("posix_spawn_child_prepares_in_its_parents_mm") {
        return;
    }
    let python = ["/usr/bin/python3", "/usr/local/bin/python3"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("this test needs a python3 (its os.posix_spawn is glibc's)");
    let prog = "import os\nfor i in range(3):\n    os.waitpid(os.posix_spawn('/bin/true', ['true'], {}), 0)\n";
    let out = Command::new(BIN).args(["trace", "-j", "--model-events", "--", python, "-c", prog]).output().expect("running lazyvma");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let j = report(&out.stdout).expect("JSON report");
    assert_eq!(j["lost_events"], 0, "events lost");
    model_matches("posix_spawn", &j, &[]);
    // Each child's row holds one anon_vma and one chain more than it frees (the spawn stack,
    // prepared in its parent's mm), and the parent frees the three at its munmaps and exit.
    let net = |p: &Value| {
        let f = four(p);
        [f[0] - f[1], f[2] - f[3]]
    };
    let rows = j["phases"].as_array().unwrap();
    let children: Vec<[i64; 2]> = rows.iter().filter(|p| p["proc"].as_i64() != Some(0)).map(net).collect();
    assert_eq!(children, [[1, 1]; 3], "{}", j["phases"]);
    let parent: Vec<[i64; 2]> = rows.iter().filter(|p| p["proc"].as_i64() == Some(0)).map(net).collect();
    assert_eq!(parent, [[-3, -3]], "{}", j["phases"]);
}

/// The count map's per-CPU front (`TALLY_FRONT`) changes no count: the same fork loop traced
/// with it and without it (lazyvma held to one CPU by `taskset`, where the front is off)
/// gives the same rows per (process, phase), and the model's eager counts equal the slab's.
#[test]
fn the_count_front_changes_no_count() {
    if !root_or_skip("the_count_front_changes_no_count") || !workload_ready("the_count_front_changes_no_count") {
        return;
    }
    let run = |pinned: bool| -> Value {
        let w = workload();
        let args = ["trace", "-j", "--", w.as_str(), "fork-loop", "-n", "16", "--loops", "200"];
        let mut cmd = if pinned {
            let mut c = Command::new("taskset");
            c.args(["-c", "0", BIN]).args(args);
            c
        } else {
            let mut c = Command::new(BIN);
            c.args(args);
            c
        };
        let out = no_aslr(&mut cmd).output().expect("running lazyvma");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let j = report(&out.stdout).expect("trace -j");
        assert_eq!(j["lost_events"], 0, "records lost: not comparable");
        assert_eq!(j["eager"], j["observed"], "model eager != observed (pinned: {pinned})");
        j
    };
    let (front, plain) = (run(false), run(true));
    assert_eq!(front["observed"], plain["observed"]);
    assert_eq!(phases(&front), phases(&plain));
    assert!(four(&front["observed"])[0] >= 200, "{}", front["observed"]);
}
