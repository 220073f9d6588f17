//! What the privileged integration tests share.
// Each test binary uses a different part of this module.
#![allow(dead_code)]

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
        HeldFork { proc, parent, child }
    }
}

impl Drop for HeldFork {
    fn drop(&mut self) {
        drop(self.proc.stdin.take());
        let status = self.proc.wait().unwrap();
        if !std::thread::panicking() {
            assert!(status.success(), "workload: {status}");
        }
    }
}
