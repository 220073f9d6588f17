//! Bad input to the commands that load BPF (doctor, snapshot, trace, serve): one line on
//! stderr naming the problem, a non-zero exit, never a panic.
use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

#[path = "../src/load/btf.rs"]
#[allow(dead_code)]
mod btf;
mod common;
use common::*;

const LAZYVMA: &str = env!("CARGO_BIN_EXE_lazyvma");

/// Each BPF command with arguments that would otherwise run it briefly.
const BPF_COMMANDS: [&[&str]; 4] = [&["doctor", "-j"], &["snapshot"], &["trace", "-d", "1"], &["serve", "--listen", "127.0.0.1:0"]];

fn run(args: &[&str]) -> Output {
    Command::new(LAZYVMA).args(args).output().unwrap()
}

/// Exit `code` with exactly one `lazyvma: ` line on stderr containing every needle.
fn assert_one_line(out: &Output, code: i32, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("lazyvma: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}: {err}");
    }
}

#[test]
fn an_unusable_btf_names_the_file_the_flag_and_the_default() {
    if !root_or_skip("an_unusable_btf_names_the_file_the_flag_and_the_default") {
        return;
    }
    let dir = Dir::new("bad-btf");
    let text = dir.file("not-btf.txt");
    std::fs::write(&text, "this is not BTF at all, only a line of text\n").unwrap();
    let missing = dir.file("missing/vmlinux");
    for (path, why) in [(missing.as_str(), "No such file"), (text.as_str(), "bad magic"), (dir.0.to_str().unwrap(), "Is a directory")] {
        for cmd in BPF_COMMANDS {
            let out = run(&[&["--btf", path][..], cmd].concat());
            assert_one_line(&out, 1, &[&format!("--btf {path}: "), why, "/sys/kernel/btf/vmlinux"]);
        }
    }
}

#[test]
fn without_btf_the_error_says_how_to_get_it() {
    let e = btf::problem(None, "No such file or directory (os error 2)");
    assert_eq!(
        e,
        "no usable kernel BTF: /sys/kernel/btf/vmlinux: No such file or directory (os error 2); \
         the kernel needs CONFIG_DEBUG_INFO_BTF=y, or pass --btf PATH"
    );
}

#[test]
fn not_root_is_one_line_naming_root_exit_1() {
    for cmd in BPF_COMMANDS {
        let mut c = Command::new(LAZYVMA);
        c.args(cmd);
        if is_root() {
            c.uid(65534).gid(65534);
        }
        let out = c.output().unwrap();
        assert!(out.stdout.is_empty(), "{cmd:?}");
        assert_one_line(&out, 1, &[&format!("`lazyvma {}` needs root", cmd[0])]);
    }
}

#[test]
fn bad_flags_are_one_line_exit_2() {
    for (args, needle) in [
        (&["snapshot", "-p", "abc"][..], "invalid value 'abc' for '--pid"),
        (&["snapshot", "-p", "1,"], "invalid value '' for '--pid"),
        (&["snapshot", "--top", "x"], "invalid value 'x' for '--top"),
        (&["snapshot", "--top", "-1"], "unexpected argument '-1'"),
        (&["snapshot", "--vmas"], "required arguments were not provided: --json"),
        (&["snapshot", "--pids", "3"], "tip: a similar argument exists: '--pid'"),
        (&["doctor", "--bogus"], "unexpected argument '--bogus'"),
        (&["--btf"], "a value is required for '--btf <PATH>'"),
        (&["nosuch"], "unrecognized subcommand 'nosuch'"),
        // Before any root check, no panic in Duration::from_secs_f64.
        (&["trace", "-d", "18446744073709551615"], "from 1ms to 365 days"),
        (&["trace", "-i", "1e300"], "unknown unit"),
        (&["trace", "-i", "99999999999h"], "from 1ms to 365 days"),
        (&["trace", "-d", "0.0000001ms"], "from 1ms to 365 days"),
        (&["serve", "-i", "18446744073709551615"], "from 1ms to 365 days"),
    ] {
        assert_one_line(&run(args), 2, &[needle]);
    }
}

