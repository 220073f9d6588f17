//! The lazy rules that fired (with their stated/inferred/open tags) carried from a real
//! trace into `trace -j`, the report document, its text / markdown / HTML and `merge`.
use serde_json::{json, Value};
use std::collections::BTreeMap;

mod common;
use common::*;

const WORKLOAD: &str = env!("CARGO_BIN_EXE_lazyvma-workload");

fn fired(rules: &Value) -> BTreeMap<String, u64> {
    rules.as_object().expect("lazy_rules is an object").iter().map(|(k, r)| (k.clone(), r["fired"].as_u64().unwrap())).collect()
}

/// `trace -j --report` of `lazyvma-workload fork -n N`: (trace JSON, report document).
fn fork_trace(dir: &Dir, n: usize) -> (Value, Value) {
    let (t, r) = (dir.file(&format!("t{n}.json")), dir.file(&format!("r{n}.json")));
    let cmd = format!("{WORKLOAD} fork -n {n} >/dev/null");
    let rec = dir.file(&format!("t{n}.rec"));
    let text = ok(&lazyvma(&["trace", "-j", "--report", &r, "-o", &rec, "--", "sh", "-c", &cmd]));
    std::fs::write(&t, &text).unwrap();
    let j: Value = serde_json::from_str(&text).unwrap();
    assert_eq!((&j["model"]["complete"], &j["model"]["model_errors"]), (&json!(true), &json!(0)), "{}", j["model"]);
    let doc: Value = serde_json::from_str(&ok(&lazyvma(&["report", "-O", "json", &t]))).unwrap();
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&r).unwrap()).unwrap();
    assert_eq!(written, doc, "trace --report vs report -O json of trace -j");
    (j, doc)
}

