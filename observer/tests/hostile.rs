//! lazyvma runs as root: what another user plants next to its output files, or writes into
//! the strings lazyvma prints, must not make it write elsewhere or drive root's terminal.
use serde_json::{json, Value};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::process::Command;

mod common;
use common::*;

/// `sh -c script` as the unprivileged user nobody.
fn as_nobody(script: &str) {
    let st = Command::new("setpriv").args(["--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", script]).status().unwrap();
    assert!(st.success(), "as nobody: {script}");
}

#[test]
fn planted_symlinks_never_make_root_write_elsewhere() {
    if !root_or_skip("planted_symlinks_never_make_root_write_elsewhere") {
        return;
    }
    let dir = Dir::new("planted");
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let victim = dir.path("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let (a, b) = (dir.file("a.json"), dir.file("b.json"));
    std::fs::write(&a, minimal("host-a").to_string()).unwrap();
    std::fs::write(&b, minimal("host-b").to_string()).unwrap();
    // The names the old `.<OUT>.<pid>.tmp` scheme would use for the next few hundred pids.
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/ns_last_pid").unwrap().trim().parse().unwrap();
    let out = dir.path("fleet.json");
    as_nobody(&format!("cd {} && for p in $(seq {} {}); do ln -s victim .fleet.json.$p.tmp; done", dir.0.display(), last, last + 400));
    let planted = std::fs::read_dir(&dir.0).unwrap().count();
    ok(&lazyvma(&["merge", &a, &b, "-o", out.to_str().unwrap()]));
    ok(&lazyvma(&["report", &a, "-o", out.to_str().unwrap()]));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    let m = std::fs::symlink_metadata(&out).unwrap();
    assert!(m.file_type().is_file() && m.uid() == 0);
    // Nothing left behind but OUT itself; every planted link still a link.
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), planted + 1);

    // A link planted at OUT itself is refused, not followed nor replaced.
    std::fs::remove_file(&out).unwrap();
    as_nobody(&format!("ln -s victim {}", out.display()));
    for args in [vec!["merge", &a, &b, "-o", out.to_str().unwrap()], vec!["report", &a, "-o", out.to_str().unwrap()]] {
        let res = lazyvma(&args);
        let err = String::from_utf8_lossy(&res.stderr);
        assert_eq!(res.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.starts_with("lazyvma: ") && err.contains("symbolic link") && err.lines().count() == 1, "{err}");
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert!(std::fs::symlink_metadata(&out).unwrap().file_type().is_symlink());
}

#[test]
fn special_files_are_written_in_place_never_replaced() {
    let dir = Dir::new("special");
    let a = dir.file("a.json");
    std::fs::write(&a, minimal("host-a").to_string()).unwrap();
    // /dev/stdout is the descriptor: the report on stdout, the link left alone.
    let text = ok(&lazyvma(&["report", &a, "-o", "/dev/stdout"]));
    assert!(text.contains("host-a"), "{text}");
    assert!(std::fs::symlink_metadata("/dev/stdout").unwrap().file_type().is_symlink());
    ok(&lazyvma(&["report", &a, "-o", "/dev/null"]));
    // /dev/full: the write fails (ENOSPC), the device stays a device.
    let res = lazyvma(&["report", &a, "-o", "/dev/full"]);
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(1), "{err}");
    assert!(err.contains("/dev/full") && err.contains("No space left"), "{err}");
    assert!(std::fs::metadata("/dev/full").unwrap().file_type().is_char_device());
    // Another device or a directory: refused.
    for (out, what) in [("/dev/zero", "character device"), ("/tmp", "directory")] {
        let res = lazyvma(&["merge", &a, "-o", out]);
        let err = String::from_utf8_lossy(&res.stderr);
        assert!(!res.status.success() && err.contains(what), "{out}: {err}");
    }
}

