//! `lazyvma snapshot` output as issue 2 writes it: the seed's table, elapsed time, the
//! slab cross-check, top N; `-j` with integer object counts per process and in total.
use serde_json::Value;
use std::process::Command;

mod common;
use common::*;

const LAZYVMA: &str = env!("CARGO_BIN_EXE_lazyvma");

fn snapshot(args: &[&str]) -> String {
    let out = Command::new(LAZYVMA).arg("snapshot").args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// `x.y` with one decimal, as the seed's KB cells are.
fn is_kb(s: &str) -> bool {
    s.split_once('.').is_some_and(|(i, d)| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()) && d.len() == 1 && d.bytes().all(|b| b.is_ascii_digit()))
}

fn is_change(s: &str) -> bool {
    s == "n/a" || (s.starts_with(['+', '-']) && s.ends_with('%') && is_kb(&s[1..s.len() - 1]))
}

/// The process rows under "Top processes by savings:" (or "Selected ...").
fn process_rows(text: &str) -> Vec<&str> {
    let Some(at) = text.find("processes by savings:\n") else { return vec![] };
    let mut lines = text[at..].lines().skip(1);
    assert_eq!(lines.next(), Some("PID | COMM | anon_vma before | after | anon_vma_chain before | after | saved (KB)"));
    lines.take_while(|l| !l.is_empty()).collect()
}

#[test]
fn text_is_the_seeds_table_then_top_n() {
    if !root_or_skip("text_is_the_seeds_table_then_top_n") {
        return;
    }
    let text = snapshot(&["--top", "3"]);
    let lines: Vec<&str> = text.lines().collect();
    // The first line says how long the pass took.
    let first = lines[0];
    assert!(first.starts_with("lazyvma snapshot: kernel ") && first.contains(" one iter/task_vma pass in "), "{first}");
    let ms: f64 = first.split(" pass in ").nth(1).unwrap().split(" ms").next().unwrap().parse().unwrap();
    assert!(ms > 0.0 && ms < 1000.0, "whole system in well under a second: {ms} ms");

    let at = lines.iter().position(|l| *l == "Object | Before (KB) | After (KB) | Change").expect("the seed's header");
    for (i, obj) in ["vm_area_struct", "anon_vma_chain", "anon_vma"].iter().enumerate() {
        let cells: Vec<&str> = lines[at + 1 + i].split(" | ").collect();
        assert_eq!(cells.len(), 4, "{}", lines[at + 1 + i]);
        assert_eq!(cells[0], *obj);
        assert!(is_kb(cells[1]) && is_kb(cells[2]) && is_change(cells[3]), "{}", lines[at + 1 + i]);
    }
    assert!(text.contains("\nCross-check with /sys/kernel/slab"), "{text}");
    assert!(text.contains("\n  anon_vma: snapshot "), "{text}");
    let avc_merged = std::fs::read_link("/sys/kernel/slab/anon_vma_chain").is_ok();
    if avc_merged {
        // A merged cache's count is not printed: it is not anon_vma_chain's alone.
        let line = lines.iter().find(|l| l.starts_with("  anon_vma_chain: snapshot ")).unwrap();
        assert!(line.contains("slab cache merged into :") && line.ends_with("not shown"), "{line}");
    }

    // The test's own processes keep the system above three.
    let _w = HeldFork::start(1);
    let text = snapshot(&["--top", "3"]);
    let rows = process_rows(&text);
    assert_eq!(rows.len(), 3, "{rows:?}");
    let saved: Vec<f64> = rows.iter().map(|r| r.rsplit(" | ").next().unwrap().parse().unwrap()).collect();
    assert!(saved.windows(2).all(|w| w[0] >= w[1]), "largest savings first: {saved:?}");
    let default = process_rows(&snapshot(&[])).len();
    assert!((3..=10).contains(&default), "text default 10: {default}");
    assert!(process_rows(&snapshot(&["--top", "0"])).is_empty(), "--top 0: totals alone");
}

#[test]
fn json_has_the_issues_shape() {
    if !root_or_skip("json_has_the_issues_shape") {
        return;
    }
    let w = HeldFork::start(1);
    let v: Value = serde_json::from_str(&snapshot(&["-j"])).unwrap();
    let counts = |c: &Value| {
        for k in ["anon_vma", "anon_vma_chain"] {
            assert!(c[k].is_u64(), "{k} is an integer: {c}");
        }
    };
    let procs = v["processes"].as_array().unwrap();
    assert!(procs.len() >= 2, "JSON lists every process by default");
    for p in procs {
        assert!(p["pid"].is_u64() && p["comm"].is_string(), "{p}");
        counts(&p["eager"]);
        counts(&p["lazy"]);
    }
    counts(&v["total"]["eager"]);
    counts(&v["total"]["lazy"]);
    let ms = v["elapsed_ms"].as_f64().unwrap();
    assert!(ms > 0.0 && ms < 1000.0, "{ms}");
    assert!(procs.iter().any(|p| p["pid"] == w.parent) && procs.iter().any(|p| p["pid"] == w.child));

    for side in ["eager", "lazy"] {
        // Distinct anon_vmas system-wide: every process's own ones are among them (and
        // those of exited parents, still linked from their children's chains).
        let most = procs.iter().map(|p| p[side]["anon_vma"].as_u64().unwrap()).max().unwrap();
        assert!(v["total"][side]["anon_vma"].as_u64().unwrap() >= most, "{side}");
        // Every chain entry is one object: the total is the plain sum.
        let chains: u64 = procs.iter().map(|p| p[side]["anon_vma_chain"].as_u64().unwrap()).sum();
        assert_eq!(v["total"][side]["anon_vma_chain"].as_u64(), Some(chains), "{side}");
    }

    let top: Value = serde_json::from_str(&snapshot(&["-j", "--top", "2"])).unwrap();
    assert_eq!(top["processes"].as_array().unwrap().len(), 2);
    let none: Value = serde_json::from_str(&snapshot(&["-j", "--top", "0"])).unwrap();
    assert_eq!(none["processes"], serde_json::json!([]));
    assert!(none["total"]["eager"]["anon_vma"].is_u64());
}

#[test]
fn btf_given_with_the_flag_is_the_one_read() {
    if !root_or_skip("btf_given_with_the_flag_is_the_one_read") {
        return;
    }
    // A copy elsewhere: the path given, not the default, is the one that must work.
    let dir = Dir::new("btf-flag");
    let copy = dir.file("vmlinux");
    std::fs::copy("/sys/kernel/btf/vmlinux", &copy).unwrap();
    let v: Value = serde_json::from_str(&snapshot(&["--btf", &copy, "-j", "--top", "0"])).unwrap();
    assert!(v["total"]["eager"]["anon_vma"].as_u64().unwrap() > 0);
    let out = Command::new(LAZYVMA).args(["--btf", &copy, "doctor", "-j"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let d: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((d["btf"]["present"].as_bool(), d["btf"]["path"].as_str()), (Some(true), Some(copy.as_str())));
    assert_eq!(d["attach"]["tp_btf"]["ok"], true);
}
