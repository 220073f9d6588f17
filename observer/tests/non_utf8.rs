//! Names that are not UTF-8: a file name or command path is bytes, a comm is whatever a user
//! set with prctl. lazyvma uses the bytes as given (the file written is the one named, the
//! command run is the one named) and shows them with U+FFFD; it never panics nor refuses
//! them, and a process so named is still a live process.
use serde_json::Value;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::process::Command;

mod common;
use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_lazyvma");
const WORKLOAD: &str = env!("CARGO_BIN_EXE_lazyvma-workload");

fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

fn names(dir: &Dir) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = std::fs::read_dir(&dir.0).unwrap().map(|e| e.unwrap().file_name().as_bytes().to_vec()).collect();
    v.sort();
    v
}

/// `trace -o \xff.lzr --report \xfe.json -- ./\xffbin arg\xfe`: the files named are written,
/// nothing else; the command runs; messages and the report show U+FFFD.
#[test]
fn non_utf8_paths_are_used_as_bytes_and_shown_lossily() {
    if !root_or_skip("non_utf8_paths_are_used_as_bytes_and_shown_lossily") {
        return;
    }
    let dir = Dir::new("non-utf8");
    let d = dir.0.as_os_str().as_bytes();
    let path = |name: &[u8]| std::path::PathBuf::from(os(&[d, b"/", name].concat()));
    std::os::unix::fs::symlink(WORKLOAD, path(b"\xffbin")).unwrap();
    let (rec, report, bin) = (path(b"\xff.lzr"), path(b"\xfe.json"), path(b"\xffbin"));
    let shown = |name: &str| format!("{}/{name}", dir.0.display());
    let out = Command::new(BIN).arg("trace").arg("-j").arg("-o").arg(&rec).arg("--report").arg(&report).arg("--").arg(&bin).arg("touch").output().unwrap();
    let err = String::from_utf8(out.stderr).expect("stderr is UTF-8");
    assert!(out.status.success(), "{err}");
    assert!(err.starts_with(&format!("lazyvma: recording {}: ", shown("\u{fffd}.lzr"))), "{err}");
    // The workload's done line, then the report.
    let stdout = String::from_utf8(out.stdout).expect("stdout is UTF-8");
    let (done, json) = stdout.split_once('\n').unwrap();
    assert!(done.starts_with("done scenario=touch "), "{done}");
    let j: Value = serde_json::from_str(json).unwrap();
    assert_eq!(j["command"]["argv"], serde_json::json!([shown("\u{fffd}bin"), "touch"]));
    assert_eq!(j["command"]["exit_status"], 0);
    assert_eq!(names(&dir), vec![b"\xfe.json".to_vec(), b"\xff.lzr".to_vec(), b"\xffbin".to_vec()]);
    assert_eq!(std::fs::read_link(&bin).unwrap(), std::path::Path::new(WORKLOAD), "the symlink was replaced");

    // The recording and the report read back by their byte names.
    let out = Command::new(BIN).arg("replay").arg(&rec).output().unwrap();
    let text = String::from_utf8(out.stdout).expect("replay's text is UTF-8");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.starts_with(&format!("lazyvma trace: command `{} touch` exited with status 0", shown("\u{fffd}bin"))), "{text}");
    let out = Command::new(BIN).arg("report").arg(&report).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Errors name them lossily, on one line, and touch nothing.
    let one_line = |args: &[&OsStr], code: i32, want: String| {
        let out = Command::new(BIN).args(args).output().unwrap();
        let err = String::from_utf8(out.stderr).expect("stderr is UTF-8");
        assert_eq!((out.status.code(), err), (Some(code), want + "\n"), "{args:?}");
    };
    let none = path(b"\xfenone");
    one_line(&[os(b"trace"), os(b"--"), none.as_os_str()], 1, format!("lazyvma: command not found: {}", shown("\u{fffd}none")));
    one_line(&[os(b"trace"), os(b"--"), os(b"\xfenone")], 1, "lazyvma: command not found: \u{fffd}none (not in PATH)".into());
    one_line(
        &[os(b"trace"), os(b"-o"), os(b"/nonexistent/\xff.lzr"), os(b"--"), os(b"true")],
        1,
        "lazyvma: cannot create recording /nonexistent/\u{fffd}.lzr: No such file or directory (os error 2)".into(),
    );
    one_line(
        &[os(b"replay"), path(b"\xfd.lzr").as_os_str()],
        1,
        format!("lazyvma: cannot read recording {}: No such file or directory (os error 2)", shown("\u{fffd}.lzr")),
    );
    assert_eq!(names(&dir).len(), 3, "a failed run left a file");
}

/// `trace -p` of a process named `bad\xff\xfe`: traced until the duration (it was "no such
/// process": its /proc/PID/status was read as UTF-8); snapshot shows its comm with U+FFFD.
#[test]
fn a_non_utf8_comm_is_a_live_process_shown_lossily() {
    if !root_or_skip("a_non_utf8_comm_is_a_live_process_shown_lossily") {
        return;
    }
    let child = common::Named::spawn(b"bad\xff\xfe");
    let pid = child.0.to_string();
    let out = lazyvma(&["trace", "-j", "-d", "1", "-p", &pid]);
    let j: Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(j["ended_by"], "duration");
    assert_eq!(j["pids"], serde_json::json!([child.0]));
    assert_eq!(j["model"]["seeded"], serde_json::json!([child.0]), "{}", j["model"]);

    let text = ok(&lazyvma(&["snapshot", "-p", &pid]));
    let row = text.lines().find(|l| l.starts_with(&format!("{pid} | "))).unwrap_or_else(|| panic!("no row for {pid}:\n{text}"));
    assert!(row.starts_with(&format!("{pid} | bad\u{fffd}\u{fffd} | ")), "{row}");
    let v: Value = serde_json::from_str(&ok(&lazyvma(&["snapshot", "-j", "-p", &pid]))).unwrap();
    let p = v["processes"].as_array().unwrap().iter().find(|p| p["pid"] == child.0).unwrap_or_else(|| panic!("{v}"));
    assert_eq!(p["comm"], "bad\u{fffd}\u{fffd}");
}