#[test]
fn a_failed_start_keeps_an_existing_recording() {
    if !root_or_skip("a_failed_start_keeps_an_existing_recording") {
        return;
    }
    let dir = Dir::new("failed-start");
    let rec = dir.path("rec.lzv");
    let junk = dir.path("not-btf");
    std::fs::write(&junk, "not BTF").unwrap();
    std::fs::write(&rec, "a good recording, as far as this test cares").unwrap();
    let runs: [&[&str]; 3] = [
        &["trace", "-o", rec.to_str().unwrap(), "--", "lazyvma-no-such-command-typo"],
        &["trace", "-o", rec.to_str().unwrap(), "--", "/etc/hostname"],
        &["--btf", junk.to_str().unwrap(), "trace", "-o", rec.to_str().unwrap(), "--", "true"],
    ];
    for args in runs {
        let res = lazyvma(args);
        assert!(!res.status.success(), "{args:?} succeeded");
        assert_eq!(std::fs::read_to_string(&rec).unwrap(), "a good recording, as far as this test cares", "{args:?}");
        assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 2, "{args:?}: a temporary file left");
    }
}

/// What a hostile comm may not put on root's terminal or into a markdown table.
fn assert_no_control(what: &str, text: &str) {
    let bad: Vec<char> = text.chars().filter(|c| c.is_control() && *c != '\n' && *c != '\t').collect();
    assert!(bad.is_empty(), "{what}: control characters {bad:?} in:\n{text}");
}

#[test]
fn a_hostile_comm_is_escaped_in_text_and_markdown() {
    if !root_or_skip("a_hostile_comm_is_escaped_in_text_and_markdown") {
        return;
    }
    // comm is the executable's file name (15 bytes kept): here an OSC title sequence and
    // markdown/HTML metacharacters, as any user could name a program or call prctl.
    let dir = Dir::new("comm");
    let name = "\x1b]0;pwn\x07|<script>";
    let exe = dir.path(name);
    std::os::unix::fs::symlink("/bin/sleep", &exe).unwrap();
    let mut child = Command::new(&exe).arg("30").spawn().unwrap();
    let pid = child.id().to_string();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim_end_matches('\n'), "\x1b]0;pwn\x07|<scrip");

    let text = ok(&lazyvma(&["snapshot", "-p", &pid]));
    assert_no_control("snapshot", &text);
    assert!(text.contains("\\x1b]0;pwn\\x07|<scrip"), "{text}");
    let json = ok(&lazyvma(&["snapshot", "-j", "-p", &pid]));
    let a = dir.file("a.json");
    std::fs::write(&a, &json).unwrap();
    let text = ok(&lazyvma(&["report", &a]));
    assert_no_control("report", &text);
    assert!(text.contains("\\x1b]0;pwn\\x07|<scrip"), "{text}");
    let md = ok(&lazyvma(&["report", "-O", "markdown", &a]));
    assert_no_control("markdown", &md);
    assert!(!md.contains("<scrip") && md.contains("\\\\x1b\\]0;pwn\\\\x07\\|&lt;scrip"), "{md}");
    let html = ok(&lazyvma(&["report", "-O", "html", &a]));
    assert!(!html.contains("<scrip") && html.contains("&lt;scrip"));
    // The JSON keeps the comm exactly (escaped as JSON does).
    let v: Value = serde_json::from_str(&json).unwrap();
    assert!(v["processes"].as_array().unwrap().iter().any(|p| p["comm"] == "\x1b]0;pwn\x07|<scrip"), "{json}");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// `lazyvma ARGS` with its address space capped at 1 GiB: an allocation driven by a
/// file's claim fails (abort) instead of going unnoticed on a big host.
fn lazyvma_capped(args: &[&str]) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(env!("CARGO_BIN_EXE_lazyvma"));
    c.args(args);
    // SAFETY: setrlimit is async-signal-safe.
    unsafe {
        c.pre_exec(|| {
            let lim = libc::rlimit { rlim_cur: 1 << 30, rlim_max: 1 << 30 };
            libc::setrlimit(libc::RLIMIT_AS, &lim);
            Ok(())
        });
    }
    c.output().unwrap()
}

