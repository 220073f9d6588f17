//! lazyvma-workload without root: every scenario runs with N=0 and N=3, `--hold` announces each
//! live process and holds it until stdin closes, and the held layouts in /proc/PID/maps are the
//! ones docs/workload.md describes. (Slab counts per phase need tracing: see the tracing tests.)
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_lazyvma-workload");
const PAGES: usize = 4;

/// Scenarios that need nothing from the environment, with the test pages each faults per VMA.
const PLAIN: &[(&str, usize)] = &[
    ("touch", PAGES),
    ("touch-read", PAGES),
    ("fork", PAGES),
    ("fork-untouched", 0),
    ("fork-chain", PAGES),
    ("fork-exec", PAGES),
    ("adjacent", 2 * PAGES),
    ("reuse", PAGES),
    ("vfork-fork", PAGES),
    ("split", PAGES),
    ("mremap", PAGES),
    ("munmap", PAGES),
    ("munmap-hole", PAGES),
    ("threads", PAGES),
    ("noop", 0),
];

/// Scenarios that exit 3 where the kernel or machine lacks something.
const ENV: &[&str] = &["ksm", "thp", "pageout", "page-idle", "migrate"];

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).stdin(Stdio::null()).output().expect("run lazyvma-workload")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The done line's fields, checked for the fixed prefix.
fn done_line(out: &str, scenario: &str, n: usize) -> Vec<(String, String)> {
    let line = out.lines().find(|l| l.starts_with("done ")).unwrap_or_else(|| panic!("no done line in {out:?}"));
    let kv: Vec<(String, String)> = line[5..]
        .split(' ')
        .map(|f| {
            let (k, v) = f.split_once('=').unwrap_or_else(|| panic!("bad field {f:?} in {line:?}"));
            (k.to_string(), v.to_string())
        })
        .collect();
    let keys: Vec<&str> = kv.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(&keys[..4], ["scenario", "n", "pages", "pid"], "{line}");
    assert_eq!(kv[0].1, scenario);
    assert_eq!(kv[1].1, n.to_string());
    kv
}

#[test]
fn plain_scenarios_run_with_0_and_3_vmas() {
    for &(s, per_vma) in PLAIN {
        for n in [0, 3] {
            let o = run(&[s, "-n", &n.to_string()]);
            let (out, err) = (text(&o.stdout), text(&o.stderr));
            assert!(o.status.success(), "{s} -n {n}: {:?}\nstdout: {out}\nstderr: {err}", o.status);
            assert!(err.is_empty(), "{s} -n {n} wrote to stderr: {err}");
            let kv = done_line(&out, s, n);
            assert_eq!(kv[2].1, (per_vma * n).to_string(), "{s} -n {n} pages");
            assert_eq!(out.lines().count(), 1, "{s} -n {n}: only the done line expected: {out}");
        }
    }
}

#[test]
fn environment_scenarios_succeed_or_say_what_is_missing() {
    for &s in ENV {
        for n in [0, 3] {
            let o = run(&[s, "-n", &n.to_string()]);
            let (out, err) = (text(&o.stdout), text(&o.stderr));
            match o.status.code() {
                Some(0) => {
                    done_line(&out, s, n);
                }
                Some(3) => {
                    assert_eq!(err.lines().count(), 1, "{s}: one line expected: {err}");
                    assert!(err.starts_with(&format!("lazyvma-workload: {s}: not available: ")), "{s}: {err}");
                    assert!(out.is_empty(), "{s}: no done line when not available: {out}");
                }
                c => panic!("{s} -n {n}: exit {c:?}\nstdout: {out}\nstderr: {err}"),
            }
        }
    }
}

#[test]
fn bad_arguments_exit_2() {
    for args in [&["no-such"][..], &["touch", "-n", "5000"], &["touch", "-n", "x"], &[]] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(!text(&o.stderr).is_empty());
    }
}

/// A scenario under `--hold`: its ready lines, read before stdin is closed.
struct Held {
    child: Child,
    out: BufReader<ChildStdout>,
    ready: Vec<(String, i32)>,
}