#[test]
fn fork_traces_carry_exact_rule_counts_into_reports_and_merge() {
    if !root_or_skip("fork_traces_carry_exact_rule_counts_into_reports_and_merge") {
        return;
    }
    let dir = Dir::new("lazyrules");
    let (t3, d3) = fork_trace(&dir, 3);
    let (t5, d5) = fork_trace(&dir, 5);

    // Spec §5 B per test VMA (model/scenarios/b-fork-child-exits.lzs has 3): every rule
    // the scenario fires, with `model -j`'s tags.
    let sc = format!("{}/../model/scenarios/b-fork-child-exits.lzs", env!("CARGO_MANIFEST_DIR"));
    let m: Value = serde_json::from_str(&ok(&lazyvma(&["model", &sc, "-j"]))).unwrap();
    let per_vma: BTreeMap<String, u64> = fired(&m["rules"]).into_iter().filter(|(_, n)| *n > 0).map(|(k, n)| (k, n / 3)).collect();
    assert_eq!(per_vma, BTreeMap::from([("L1".into(), 1), ("L2".into(), 1), ("L10b".into(), 1), ("L16".into(), 1)]));
    for (name, r) in m["rules"].as_object().unwrap() {
        for t in [&t3, &t5] {
            assert_eq!((&t["lazy_rules"][name]["status"], &t["lazy_rules"][name]["what"]), (&r["status"], &r["what"]), "{name}");
        }
    }
    // Two more test VMAs: each of those rules fires exactly twice more, every other rule
    // (the shell, the loader, libc) exactly as often.
    let (f3, f5) = (fired(&t3["lazy_rules"]), fired(&t5["lazy_rules"]));
    assert_eq!(f3.len(), m["rules"].as_object().unwrap().len());
    for (name, n3) in &f3 {
        assert_eq!(f5[name], n3 + 2 * per_vma.get(name).copied().unwrap_or(0), "{name}: n=3 {n3}, n=5 {}", f5[name]);
    }
    assert!(f3["L2"] >= 3 && f3["L1"] >= 3, "{f3:?}");

    // A replay counts the same; under `--knob lazy_enabled=false` every first fault is an
    // eager prepare (L1b) and no other rule fires.
    let r: Value = serde_json::from_str(&ok(&lazyvma(&["replay", "-j", &dir.file("t3.rec")]))).unwrap();
    assert_eq!(r["lazy_rules"], t3["lazy_rules"]);
    let off: Value = serde_json::from_str(&ok(&lazyvma(&["replay", "-j", "--knob", "lazy_enabled=false", &dir.file("t3.rec")]))).unwrap();
    let off: BTreeMap<String, u64> = fired(&off["lazy_rules"]).into_iter().filter(|(_, n)| *n > 0).collect();
    assert_eq!(off, BTreeMap::from([("L1b".to_string(), f3["L1"])]));

    // The report section is the trace's key, as is.
    assert_eq!(d3["lazy_rules"], t3["lazy_rules"]);
    let text = ok(&lazyvma(&["report", &dir.file("t3.json")]));
    assert!(text.contains("\nLazy rules fired (spec §3.2; status: stated, inferred or open):\nRule | Status | Fired | What\nL1 | stated | "), "{text}");
    assert!(text.contains(&format!("\nL2 | stated | {} | fork of LAZY: parent upgraded, child TREE_PARENT\n", f3["L2"])), "{text}");
    assert!(text.contains(&format!("\nL10b | inferred | {} | munmap/exit of TREE_PARENT: frees its L AVCs\n", f3["L10b"])), "{text}");
    let idle = f3.values().filter(|n| **n == 0).count();
    assert!(text.contains(&format!("\n({idle} of {} rules did not fire)\n", f3.len())), "{text}");
    let md = ok(&lazyvma(&["report", "-O", "markdown", &dir.file("t3.json")]));
    assert!(md.contains(&format!("\n| L16 | inferred | {} | upgrade LAZY -&gt; TREE (K_UPGRADE_USES_NEIGHBOUR_REUSE) |\n", f3["L16"])), "{md}");
    let html = ok(&lazyvma(&["report", "-O", "html", &dir.file("t3.json")]));
    for (name, n) in f3.iter().filter(|(_, n)| **n > 0) {
        assert!(html.contains(&format!("data-k=\"lazy_rules.{name}.fired\">{n}<")), "{name} {n}");
        let status = t3["lazy_rules"][name]["status"].as_str().unwrap();
        assert!(html.contains(&format!("data-k=\"lazy_rules.{name}.status\">{status}<")), "{name} {status}");
    }

    // A fleet sums `fired` per rule.
    let f: Value = serde_json::from_str(&ok(&lazyvma(&["merge", &dir.file("t3.json"), &dir.file("t5.json")]))).unwrap();
    let sum = fired(&f["lazy_rules"]);
    for (name, n3) in &f3 {
        assert_eq!(sum[name], n3 + f5[name], "{name}");
        assert_eq!(f["lazy_rules"][name]["status"], d5["lazy_rules"][name]["status"]);
    }
    // An input without the counts: no partial sum, and a note says why.
    let mut old = d5.clone();
    old.as_object_mut().unwrap().remove("lazy_rules");
    std::fs::write(dir.path("old.json"), old.to_string()).unwrap();
    let f: Value = serde_json::from_str(&ok(&lazyvma(&["merge", &dir.file("r3.json"), &dir.file("old.json")]))).unwrap();
    assert!(f.get("lazy_rules").is_none(), "{f}");
    assert!(f["notes"].as_array().unwrap().iter().any(|n| n == "lazy_rules left out: only 1 of 2 inputs have lazy rule counts"), "{}", f["notes"]);
    // Inputs that tag a rule differently (another model version) do not add up.
    let mut other = d5.clone();
    other["lazy_rules"]["L2"]["status"] = json!("inferred");
    std::fs::write(dir.path("other.json"), other.to_string()).unwrap();
    let out = lazyvma(&["merge", &dir.file("r3.json"), &dir.file("other.json")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!((out.status.code(), err.lines().count()), (Some(1), 1), "{err}");
    for needle in ["r3.json", "other.json", "rule L2", "stated", "inferred"] {
        assert!(err.contains(needle), "`{needle}` not in: {err}");
    }
}

#[test]
fn a_system_trace_says_why_it_has_no_rule_counts() {
    if !root_or_skip("a_system_trace_says_why_it_has_no_rule_counts") {
        return;
    }
    let dir = Dir::new("lazyrules-sys");
    let text = ok(&lazyvma(&["trace", "-j", "-d", "200ms"]));
    let t: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(t["scope"], "system");
    assert!(t["lazy_rules"].is_null(), "not fed: null, never zeros: {}", t["lazy_rules"]);
    assert_eq!(t["lazy_rules_why"], "model not fed (system scope: processes running before the trace are not modelled)");
    std::fs::write(dir.path("t.json"), &text).unwrap();
    let doc: Value = serde_json::from_str(&ok(&lazyvma(&["report", "-O", "json", &dir.file("t.json")]))).unwrap();
    assert!(doc.get("lazy_rules").is_none(), "{doc}");
    assert!(doc["notes"].as_array().unwrap().iter().any(|n| n.as_str().unwrap().starts_with("model not fed")), "{}", doc["notes"]);
    assert!(!ok(&lazyvma(&["report", &dir.file("t.json")])).contains("Lazy rules fired"));
}

/// `model -j` is not a report: `report` says so in one line.
#[test]
fn model_output_is_not_a_report_input() {
    let dir = Dir::new("lazyrules-model");
    let sc = format!("{}/../model/scenarios/b-fork-child-exits.lzs", env!("CARGO_MANIFEST_DIR"));
    std::fs::write(dir.path("m.json"), ok(&lazyvma(&["model", &sc, "-j"]))).unwrap();
    let out = lazyvma(&["report", &dir.file("m.json")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!((out.status.code(), err.lines().count()), (Some(1), 1), "{err}");
    assert!(err.contains("m.json") && err.contains("no `schema` key"), "{err}");
}