/// `model -j` of a big scenario is written as it is serialised: 200,000 steps (2.6 GB
/// before, as one `Value` tree and one string; a million took 13 GB) fit under the 1 GiB cap,
/// and the text of 100,000 processes too.
#[test]
fn model_json_of_a_huge_scenario_is_bounded() {
    let dir = Dir::new("huge-model");
    let mut text = String::from("process 1\nmmap 1 0x100000000 4\nwrite 1 0x100000000\n");
    for _ in 0..100_000 {
        text.push_str("mprotect 1 0x100001000 1 r\nmprotect 1 0x100001000 1 rw\n");
    }
    std::fs::write(dir.path("steps.lzs"), &text).unwrap();
    let out = lazyvma_capped(&["model", "-j", &dir.file("steps.lzs")]);
    let v: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(v["steps"].as_array().unwrap().len(), 200_003);
    assert_eq!(v["steps"][200_002]["event"], "mprotect 1 0x100001000 1 rw");
    // Text too: past 10,000 steps the step table streams in plain columns (a comfy-table
    // of 400k steps took 1.3 GB; this one, 173 MB).
    let text = ok(&lazyvma_capped(&["model", &dir.file("steps.lzs")]));
    assert!(text.lines().nth(1) == Some("200003 steps: the step table in plain columns, written as it goes"), "{}", &text[..200]);
    let last_step = text.lines().rfind(|l| l.starts_with("200003 ")).expect("the last step's row");
    assert!(last_step.contains("mprotect 1 0x100001000 1 rw"), "{last_step}");

    let mut text = String::from("process 1\nmmap 1 0x100000000 4\nwrite 1 0x100000000\n");
    for pid in 2..100_002 {
        text.push_str(&format!("fork 1 {pid}\n"));
    }
    std::fs::write(dir.path("procs.lzs"), &text).unwrap();
    let v: serde_json::Value = serde_json::from_str(&ok(&lazyvma_capped(&["model", "-j", &dir.file("procs.lzs")]))).unwrap();
    assert_eq!(v["total"]["eager"]["anon_vma"]["live"], 100_001);
}

fn assert_refused(out: &std::process::Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.starts_with("lazyvma: ") && err.lines().count() == 1 && !err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "lacks {n:?}: {err}");
    }
    assert!(out.stdout.is_empty());
}

fn hist_data(h: &hdrhistogram::Histogram<u64>) -> String {
    use base64::Engine;
    use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
    let mut buf = Vec::new();
    V2DeflateSerializer::new().serialize(h, &mut buf).unwrap();
    base64::engine::general_purpose::STANDARD.encode(buf)
}