impl Held {
    fn start(scenario: &str, n: usize, processes: usize) -> Held {
        let mut child = Command::new(BIN)
            .args([scenario, "-n", &n.to_string(), "--hold"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn lazyvma-workload");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut ready = Vec::new();
        while ready.len() < processes {
            let mut line = String::new();
            if out.read_line(&mut line).unwrap() == 0 {
                panic!("{scenario}: stdout ended after {ready:?}");
            }
            let rest = line.trim_end().strip_prefix("ready role=").unwrap_or_else(|| panic!("{scenario}: unexpected {line:?}"));
            let (role, pid) = rest.split_once(" pid=").unwrap();
            ready.push((role.to_string(), pid.parse().unwrap()));
        }
        Held { child, out, ready }
    }

    fn pid(&self, role: &str) -> i32 {
        self.ready.iter().find(|(r, _)| r == role).unwrap_or_else(|| panic!("no role {role} in {:?}", self.ready)).1
    }

    fn roles(&self) -> Vec<&str> {
        let mut r: Vec<&str> = self.ready.iter().map(|(r, _)| r.as_str()).collect();
        r.sort();
        r
    }

    /// The test VMAs (below 0x1000_0000_0000) of `pid`, as (start, end, perms).
    fn test_vmas(&self, pid: i32) -> Vec<Vma> {
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
        maps.lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let (range, perms) = (f.next()?, f.next()?);
                let (a, b) = range.split_once('-')?;
                let (a, b) = (u64::from_str_radix(a, 16).ok()?, u64::from_str_radix(b, 16).ok()?);
                (a >= 0x1_0000_0000 && b <= 0x1000_0000_0000).then(|| (a, b, perms.to_string()))
            })
            .collect()
    }

    /// Still holding, then released by EOF on stdin: exits 0 with its done line.
    fn finish(mut self) -> String {
        assert!(self.child.try_wait().unwrap().is_none(), "exited before stdin closed");
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("still running 20 s after stdin closed");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status:?}");
        let mut rest = String::new();
        self.out.read_to_string(&mut rest).unwrap();
        rest
    }
}

const PAGE: u64 = 4096;

/// (start, end, perms) as /proc/PID/maps shows them.
type Vma = (u64, u64, String);

fn vma(i: u64, start_page: u64, end_page: u64, perms: &str) -> Vma {
    let base = 0x1_0000_0000 * (i + 1);
    (base + start_page * PAGE, base + end_page * PAGE, perms.to_string())
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as u64 }
}

#[test]
fn fork_hold_announces_parent_and_child() {
    let h = Held::start("fork", 3, 2);
    assert_eq!(h.roles(), ["child", "parent"]);
    let (p, c) = (h.pid("parent"), h.pid("child"));
    let want: Vec<_> = (0..3).map(|i| vma(i, 0, 4, "rw-p")).collect();
    if page_size() == PAGE {
        assert_eq!(h.test_vmas(p), want);
        assert_eq!(h.test_vmas(c), want);
    }
    let out = h.finish();
    assert_eq!(done_line(&out, "fork", 3)[3].1, p.to_string());
}

#[test]
fn hold_announces_every_live_process() {
    for (s, roles) in [
        ("touch", &["main"][..]),
        ("fork-untouched", &["child", "parent"]),
        ("fork-chain", &["child", "grandchild", "great-grandchild", "parent"]),
        ("fork-exec", &["child", "parent"]),
        // C has exited by then: its exit is what makes H reuse its anon_vma.
        ("reuse", &["grandchild", "great-grandchild", "parent"]),
        ("threads", &["main"]),
        ("noop", &["main"]),
    ] {
        for n in [0, 3] {
            let h = Held::start(s, n, roles.len());
            assert_eq!(h.roles(), roles, "{s} -n {n}");
            done_line(&h.finish(), s, n);
        }
    }
}

#[test]
fn held_layouts_match_the_scenarios() {
    if page_size() != PAGE {
        return; // the expected addresses below assume 4 KiB pages
    }
    type Layout = fn(u64) -> Vec<Vma>;
    let cases: [(&str, Layout); 5] = [
        ("split", |i| vec![vma(i, 0, 1, "rw-p"), vma(i, 1, 2, "r--p"), vma(i, 2, 4, "rw-p")]),
        ("munmap-hole", |i| vec![vma(i, 0, 1, "rw-p"), vma(i, 2, 4, "rw-p")]),
        ("munmap", |_| vec![]),
        ("mremap", |i| {
            let (a, b, p) = vma(i, 0, 4, "rw-p");
            vec![(a + 0x8000_0000, b + 0x8000_0000, p)]
        }),
        ("adjacent", |i| vec![vma(i, 0, 4, "rw-p"), vma(i, 4, 8, "rwxp")]),
    ];
    for (s, per_vma) in cases {
        let h = Held::start(s, 3, 1);
        let want: Vec<_> = (0..3).flat_map(per_vma).collect();
        assert_eq!(h.test_vmas(h.pid("main")), want, "{s}");
        h.finish();
    }
}

#[test]
fn held_process_ignores_input_until_eof() {
    let mut h = Held::start("touch", 1, 1);
    h.child.stdin.as_mut().unwrap().write_all(b"not yet\n").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    done_line(&h.finish(), "touch", 1);
}
