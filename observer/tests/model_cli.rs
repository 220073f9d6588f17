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