#[test]
fn hostile_reports_are_refused_before_allocating_or_wrapping() {
    let dir = Dir::new("hostile-reports");
    let put = |name: &str, v: &Value| {
        std::fs::write(dir.path(name), v.to_string()).unwrap();
        dir.file(name)
    };
    // Sums that would wrap (2^63-1 objects twice gave -2).
    let mut big = minimal("big");
    big["objects"]["anon_vma"]["eager"] = json!({"objects": i64::MAX, "bytes": 0});
    let big = put("big.json", &big);
    assert_refused(&lazyvma(&["merge", &big, &big]), &["big.json", "anon_vma eager", "overflows"]);
    let mut lost = minimal("lost");
    lost["lost_events"] = json!(u64::MAX);
    let lost = put("lost.json", &lost);
    assert_refused(&lazyvma(&["merge", &lost, &lost]), &["lost_events", "overflows"]);
    // Negative counts, unknown sources and units.
    let mut neg = minimal("neg");
    neg["objects"]["anon_vma"]["lazy"] = json!({"objects": -5, "bytes": -520});
    assert_refused(&lazyvma(&["report", &put("neg.json", &neg)]), &["neg.json", "negative count"]);
    let mut src = minimal("src");
    src["source"] = json!("telepathy");
    assert_refused(&lazyvma(&["merge", &put("src.json", &src)]), &["src.json", "unknown source `telepathy`"]);
    // Knobs this lazyvma does not model: a name, a value, a sweep row.
    let mut knob = minimal("knob");
    knob["knobs"] = json!({"lazy_enabled": "true", "fork_of_tree_parnet": "share"});
    assert_refused(&lazyvma(&["merge", &put("knob.json", &knob)]), &["knob.json", "unknown knob `fork_of_tree_parnet`", "fork_of_tree_parent"]);
    knob["knobs"] = json!({"lazy_enabled": "maybe"});
    assert_refused(&lazyvma(&["report", &put("knob.json", &knob)]), &["knob.json", "unknown value of knob `lazy_enabled` `maybe` (known: true, false)"]);
    knob["knobs"] = json!({});
    let mut sweep = serde_json::to_value(lazyvma_model::sweep::Sweep::default()).unwrap();
    sweep["sweep"]["warp_drive"] = json!({});
    knob["rules_that_matter"] = sweep;
    let res = lazyvma(&["report", &put("knob.json", &knob)]);
    assert_refused(&res, &["knob.json", "unknown knob `warp_drive`"]);
    // Found by the suite's fuzz run (fuzz/regressions/report/): a span that ends before it
    // starts made merge's span length wrap (a panic with overflow checks); a trace JSON whose
    // start + elapsed passes u64 likewise.
    let mut span = minimal("span");
    span["span"] = json!({"start_unix_ms": 1010, "end_unix_ms": 1000, "elapsed_ms": 10.0});
    assert_refused(&lazyvma(&["merge", &put("span.json", &span)]), &["span.json", "span ends (end_unix_ms 1000) before it starts (start_unix_ms 1010)"]);
    let trace = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/seeds/report/trace-j.json")).unwrap();
    let mut trace: Value = serde_json::from_str(&trace).unwrap();
    trace["start_unix_ms"] = json!(u64::MAX);
    assert_refused(&lazyvma(&["report", &put("late.json", &trace)]), &["late.json", "`start_unix_ms` + `elapsed_ms` is past the end of time"]);

    let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
    h.record(100).unwrap();
    let mut unit = minimal("unit");
    unit["histograms"]["series"]["x"] = json!({"unit": "parsecs", "count": 1, "encoding": "hdrhistogram-v2-deflate-base64", "data": hist_data(&h)});
    assert_refused(&lazyvma(&["report", &put("unit.json", &unit)]), &["unknown unit of histogram `x` `parsecs`"]);

    // Counts of 2^62 (re-serialising their sum panicked).
    let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
    h.record_n(100, 1 << 62).unwrap();
    let mut huge = minimal("huge");
    huge["histograms"]["series"]["x"] = json!({"unit": "ns", "count": 1u64 << 62, "encoding": "hdrhistogram-v2-deflate-base64", "data": hist_data(&h)});
    let huge = put("huge.json", &huge);
    assert_refused(&lazyvma(&["merge", &huge, &huge]), &["huge.json", "histogram `x`", "samples"]);

    // A 2 GB payload claimed by a few bytes: refused before the deserializer allocates it.
    use base64::Engine;
    use std::io::Write;
    let mut inner = Vec::new();
    inner.extend(0x1c84_9303u32.to_be_bytes());
    inner.extend(2_000_000_000u32.to_be_bytes());
    inner.extend(0u32.to_be_bytes());
    inner.extend(3u32.to_be_bytes());
    inner.extend(1u64.to_be_bytes());
    inner.extend(60_000_000_000u64.to_be_bytes());
    inner.extend(1f64.to_bits().to_be_bytes());
    inner.extend([2, 0, 0, 0]);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&inner).unwrap();
    let z = z.finish().unwrap();
    let mut outer = 0x1c84_9304u32.to_be_bytes().to_vec();
    outer.extend((z.len() as u32).to_be_bytes());
    outer.extend(z);
    let mut claim = minimal("claim");
    claim["histograms"]["series"]["x"] =
        json!({"unit": "ns", "count": 1, "encoding": "hdrhistogram-v2-deflate-base64", "data": base64::engine::general_purpose::STANDARD.encode(outer)});
    let claim = put("claim.json", &claim);
    for verb in ["report", "merge"] {
        assert_refused(&lazyvma_capped(&[verb, &claim]), &["claim.json", "2000000000-byte payload"]);
    }
}

