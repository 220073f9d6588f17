//! What the privileged integration tests share.
// Each test binary uses a different part of this module.
#![allow(dead_code)]

/// `lazyvma ARGS...`, its output collected.
pub fn lazyvma(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_lazyvma")).args(args).output().expect("running lazyvma")
}

/// The stdout of a run that must have succeeded (else its stderr in the failure).
pub fn ok(out: &std::process::Output) -> String {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// True when running as root. Otherwise the test is skipped with a line on stderr, unless
/// the suite demands root (`LAZYVMA_REQUIRE_ROOT=1`, set by `cargo xtask test`): then it fails.
pub fn root_or_skip(test: &str) -> bool {
    if is_root() {
        return true;
    }
    if std::env::var("LAZYVMA_REQUIRE_ROOT").as_deref() == Ok("1") {
        panic!("{test}: LAZYVMA_REQUIRE_ROOT=1 but not running as root");
    }
    eprintln!("{test}: skipped (needs root)");
    false
}

pub fn is_root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `lazyvma-workload fork -n N --hold`: N written test VMAs, a child forked that does not
/// write, both holding until their stdin closes (on drop, which then reaps them).
pub struct HeldFork {
    proc: std::process::Child,
    pub parent: u32,
    pub child: u32,
    /// Whether the workload must exit 0 (false when a test kills the child: the parent then
    /// fails at release, reaping a killed child).
    pub check_exit: bool,
}

impl HeldFork {
    pub fn start(n: usize) -> HeldFork {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};
        let mut proc = Command::new(env!("CARGO_BIN_EXE_lazyvma-workload"))
            .args(["fork", "-n", &n.to_string(), "--hold"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(proc.stdout.take().unwrap()).lines();
        let (mut parent, mut child) = (0, 0);
        while parent == 0 || child == 0 {
            let line = lines.next().expect("workload exited before ready").unwrap();
            let pid = |l: &str| l.rsplit("pid=").next().unwrap().parse().unwrap();
            if line.contains("ready role=parent") {
                parent = pid(&line);
            } else if line.contains("ready role=child") {
                child = pid(&line);
            }
        }
        HeldFork { proc, parent, child, check_exit: true }
    }
}

impl Drop for HeldFork {
    fn drop(&mut self) {
        drop(self.proc.stdin.take());
        let status = self.proc.wait().unwrap();
        if self.check_exit && !std::thread::panicking() {
            assert!(status.success(), "workload: {status}");
        }
    }
}

/// A scratch directory under the temp dir, removed on drop.
pub struct Dir(pub std::path::PathBuf);

impl Dir {
    pub fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("lazyvma-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
    pub fn path(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }
    /// `path` as a string, for command lines.
    pub fn file(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A cgroup made for one test in the cgroup2 hierarchy (found in /proc/self/mountinfo:
/// /sys/fs/cgroup/unified on hybrid hosts), or in one with the pids controller
/// ([`TestCgroup::pids`]); dropping it moves anything left to the root and removes it.
pub struct TestCgroup {
    pub root: std::path::PathBuf,
    /// Relative to the cgroup2 mount.
    pub name: String,
}

/// The mount point of the first cgroup hierarchy in /proc/self/mountinfo that `pick(fs, super
/// options, mount point)` takes.
fn cgroup_mount(pick: impl Fn(&str, &str, &std::path::Path) -> bool) -> Option<std::path::PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let point = std::path::PathBuf::from(left.split_ascii_whitespace().nth(4)?);
        let mut f = right.split_ascii_whitespace();
        let (fs, opts) = (f.next()?, f.nth(1)?);
        pick(fs, opts, &point).then_some(point)
    })
}

impl TestCgroup {
    pub fn new(test: &str) -> TestCgroup {
        let root = cgroup_mount(|fs, _, _| fs == "cgroup2").expect("no cgroup2 mount on this host");
        TestCgroup::make(root, test)
    }

    /// One with the `pids` controller: the v1 `pids` hierarchy, or cgroup2 where its root
    /// delegates `pids`. None when this host has neither.
    pub fn pids(test: &str) -> Option<TestCgroup> {
        let root = cgroup_mount(|fs, opts, point| {
            let v1 = fs == "cgroup" && opts.split(',').any(|o| o == "pids");
            let v2 = fs == "cgroup2" && std::fs::read_to_string(point.join("cgroup.subtree_control")).is_ok_and(|c| c.split_whitespace().any(|c| c == "pids"));
            v1 || v2
        })?;
        Some(TestCgroup::make(root, test))
    }

    fn make(root: std::path::PathBuf, test: &str) -> TestCgroup {
        let name = format!("lazyvma-test-{}-{test}", std::process::id());
        let cg = TestCgroup { root, name };
        std::fs::create_dir(cg.dir()).unwrap_or_else(|e| panic!("mkdir {}: {e}", cg.dir().display()));
        cg
    }

    pub fn dir(&self) -> std::path::PathBuf {
        self.root.join(&self.name)
    }

    pub fn add(&self, pid: u32) {
        std::fs::write(self.dir().join("cgroup.procs"), pid.to_string()).unwrap();
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let t0 = std::time::Instant::now();
        // An exiting process leaves its cgroup a moment after its parent reaps it.
        while let Err(e) = std::fs::remove_dir(self.dir()) {
            for pid in std::fs::read_to_string(self.dir().join("cgroup.procs")).unwrap_or_default().lines() {
                let _ = std::fs::write(self.root.join("cgroup.procs"), pid);
            }
            if t0.elapsed() > std::time::Duration::from_secs(5) {
                eprintln!("could not remove {}: {e}", self.dir().display());
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

/// A small valid report, as a file would hold it (no root needed).
pub fn minimal(host: &str) -> serde_json::Value {
    let side = |o: i64, size: i64| serde_json::json!({"objects": o, "bytes": o * size});
    let row = |e: i64, l: i64, size: i64| serde_json::json!({"size": size, "observed": side(e, size), "eager": side(e, size), "lazy": side(l, size)});
    serde_json::json!({
        "schema": "lazyvma-report", "version": 1, "source": "snapshot", "host": host, "kernel": "6.18.44", "arch": "x86_64",
        "backend": {"topology": "iter/task_vma"},
        "span": {"start_unix_ms": 1000, "end_unix_ms": 1010, "elapsed_ms": 10.0},
        "objects": {"vm_area_struct": row(100, 100, 192), "anon_vma_chain": row(40, 10, 64), "anon_vma": row(20, 2, 104)},
        "lost_events": 0,
        "histograms": {"contract": {"low": 1, "high": 60_000_000_000u64, "sigfig": 3}, "series": {}},
        "knobs": {"lazy_enabled": "true"},
    })
}

/// A child of this test that names itself `comm` with prctl(PR_SET_NAME), as any user can
/// (bytes: a comm need not be UTF-8), and waits to be killed. Fork without exec: exec would
/// rename it after its file. Killed and reaped when dropped.
pub struct Named(pub libc::pid_t);

impl Named {
    pub fn spawn(comm: &[u8]) -> Named {
        let name = std::ffi::CString::new(comm).unwrap();
        // SAFETY: the child calls only async-signal-safe functions (prctl, pause).
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            unsafe {
                libc::prctl(libc::PR_SET_NAME, name.as_ptr());
                loop {
                    libc::pause();
                }
            }
        }
        let want = [comm, b"\n"].concat();
        for _ in 0..200 {
            if std::fs::read(format!("/proc/{pid}/comm")).is_ok_and(|c| c == want) {
                return Named(pid);
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        panic!("the child never took its name");
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        // SAFETY: our own child, killed and reaped.
        unsafe {
            libc::kill(self.0, libc::SIGKILL);
            libc::waitpid(self.0, std::ptr::null_mut(), 0);
        }
    }
}
