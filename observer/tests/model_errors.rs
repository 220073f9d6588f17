//! `lazyvma model` on every class of bad input: one line naming the file (and the line
//! when there is one), exit 2, never a panic; and the command needs no root.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

const NOBODY: u32 = 65534;

fn lazyvma() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lazyvma"))
}

/// Exit 2 and one stderr line containing `want`, no panic.
fn fails(out: &Output, want: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(want), "want `{want}` in: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn every_bad_scenario_class_names_file_and_line() {
    let d = common::Dir::new("model-errors");
    let cases: &[(&str, &[u8], &str)] = &[
        ("verb.lzs", b"process 1\nfrobnicate 1\n", ":2: unknown directive `frobnicate`"),
        ("number.lzs", b"process 1\nmmap 1 0x100000000 four\n", ":2: expected a page count (a number), found `four`"),
        ("hex.lzs", b"process 1\nmmap 1 0xzz 4\n", ":2: expected an address (a number), found `0xzz`"),
        ("missing.lzs", b"process 1\nmmap 1 0x100000000\n", ":2: expected a page count: `mmap PID ADDR PAGES"),
        ("extra.lzs", b"process 1\nexit 1 2\n", ":2: unexpected `2`: `exit PID`"),
        ("pid.lzs", b"process 1\nfork 7 8\n", ":2: no process 7"),
        ("novma.lzs", b"process 1\nwrite 1 0x5000\n", ":2: process 1 has no VMA at 0x5000"),
        ("knob.lzs", b"knob nope=1\nprocess 1\n", ":1: unknown knob `nope`"),
        ("knobvalue.lzs", b"knob split_upgrades=maybe\nprocess 1\n", ":1: knob `split_upgrades` takes one of true|false, not `maybe`"),
        ("kernel.lzs", b"kernel 7.0\nprocess 1\n", ":1: unknown kernel `7.0`"),
        ("late.lzs", b"process 1\nkernel 6.1\n", ":2: `kernel` must come before the first event"),
        ("expect.lzs", b"process 1\nexpect lazy step av=3\n", ":2: expected +ALLOC/-FREE, found `3`"),
        // Found by fuzzing (fuzz/regressions/scenario/): the sum wrapped a u32.
        (
            "ksm-refs.lzs",
            b"process 1\nmmap 1 0x100000000 4 rw mergeable\nwrite 1 0x100000000\nksm merge 1 0x100000000 2100000000\nksm merge 1 0x100000000 2100000000\n",
            ":5: ksm merge of 2100000000 pages at 0x100000000: the anon_vma's refcount would pass 2147483647",
        ),
        ("rule.lzs", b"process 1\nexpect lazy rules L99=1\n", ":2: unknown rule `L99`"),
        ("range.lzs", b"process 1\nmmap 1 0xfffffffffffff000 4\n", ":2: 4 pages at 0xfffffffffffff000 overflow"),
        ("align.lzs", b"process 1\nmmap 1 0x1001 1\n", ":2: address 0x1001 is not page-aligned"),
        ("empty.lzs", b"", ":1: expected at least one event"),
        ("comments.lzs", b"# nothing\nkernel 6.1\n", ":2: expected at least one event"),
        ("binary.lzs", b"process 1\n\xff\xfe\x00\x01garbage\n", ":2: expected scenario text, found bytes that are not UTF-8"),
    ];
    for (name, text, want) in cases {
        std::fs::write(d.path(name), text).unwrap();
        let out = lazyvma().arg("model").arg(d.path(name)).output().unwrap();
        fails(&out, &format!("{}{want}", d.file(name)));
        // --sweep reads and parses the same way.
        let out = lazyvma().arg("model").arg(d.path(name)).arg("--sweep").output().unwrap();
        fails(&out, &format!("{}{want}", d.file(name)));
    }

    std::fs::create_dir(d.path("dir.lzs")).unwrap();
    fails(
        &lazyvma().arg("model").arg(d.path("dir.lzs")).output().unwrap(),
        &format!("{}: cannot read the scenario: is a directory, not a regular file", d.file("dir.lzs")),
    );
    fails(&lazyvma().arg("model").arg(d.path("absent.lzs")).output().unwrap(), &format!("{}: cannot read the scenario: No such file", d.file("absent.lzs")));

    let ok = d.file("verb.lzs");
    std::fs::write(&ok, "process 1\n").unwrap();
    fails(&lazyvma().args(["model", &ok, "--kernel", "7.0"]).output().unwrap(), "unknown kernel `7.0` (5.19, 6.1 or 6.18)");
    fails(&lazyvma().args(["model", &ok, "--knob", "nope=1"]).output().unwrap(), "unknown knob `nope`");
    fails(&lazyvma().args(["model", &ok, "--knob", "nope"]).output().unwrap(), "knob `nope` is not NAME=VALUE");
    fails(&lazyvma().args(["--btf", "/nonexistent/btf", "model", &ok]).output().unwrap(), "no usable kernel BTF: --btf /nonexistent/btf");
}