/// `lazyvma ARGS` that must end within 10 s (a FIFO input used to hang forever).
fn lazyvma_bounded(args: &[&str], setup: impl Fn(&mut Command)) -> std::process::Output {
    use std::process::Stdio;
    let mut c = Command::new(env!("CARGO_BIN_EXE_lazyvma"));
    c.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    setup(&mut c);
    let mut child = c.spawn().unwrap();
    let t0 = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > std::time::Duration::from_secs(10) {
            child.kill().unwrap();
            panic!("{args:?}: still running after 10 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_fifo_input_is_refused_and_a_closed_stdout_is_an_error() {
    let dir = Dir::new("fifo-in");
    let fifo = dir.file("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    for args in [vec!["report", &fifo], vec!["merge", &fifo], vec!["replay", &fifo], vec!["model", &fifo]] {
        let out = lazyvma_bounded(&args, |_| {});
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(matches!(out.status.code(), Some(1 | 2)) && err.contains("FIFO") && err.lines().count() == 1, "{args:?}: {err}");
    }
    if is_root() {
        let out = lazyvma_bounded(&["--btf", &fifo, "doctor"], |_| {});
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("not a regular file"), "{err}");
    }
    // A closed stdout: an error, not a silent exit 0.
    let a = dir.file("a.json");
    std::fs::write(&a, minimal("host-a").to_string()).unwrap();
    let closed = |c: &mut Command| {
        use std::os::unix::process::CommandExt;
        // SAFETY: close is async-signal-safe.
        unsafe {
            c.pre_exec(|| {
                libc::close(1);
                Ok(())
            })
        };
    };
    let out = lazyvma_bounded(&["report", &a], closed);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code() == Some(1) && err.contains("stdout is closed"), "{err}");
    // With -o, stdout is not needed.
    let out = lazyvma_bounded(&["report", &a, "-o", &dir.file("r.txt")], closed);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

const PWN: &str = "\x1b]0;pwn\x07|<b>\n";

/// A comm set by prctl, newline included (it would start a forged row), through the real
/// commands: one escaped field in text, escaped markdown, and exact but all-escaped JSON.
#[test]
fn a_prctl_comm_is_one_escaped_field_everywhere() {
    if !root_or_skip("a_prctl_comm_is_one_escaped_field_everywhere") {
        return;
    }
    let child = common::Named::spawn(PWN.as_bytes());
    let pid = child.0.to_string();
    let text = ok(&lazyvma(&["snapshot", "-p", &pid]));
    assert_no_control("snapshot", &text);
    let row = text.lines().find(|l| l.starts_with(&format!("{pid} | "))).unwrap_or_else(|| panic!("no row for {pid}:\n{text}"));
    assert!(row.starts_with(&format!("{pid} | \\x1b]0;pwn\\x07|<b>\\x0a | ")), "{row}");

    let json = ok(&lazyvma(&["snapshot", "-j", "-p", &pid]));
    assert!(json.contains(r#""comm":"\u001b]0;pwn\u0007|<b>\n""#), "{json}");
    let dir = Dir::new("prctl-comm");
    let a = dir.file("a.json");
    std::fs::write(&a, &json).unwrap();
    let text = ok(&lazyvma(&["report", &a]));
    assert_no_control("report", &text);
    let row = text.lines().find(|l| l.starts_with(&format!("{pid} | "))).unwrap_or_else(|| panic!("{text}"));
    assert!(row.starts_with(&format!("{pid} | \\x1b]0;pwn\\x07|<b>\\x0a | ")), "{row}");
    let md = ok(&lazyvma(&["report", "-O", "markdown", &a]));
    assert_no_control("markdown", &md);
    let row = md.lines().find(|l| l.starts_with(&format!("| {pid} | "))).unwrap_or_else(|| panic!("{md}"));
    assert!(row.starts_with(&format!("| {pid} | \\\\x1b\\]0;pwn\\\\x07\\|&lt;b&gt;\\\\x0a | ")), "{row}");
    // report -j and merge: the same string, every control character as \uXXXX.
    let rj = ok(&lazyvma(&["report", "-O", "json", &a]));
    assert!(rj.contains(r#""comm": "\u001b]0;pwn\u0007|<b>\n""#), "{rj}");
    let v: Value = serde_json::from_str(&rj).unwrap();
    assert!(v["processes"].as_array().unwrap().iter().any(|p| p["comm"] == PWN));
}

/// doctor prints kernel strings and what it was given; a `--btf` file named like a comm
/// above (any user can leave one in /tmp) shows in the btf row, the error line and -j.
#[test]
fn doctor_escapes_what_it_prints() {
    if !root_or_skip("doctor_escapes_what_it_prints") {
        return;
    }
    let dir = Dir::new("doctor-escape");
    let btf = dir.path(PWN);
    std::fs::write(&btf, "not BTF").unwrap();
    let btf = btf.to_str().unwrap();
    let res = lazyvma(&["--btf", btf, "doctor"]);
    let text = String::from_utf8_lossy(&res.stdout);
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(1), "{err}");
    assert_no_control("doctor", &text);
    let esc = btf.replace(PWN, "\\x1b]0;pwn\\x07|<b>\\x0a");
    let row = text.lines().find(|l| l.trim_start().starts_with("btf ")).unwrap();
    assert_eq!(row, format!("  btf       ABSENT — no usable kernel BTF: --btf {esc}: not BTF: shorter than the 24-byte header (without --btf lazyvma reads /sys/kernel/btf/vmlinux)"));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with(&format!("lazyvma: no usable kernel BTF: --btf {esc}: ")), "{err}");
    let res = lazyvma(&["--btf", btf, "doctor", "-j"]);
    let json = String::from_utf8_lossy(&res.stdout);
    let jesc = btf.replace(PWN, r"\u001b]0;pwn\u0007|<b>\n");
    assert!(json.contains(&format!(r#""path": "{jesc}""#)), "{json}");
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["btf"]["path"], btf);
}

/// A cgroup's name is chosen by whoever may create it (a delegated subtree): `trace
/// --by-cgroup`'s text row shows it as one escaped field. (The kernel refuses a newline in a
/// cgroup name, EINVAL; the other control characters it takes.)
#[test]
fn a_hostile_cgroup_name_is_one_escaped_field() {
    if !root_or_skip("a_hostile_cgroup_name_is_one_escaped_field") {
        return;
    }
    let name = PWN.trim_end_matches('\n');
    let cg = TestCgroup::new(name);
    let esc = format!("/{}", cg.name.replace(name, "\\x1b]0;pwn\\x07|<b>"));
    // The sleep is forked after the move: first seen in the cgroup.
    let script = format!("echo $$ > '{}/cgroup.procs' && sleep 0.5; exit 0", cg.dir().display());
    let text = ok(&lazyvma(&["trace", "--by-cgroup", "--", "sh", "-c", &script]));
    assert_no_control("trace", &text);
    assert!(text.lines().any(|l| l.starts_with(&format!("{esc} ")) && l.split_whitespace().nth(1) == Some("1")), "{esc} in:\n{text}");
}
