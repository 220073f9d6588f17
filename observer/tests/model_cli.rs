//! `lazyvma model`: exit 2 with `file:line` on a bad scenario; the JSON shape.

use std::process::Command;

fn lazyvma() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lazyvma"))
}

fn scenario(name: &str, text: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("lazyvma-model-cli-{}-{name}", std::process::id()));
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn bad_scenario_exits_2_naming_file_and_line() {
    let p = scenario("bad.lzs", "process 1\nmmap 1 0x100000000 four\n");
    let out = lazyvma().arg("model").arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:2: expected a page count", p.display())), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");

    let p = scenario("novma.lzs", "process 1\nwrite 1 0x5000\n");
    let out = lazyvma().arg("model").arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(":2: process 1 has no VMA at 0x5000"));

    let out = lazyvma().args(["model", "/nonexistent.lzs"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = lazyvma().args(["model", "--knob", "nope=1"]).arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn json_has_steps_totals_rules_knobs() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../model/scenarios/d-fork-chain.lzs");
    let out = lazyvma().args(["model", file, "-j", "--knob", "fork_of_tree_parent=share"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["steps"].as_array().unwrap().len() >= 10);
    for model in ["eager", "lazy"] {
        for kind in ["anon_vma", "anon_vma_chain", "vm_area_struct"] {
            for f in ["alloc", "free", "live", "peak"] {
                assert!(v["total"][model][kind][f].is_u64(), "total.{model}.{kind}.{f}");
            }
        }
    }
    assert_eq!(v["total"]["eager"]["anon_vma_chain"]["peak"], 30);
    assert_eq!(v["total"]["lazy"]["anon_vma_chain"]["peak"], 12);
    assert_eq!(v["total"]["lazy"]["anon_vma"]["peak"], 3);
    assert_eq!(v["knobs"]["fork_of_tree_parent"], "share");
    assert_eq!(v["rules"]["L5"]["fired"], 6);
    assert_eq!(v["rules"]["L5"]["status"], "open");
    assert!(v["expectations"].as_array().unwrap().iter().all(|c| c["ok"] == true));
}

#[test]
fn sweep_gives_spec_counts_for_every_knob_value() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../model/scenarios/d-fork-chain.lzs");
    let out = lazyvma().args(["model", file, "--sweep", "-j"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Spec §5 D: eager peak 12 / 30; lazy upgrade_first 9 / 27, share 3 / 12.
    assert_eq!(v["eager"]["anon_vma"], serde_json::json!({"alloc": 12, "free": 12, "peak": 12}));
    assert_eq!(v["eager"]["anon_vma_chain"]["peak"], 30);
    let fork = &v["sweep"]["fork_of_tree_parent"];
    assert_eq!((fork["upgrade_first"]["base"].as_bool(), fork["share"]["base"].as_bool()), (Some(true), Some(false)));
    assert_eq!((&fork["upgrade_first"]["lazy"]["anon_vma"]["peak"], &fork["upgrade_first"]["lazy"]["anon_vma_chain"]["peak"]), (&9.into(), &27.into()));
    assert_eq!((&fork["share"]["lazy"]["anon_vma"]["peak"], &fork["share"]["lazy"]["anon_vma_chain"]["peak"]), (&3.into(), &12.into()));
    assert_eq!(fork["share"]["saved"]["anon_vma_chain_peak"], 18);
    assert_eq!(v["sweep"].as_object().unwrap().len(), 13);
    assert_eq!(v["lazy_vma_history"]["lazy"], serde_json::json!({"shared": 3, "never_shared": 0}));
    assert_eq!(v["knobs"]["fork_of_tree_parent"], "upgrade_first");

    // --knob moves the base the other rows hold.
    let out = lazyvma().args(["model", file, "--sweep", "-j", "--knob", "fork_of_tree_parent=share"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["sweep"]["fork_of_tree_parent"]["share"]["base"], true);
    assert_eq!(v["sweep"]["split_upgrades"]["false"]["lazy"]["anon_vma_chain"]["peak"], 12);

    let out = lazyvma().args(["model", file, "--sweep"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("knobs that change lazy counts here: lazy_enabled, fork_of_tree_parent\n"), "{text}");
    assert!(text.contains("upgrade_first *"), "{text}");
}

#[test]
fn sweep_of_a_bad_scenario_exits_2_naming_the_file() {
    let p = scenario("sweepbad.lzs", "process 1\nwrite 1 0x5000\n");
    let out = lazyvma().arg("model").arg(&p).arg("--sweep").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:2: process 1 has no VMA at 0x5000", p.display())), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(!err.contains("panicked"), "{err}");
}