/// A reader that goes away (`| head`) ends the output quietly: exit 0 or SIGPIPE's default
/// death (`main` restores SIG_DFL outside trace and serve, as `cat` does), never a panic.
#[test]
fn closed_stdout_is_not_a_panic() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../model/scenarios/d-fork-chain.lzs");
    for extra in [&[][..], &["-j"], &["--sweep"]] {
        let mut child = lazyvma().args(["model", file]).args(extra).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        use std::os::unix::process::ExitStatusExt;
        let quiet = out.status.success() || out.status.signal() == Some(libc::SIGPIPE);
        assert!(quiet && err.is_empty(), "{extra:?}: {:?} {err}", out.status);
    }
}

/// As nobody: the model runs (sizes from BTF, saying so); a file nobody may read is one
/// clear line, exit 2.
#[test]
fn runs_without_root_and_says_where_sizes_came_from() {
    if !common::root_or_skip("runs_without_root_and_says_where_sizes_came_from") {
        return;
    }
    let d = common::Dir::new("model-nobody");
    std::fs::set_permissions(&d.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    // A copy nobody can execute wherever the checkout lives.
    let bin = d.path("lazyvma");
    std::fs::copy(env!("CARGO_BIN_EXE_lazyvma"), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let scenario = d.path("b.lzs");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/../model/scenarios/b-fork-child-exits.lzs"), &scenario).unwrap();
    std::fs::set_permissions(&scenario, std::fs::Permissions::from_mode(0o644)).unwrap();
    let nobody = |args: &[&str]| {
        // Another test's fork may briefly hold the copy's write fd (ETXTBSY): retry.
        for _ in 0..50 {
            match Command::new(&bin).args(args).uid(NOBODY).gid(NOBODY).output() {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => std::thread::sleep(std::time::Duration::from_millis(20)),
                r => return r.unwrap(),
            }
        }
        panic!("{}: text file busy", bin.display());
    };

    let out = nobody(&["model", &d.file("b.lzs"), "-j"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Spec §5 B totals.
    assert_eq!(v["total"]["eager"]["anon_vma"], serde_json::json!({"alloc": 6, "free": 6, "live": 0, "peak": 6}));
    assert_eq!(v["total"]["lazy"]["anon_vma_chain"], serde_json::json!({"alloc": 6, "free": 6, "live": 0, "peak": 6}));
    let btf = std::path::Path::new("/sys/kernel/btf/vmlinux").exists();
    for kind in ["anon_vma", "anon_vma_chain", "vm_area_struct"] {
        let src = v["sizes_source"][kind].as_str().unwrap();
        // /sys/kernel/slab is root-only: nobody gets BTF's sizeof, or the spec's numbers.
        assert!(!src.contains("/sys/kernel/slab"), "{kind}: {src}");
        assert_eq!(src.starts_with("BTF sizeof"), btf, "{kind}: {src}");
        assert!(v["sizes"][kind].as_u64().unwrap() > 0);
    }
    if btf {
        assert_eq!(v["sizes"]["anon_vma_chain"], 64, "sizeof(struct anon_vma_chain) without CONFIG_DEBUG_VM_RB");
    }
    let out = nobody(&["model", &d.file("b.lzs")]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("bytes per object:"));

    std::fs::set_permissions(&scenario, std::fs::Permissions::from_mode(0o600)).unwrap();
    fails(&nobody(&["model", &d.file("b.lzs")]), &format!("{}: cannot read the scenario: Permission denied", d.file("b.lzs")));
}

/// Found by fuzzing (fuzz/regressions/scenario/): the KSM references of a 2e9-page merge were
/// dropped one call each, 16 s for a 130-byte file. Now one step.
#[test]
fn a_huge_ksm_merge_is_one_step() {
    let d = common::Dir::new("model-ksm-huge");
    let f = d.path("ksm.lzs");
    std::fs::write(&f, "process 1\nmmap 1 0x100000000 4 rw mergeable\nwrite 1 0x100000000\nksm merge 1 0x100000000 2100000000\nmunmap 1 0x100000000 4\nksm cleanup\nexpect eager live av=0\nexpect lazy live av=0\n").unwrap();
    let t = std::time::Instant::now();
    let out = lazyvma().arg("model").arg(&f).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(t.elapsed() < std::time::Duration::from_secs(3), "{:?}", t.elapsed());
}
