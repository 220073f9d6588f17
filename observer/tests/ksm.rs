//! KSM merges and rmap_item removals as `lazyvma trace` reports them, on the real kernel:
//! `lazyvma-workload ksm` with ksmd started and scanning fast, every KSM sysfs value this
//! test changes restored on every exit path (a guard's drop, panics included).
use serde_json::Value;
use std::process::Command;

mod common;
use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_lazyvma");
const WORKLOAD: &str = env!("CARGO_BIN_EXE_lazyvma-workload");
const KSM: &str = "/sys/kernel/mm/ksm";
/// lazyvma-workload's phase markers (docs/workload.md).
const PHASE_KSM: u64 = 9;
const PHASE_EXIT: u64 = 16;
/// Test pages per VMA (lazyvma-workload's PAGES).
const PAGES: u64 = 4;

/// KSM's knobs as they were; written back on drop.
struct KsmOn(Vec<(&'static str, String)>);

impl KsmOn {
    fn start() -> KsmOn {
        let mut saved = KsmOn(Vec::new());
        // Fast scanning so 4N pages merge in a few scans, and ksmd tears the stable node
        // down soon after the workload exits.
        for (knob, value) in [("pages_to_scan", "1000"), ("sleep_millisecs", "10"), ("run", "1")] {
            let path = format!("{KSM}/{knob}");
            let old = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")).trim().to_string();
            saved.0.push((knob, old));
            std::fs::write(&path, value).unwrap_or_else(|e| panic!("{path}: {e}"));
        }
        saved
    }
}

impl Drop for KsmOn {
    fn drop(&mut self) {
        // run first: ksmd stops before its pace goes back.
        for (knob, old) in self.0.iter().rev() {
            let path = format!("{KSM}/{knob}");
            if let Err(e) = std::fs::write(&path, old) {
                eprintln!("ksm test: could not restore {path} to {old}: {e}");
            }
        }
    }
}

/// The report after the command's own output; and the workload's pid from its `done` line.
fn trace(n: u64) -> (Value, u32) {
    // The shell outlives the workload by 2 s, and more until ksmd has torn its stable node
    // down (pages_shared back where it was; at most 20 s): ksmd removes an exited mm's
    // rmap_items on a scan after the exit, and the trace ends when its command does.
    let script = format!(
        "s={KSM}/pages_shared; b=$(cat $s); {WORKLOAD} ksm -n {n} || exit 1; sleep 2; i=0; \
         while [ $i -lt 200 ] && [ $(cat $s) -gt $b ]; do sleep 0.1; i=$((i+1)); done"
    );
    let out = Command::new(BIN).args(["trace", "-j", "--", "sh", "-c", &script]).output().expect("running lazyvma");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "trace ksm -n {n}: {stderr}");
    let done = stdout.lines().find(|l| l.starts_with("done scenario=ksm")).unwrap_or_else(|| panic!("no done line: {stdout} {stderr}"));
    let field = |k: &str| done.split_whitespace().find_map(|w| w.strip_prefix(k)).unwrap_or_else(|| panic!("{k} missing: {done}")).to_string();
    assert_eq!(field("merged=").parse::<u64>().unwrap(), n * PAGES, "ksmd did not merge every page: {done}");
    let at = stdout.find("\n{").map(|i| i + 1).unwrap_or(0);
    let j: Value = serde_json::from_str(&stdout[at..]).unwrap_or_else(|e| panic!("no JSON report ({e}): {stderr}"));
    assert_eq!(j["command"]["exit_status"], 0, "{stderr}");
    assert_eq!(j["lost_events"], 0);
    assert_eq!(j["events"]["sent"], j["events"]["received"]);
    (j, field("pid=").parse().unwrap())
}

/// The workload's kernel-event row of `phase`, as [merges, failed merges, rmap items removed, thp faults].
fn row(j: &Value, tgid: u32, phase: u64) -> [u64; 4] {
    let rows = j["kernel_events"]["phases"].as_array().expect("kernel_events.phases");
    let r = rows.iter().find(|r| r["tgid"] == tgid && r["phase"] == phase);
    r.map_or([0; 4], |r| ["ksm_merges", "ksm_merge_failures", "ksm_rmap_items_removed", "thp_faults"].map(|k| r[k].as_u64().unwrap()))
}

fn av_frees(j: &Value, tgid: u32, phase: u64) -> u64 {
    let rows = j["phases"].as_array().unwrap();
    rows.iter().find(|r| r["tgid"] == tgid && r["phase"] == phase).map_or(0, |r| r["anon_vma"]["free"].as_u64().unwrap())
}

/// Per test page one merge in the ksm phase; at exit the stable node's teardown drops every
/// rmap_item but the last one of the node (the kernel traces only those: 4N − 1); ksmd frees
/// the N anon_vmas those references pinned, counted in the workload's exit phase (spec §1.10).
#[test]
fn ksm_merges_and_removals_per_test_page() {
    if !root_or_skip("ksm_merges_and_removals_per_test_page") {
        return;
    }
    if !std::path::Path::new(KSM).join("run").exists() {
        eprintln!("ksm_merges_and_removals_per_test_page: skipped: no {KSM} (kernel without CONFIG_KSM)");
        return;
    }
    let n = 3;
    let (with, with_pid, without, without_pid) = {
        let _on = KsmOn::start();
        let (a, ap) = trace(n);
        let (b, bp) = trace(0);
        (a, ap, b, bp)
    };
    let tracepoints = std::path::Path::new("/sys/kernel/tracing/events/ksm/ksm_merge_with_ksm_page").exists();
    let ksm_backend = with["backend"]["ksm"].as_str().unwrap().to_string();
    if tracepoints && ksm_backend == "tracepoint-only" {
        let detail = with["backend_detail"].as_array().unwrap().iter().find(|c| c["hook"] == "ksm").unwrap();
        assert!(detail["reason"].as_str().is_some_and(|r| !r.is_empty()), "why no KSM function hook: {detail}");
        assert_eq!(detail["tracepoints"].as_array().map(Vec::len), Some(2), "{detail}");
        assert_eq!(row(&with, with_pid, PHASE_KSM), [n * PAGES, 0, 0, 0], "{}", with["kernel_events"]);
        assert_eq!(row(&with, with_pid, PHASE_EXIT), [0, 0, n * PAGES - 1, 0], "{}", with["kernel_events"]);
        assert_eq!(with["kernel_events"]["ksm_merges"], n * PAGES);
        // Records of mms with no owner never seen by this trace (a QEMU that merged its
        // guest memory and exited: ksmd tears its rmap_items down later) are counted apart;
        // how many depends on the host, not on the workload.
        assert!(with["kernel_events"]["unattributed_ksm_records"].is_u64(), "{}", with["kernel_events"]);
        assert_eq!(with["kernel_events"]["backend"]["ksm"], "tracepoint-only");
    } else {
        assert!(["fentry", "kprobe"].contains(&ksm_backend.as_str()), "ksm backend {ksm_backend}: {}", with["backend_detail"]);
        assert_eq!(row(&with, with_pid, PHASE_KSM)[..2], [n * PAGES, 0]);
    }
    assert_eq!(row(&without, without_pid, PHASE_KSM), [0; 4]);
    assert_eq!(row(&without, without_pid, PHASE_EXIT), [0; 4]);
    assert_eq!(without["kernel_events"]["ksm_merges"], 0);
    // Not modelled: each merge is named in the model's coverage.
    assert_eq!(with["model"]["unmodelled_syscalls"]["kernel event: ksm merge"], n * PAGES, "{}", with["model"]);
    // The pinned anon_vmas, freed by ksmd, land in the workload's exit phase.
    assert_eq!(av_frees(&with, with_pid, PHASE_EXIT) - av_frees(&without, without_pid, PHASE_EXIT), n);
}

/// No KSM or THP event in a scenario without either, and the THP hook is reported as what it is.
#[test]
fn no_kernel_events_without_ksm_or_thp() {
    if !root_or_skip("no_kernel_events_without_ksm_or_thp") {
        return;
    }
    let out = Command::new(BIN).args(["trace", "-j", "--", WORKLOAD, "touch", "-n", "3"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = String::from_utf8_lossy(&out.stdout);
    let j: Value = serde_json::from_str(&s[s.find("\n{").map_or(0, |i| i + 1)..]).unwrap();
    let k = &j["kernel_events"];
    assert_eq!([&k["ksm_merges"], &k["ksm_rmap_items_removed"], &k["thp_faults"]], [0, 0, 0]);
    let thp = j["backend_detail"].as_array().unwrap().iter().find(|c| c["hook"] == "thp_fault").expect("thp_fault hook");
    match thp["backend"].as_str().unwrap() {
        "fentry" | "kprobe" => {}
        other => {
            assert_eq!(other, "unavailable");
            assert!(thp["reason"].as_str().is_some_and(|r| !r.is_empty()), "{thp}");
        }
    }
}