/// clap echoes the argument it refuses; its own rendering drops escape sequences from it
/// (the argument was shown as `''`). Every control character is an escape on the line, and
/// an argument that is not UTF-8 is named.
#[test]
fn flag_errors_escape_what_was_typed() {
    use std::os::unix::ffi::OsStrExt;
    let osc = "\x1b]0;pwn\x07";
    for (args, needle) in [
        (vec![osc], "unrecognized subcommand '\\x1b]0;pwn\\x07'"),
        (vec!["trace", "--\x1b[2J\nUsage: x"], "unexpected argument '--\\x1b[2J\\x0aUsage: x' found"),
        (vec!["trace", "-d", osc], "invalid value '\\x1b]0;pwn\\x07' for '--duration <DURATION>': `\\x1b]0;pwn\\x07` is not a duration"),
        (vec!["trace", "-p", "\u{9b}31m"], "invalid value '\\x9b31m' for '--pid"),
        (vec!["report", "--format", "x\ny"], "invalid value 'x\\x0ay' for '--format <FORMAT>'"),
        (vec!["trace", "--bogus"], "unexpected argument '--bogus' found"),
        (vec!["-d", "x"], "unexpected argument '-d' found"),
    ] {
        assert_one_line(&run(&args), 2, &[needle]);
    }
    let out = Command::new(LAZYVMA).args(["trace", "-d"]).arg(std::ffi::OsStr::from_bytes(b"a\xffb\x1b")).output().unwrap();
    assert_one_line(&out, 2, &["argument 3 is not UTF-8: 'a\\xffb\\x1b'"]);
    // A command is bytes (a file name): looked up as given, named lossily (non_utf8.rs).
    let out = Command::new(LAZYVMA).args(["trace", "--"]).arg(std::ffi::OsStr::from_bytes(b"a\xffb\x1b")).output().unwrap();
    assert_one_line(&out, 1, &["command not found: a\u{fffd}b\\x1b (not in PATH)"]);
}

/// The generic error line stays one line when a cause has newlines (a path here; aya's load
/// errors carry the whole verifier log: `cli::tests` checks it goes to a file).
#[test]
fn an_error_with_a_newline_is_one_escaped_line() {
    let bad = std::path::Path::new("/nonexistent-lazyvma/a\nlazyvma: forged\x1b[31m");
    // `model`: 2, as any error in the scenario.
    for (cmd, code) in [("report", 1), ("model", 2), ("replay", 1), ("merge", 1)] {
        let out = Command::new(LAZYVMA).arg(cmd).arg(bad).output().unwrap();
        assert_one_line(&out, code, &["a\\x0alazyvma: forged\\x1b[31m"]);
    }
}

#[test]
fn unknown_pids_and_cgroups_are_named() {
    if !root_or_skip("unknown_pids_and_cgroups_are_named") {
        return;
    }
    for args in [&["snapshot", "-p", "4000000"][..], &["snapshot", "-p", "0"], &["snapshot", "-p", "1,4000000"]] {
        assert_one_line(&run(args), 1, &["no process with pid"]);
    }
    assert_one_line(&run(&["trace", "-p", "4000000", "-d", "1"]), 1, &["4000000"]);
    assert_one_line(&run(&["serve", "--listen", "127.0.0.1:0", "-p", "4000000"]), 1, &["4000000"]);
    for cmd in [&["snapshot"][..], &["trace", "-d", "1"]] {
        assert_one_line(&run(&[cmd, &["--cgroup", "/etc"]].concat()), 1, &["/etc is not a cgroup directory"]);
        assert_one_line(&run(&[cmd, &["--cgroup", "no-such-cgroup-here"]].concat()), 1, &["no-such-cgroup-here"]);
    }
}

#[test]
fn a_reader_that_stops_early_is_no_panic() {
    if !root_or_skip("a_reader_that_stops_early_is_no_panic") {
        return;
    }
    for cmd in ["doctor", "snapshot --top 50", "snapshot -j"] {
        // `head` exits after one byte; lazyvma's next write meets a closed pipe.
        let out = Command::new("sh").arg("-c").arg(format!("'{LAZYVMA}' {cmd} | head -c 1 >/dev/null")).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.is_empty(), "{cmd}: {err}");
    }
}
