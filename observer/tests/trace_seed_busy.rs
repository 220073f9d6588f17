//! `trace -p` of a tree that forks, execs and faults without pause while lazyvma seeds it
//! (issue 12): nothing lost, the quiet processes seeded, each racing one named with its
//! reason, and every row the model claims exact (observed = eager + prepare-race spares +
//! what was observed before the process's seed); a row it cannot claim says why.
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Command;

mod common;
use common::*;

const LAZYVMA: &str = env!("CARGO_BIN_EXE_lazyvma");

fn four(v: &Value) -> [u64; 4] {
    let g = |k: &str, d: &str| v[k][d].as_u64().unwrap_or(0);
    [g("anon_vma", "alloc"), g("anon_vma", "free"), g("anon_vma_chain", "alloc"), g("anon_vma_chain", "free")]
}

#[test]
fn a_busy_tree_is_seeded_per_process_and_modelled_exactly() {
    if !root_or_skip("a_busy_tree_is_seeded_per_process_and_modelled_exactly") {
        return;
    }
    // dash: the parent waits; `sleep` rests; two workers fork (vfork + exec) the workload,
    // which maps and writes, and fork a subshell, until the trace has been live for a
    // second (a stop file: a loaded machine may take many seconds to attach and seed).
    let dir = Dir::new("seed-busy");
    let stop = dir.path("stop");
    let script = r#"w() { while [ ! -e "$1" ]; do "$0" touch -n 2 >/dev/null; x=$(echo a); done; }
sleep 600 & s=$!; w "$1" & a=$!; w "$1" & b=$!; wait $a $b; kill $s; wait"#;
    let mut tree = Command::new("sh").args(["-c", script, env!("CARGO_BIN_EXE_lazyvma-workload")]).arg(&stop).spawn().unwrap();
    let (parent, me) = (tree.id(), std::process::id());
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut trace = Command::new(LAZYVMA)
        .args(["trace", "-j", "-p", &parent.to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // -j: the live rows go to stderr, the first once the running processes are seeded.
    let err = trace.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(err).lines();
        let mut text = String::new();
        let mut stop = Some(stop);
        while let Some(Ok(l)) = lines.next() {
            if l.contains("AV alloc") {
                if let Some(s) = stop.take() {
                    std::thread::sleep(std::time::Duration::from_secs(1));
                    std::fs::write(s, "").unwrap();
                }
            }
            text.push_str(&l);
            text.push('\n');
        }
        if let Some(s) = stop {
            let _ = std::fs::write(s, "");
        }
        text
    });
    let out = trace.wait_with_output().unwrap();
    let stderr = reader.join().unwrap();
    assert!(tree.wait().unwrap().success());
    assert!(out.status.success(), "{stderr}");
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    let m = &j["model"];
    assert_eq!((j["lost_events"].as_u64(), m["model_errors"].as_u64(), m["faults_not_placed"].as_u64()), (Some(0), Some(0), Some(0)), "{m}");
    assert_eq!(j["ended_by"], "all traced processes exited");
    // Each process once; neither this test nor lazyvma in the scope.
    let procs = j["processes"].as_array().unwrap();
    let mut seen = BTreeMap::new();
    for p in procs {
        *seen.entry(p["tgid"].as_u64().unwrap()).or_insert(0) += 1;
        assert_eq!(p["exited"], true, "{p}");
    }
    assert!(seen.values().all(|&n| n == 1), "{seen:?}");
    assert!(!seen.contains_key(&u64::from(me)));
    // The parent (in wait4) and `sleep` rest: seeded. Every other process of the first
    // scan is seeded or named with a race.
    let seeded: Vec<u64> = m["seeded"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    let kids = |p: &Value| procs.iter().filter(|c| c["parent"] == p["proc"]).count();
    let sleep = procs.iter().find(|p| p["parent"] == 0 && kids(p) == 0).expect("sleep's entry")["tgid"].as_u64().unwrap();
    assert!(seeded.contains(&u64::from(parent)) && seeded.contains(&sleep), "{m}");
    let races = ["raced the snapshot", "running when the snapshot began", "a VMA syscall", "outside a syscall", "exited before the snapshot was placed"];
    for (tgid, why) in m["not_seeded"].as_object().unwrap() {
        assert!(races.iter().any(|r| why.as_str().unwrap().contains(r)), "{tgid}: {why}");
        assert!(!seeded.contains(&tgid.parse().unwrap()), "{tgid}");
    }
    // Every row the model claims is exact; the rest say why or have no model at all.
    let (mut exact, mut flagged, mut wrong) = (0, 0, vec![]);
    for r in j["phases"].as_array().unwrap().iter().filter(|r| r["eager"].is_object()) {
        let mut e = four(&r["eager"]);
        for k in ["prepare_race_spares", "before_seed"] {
            e = std::array::from_fn(|i| e[i] + four(&r[k])[i]);
        }
        match (four(r) == e, r["not_modelled"].is_string()) {
            (true, _) => exact += 1,
            (false, true) => flagged += 1,
            (false, false) => wrong.push(r.clone()),
        }
    }
    assert_eq!(wrong, Vec::<Value>::new(), "{exact} exact, {flagged} flagged");
    assert!(exact > 20, "{exact} exact rows");
    eprintln!(
        "{} processes, {} seeded, {:?} not seeded, {exact} exact rows, {flagged} flagged, pass {} µs",
        procs.len(),
        seeded.len(),
        m["not_seeded"],
        m["seed_pass_us"]
    );
}
