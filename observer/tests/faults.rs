//! Faults a loaded or limited machine puts on a trace: forks refused by a pids limit, a full
//! disk, signals at each stage. Each checks that nothing is lost silently: the report says
//! what it could not see, the recording replays, the kernel is left as it was.
use serde_json::Value;

mod common;
use common::*;

fn counts(v: &Value) -> [u64; 2] {
    [v["anon_vma"]["alloc"].as_u64().unwrap(), v["anon_vma_chain"]["alloc"].as_u64().unwrap()]
}

/// The failed-fork line of a report's model, and the anon_vma / chain counts it names.
fn failed_forks(v: &Value) -> (String, [u64; 2]) {
    let why = v["model"]["incomplete"].as_array().unwrap();
    let line = why.iter().filter_map(Value::as_str).find(|l| l.contains("forks failed")).unwrap_or_else(|| panic!("no failed forks in {why:?}"));
    let n = |after: &str| line.split(after).next().unwrap().rsplit(' ').next().unwrap().parse::<u64>().unwrap();
    (line.to_string(), [n(" anon_vma and"), n(" anon_vma_chain allocations")])
}

/// A fork refused by `pids.max` after `dup_mmap` allocates and frees the child's anon_vmas
/// in the parent, and no fork event comes: the model must not call itself complete, and the
/// objects it names are exactly what observed has over eager.
#[test]
fn forks_refused_by_pids_max_are_named_not_silently_missing() {
    if !root_or_skip("forks_refused_by_pids_max_are_named_not_silently_missing") {
        return;
    }
    let Some(cg) = TestCgroup::pids("failfork") else {
        eprintln!("forks_refused_by_pids_max_are_named_not_silently_missing: skipped (no pids cgroup controller)");
        return;
    };
    std::fs::write(cg.dir().join("pids.max"), "1").unwrap();
    let dir = Dir::new("failfork");
    let rec = dir.file("rec.lzv");
    // Alone in the cgroup, every fork is refused after the copy.
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec perl -e 'my $x = \"a\" x 1000000; my $f = 0; for (1..20) {{ my $p = fork; if (!defined $p) {{ $f++; next }} if ($p == 0) {{ exit 0 }} waitpid($p, 0) }} print STDERR \"failed $f\\n\"'",
        cg.dir().display()
    );
    // One traced run: the forks named as failed, and exactly what observed has over eager.
    let traced = |how: &str, extra: &[&str]| {
        let out = lazyvma(&[&["trace", "-j"][..], extra, &["--", "sh", "-c", &script]].concat());
        let v: Value = serde_json::from_str(&ok(&out)).unwrap();
        assert!(String::from_utf8_lossy(&out.stderr).contains("failed 20"), "{how}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(v["model"]["complete"], false, "{how}");
        let (line, named) = failed_forks(&v);
        assert!(line.starts_with("20 forks failed after copying their parent's VMAs"), "{how}: {line}");
        let (obs, eager) = (counts(&v["observed"]), counts(&v["eager"]));
        assert_eq!([obs[0] - eager[0], obs[1] - eager[1]], named, "{how}: observed {obs:?} eager {eager:?}: {line}");
        (line, named)
    };
    let (line, named) = traced("recorded", &["-o", &rec]);
    assert!(named[0] >= 20, "{line}");
    // Every refused fork copies the same VMAs of a parent that was exec'd and never forked:
    // per VMA the child's anon_vma and two chains (to the parent's anon_vma and its own).
    assert_eq!((named[0] % 20, named[1]), (0, 2 * named[0]), "{line}");
    // The replay tells the same.
    let r: Value = serde_json::from_str(&ok(&lazyvma(&["replay", "-j", &rec]))).unwrap();
    assert_eq!(failed_forks(&r).0, line);
    // Without -o the kernel counts the forks' allocations (none reaches userspace): the
    // teardowns, which stream, tell the same forks and objects.
    assert_eq!(traced("kernel counts", &[]).1, named);
}

/// A tmpfs of `kib` KiB mounted on a fresh directory, unmounted on drop.
struct SmallFs(Dir);

impl SmallFs {
    fn new(tag: &str, kib: u32) -> SmallFs {
        let d = Dir::new(tag);
        let size = format!("size={kib}k");
        let st = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", &size, "tmpfs"]).arg(&d.0).status().unwrap();
        assert!(st.success(), "mount tmpfs");
        SmallFs(d)
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0 .0).status();
    }
}

/// Disk full while recording: one line says so, the trace goes on and prints its report,
/// and the recording replays to its last whole chunk, saying it was cut short.
#[test]
fn a_full_disk_cuts_the_recording_not_the_report() {
    if !root_or_skip("a_full_disk_cuts_the_recording_not_the_report") {
        return;
    }
    let fs = SmallFs::new("diskfull", 256);
    let rec = fs.0.file("rec.lzv");
    let cmd = format!("{} fork-loop --loops 500 >/dev/null", env!("CARGO_BIN_EXE_lazyvma-workload"));
    let out = lazyvma(&["trace", "-j", "-o", &rec, "--", "sh", "-c", &cmd]);
    let err = String::from_utf8_lossy(&out.stderr);
    let v: Value = serde_json::from_str(&ok(&out)).unwrap_or_else(|e| panic!("no report on stdout ({e}): {err}"));
    let full: Vec<&str> = err.lines().filter(|l| l.contains("No space left on device") && l.contains("the trace goes on")).collect();
    assert_eq!(full.len(), 1, "{err}");
    assert!(full[0].starts_with("lazyvma: writing recording ") && full[0].contains("ends at its last whole chunk"), "{err}");
    // fork-loop's 500 forks: every one observed, whatever the disk did.
    let traced = counts(&v["observed"]);
    assert!(traced[0] >= 500, "{traced:?}");
    // The model followed every one: the recording's end is not the trace's.
    assert_eq!(v["model"]["complete"], true, "{}", v["model"]["incomplete"]);
    assert_eq!(v["observed"], v["eager"]);
    // In fork-loop's fork phase (3) its parent alone allocates: per fork the same anon_vmas,
    // two chains each (the parent was exec'd and never forked before).
    let forks: Vec<[u64; 2]> =
        v["phases"].as_array().unwrap().iter().filter(|r| r["phase"] == 3 && r["anon_vma"]["alloc"].as_u64() > Some(0)).map(counts).collect();
    assert!(matches!(forks[..], [[av, avc]] if av > 0 && av % 500 == 0 && avc == 2 * av), "{forks:?}");
    assert!(std::fs::metadata(&rec).unwrap().len() <= 256 * 1024);
    let r = lazyvma(&["replay", "-j", &rec]);
    let rerr = String::from_utf8_lossy(&r.stderr);
    let rv: Value = serde_json::from_str(&ok(&r)).unwrap();
    assert!(rerr.contains("recording cut short after chunk"), "{rerr}");
    let why = rv["model"]["incomplete"].to_string();
    assert!(why.contains("recording cut short"), "{why}");
    let replayed = counts(&rv["observed"]);
    assert!(replayed[0] < traced[0] && replayed[1] < traced[1], "replayed {replayed:?} of {traced:?}");
}

/// Whether `pid` has a handler for `sig` (its SigCgt bit): a signal sent before the handler
/// is in place would kill it instead of being counted.
fn catches(pid: u32, sig: i32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let cgt = status.lines().find_map(|l| l.strip_prefix("SigCgt:")).map(|v| u64::from_str_radix(v.trim(), 16).unwrap()).unwrap_or(0);
    cgt & (1 << (sig - 1)) != 0
}

fn wait_with_timeout(mut child: std::process::Child, secs: u64) -> std::process::Output {
    let t0 = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > std::time::Duration::from_secs(secs) {
            let _ = child.kill();
            panic!("still running {secs} s after the signal");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// `replay` stops at SIGINT: in its record pass with one line, exit 130 and no report (nor
/// --report file); in the knob sweep (which says it starts when it is big) the sweep is
/// skipped, the report printed and `model.knob_sweep` says why. Text output does not wait
/// for a sweep it does not show.
#[test]
fn replay_stops_at_sigint_and_sigint_skips_the_sweep() {
    if !root_or_skip("replay_stops_at_sigint_and_sigint_skips_the_sweep") {
        return;
    }
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let dir = Dir::new("replay-sigint");
    let rec = dir.file("rec.lzv");
    // ~58k model events: a sweep of 15 runs over them is announced (and takes ~1 s).
    let cmd = format!("{} fault-loop -n 64 --loops 300 >/dev/null", env!("CARGO_BIN_EXE_lazyvma-workload"));
    ok(&lazyvma(&["trace", "-o", &rec, "--", "sh", "-c", &cmd]));
    let replay = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_lazyvma")).arg("replay").args(extra).arg(&rec).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    };

    // In the record pass: the handler is in place before the file is read.
    let report = dir.file("r.json");
    let child = replay(&["-j", "--report", &report]);
    let pid = child.id();
    while !catches(pid, libc::SIGINT) {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let out = wait_with_timeout(child, 10);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.starts_with("lazyvma: replay of ") && err.contains("stopped by a signal after 0 of ") && err.lines().count() == 1, "{err}");
    assert!(out.stdout.is_empty() && !std::path::Path::new(&report).exists());

    // In the sweep: skipped, the rest of the report as always.
    let mut child = replay(&["-j"]);
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("knob sweep: 15 runs over ") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "the sweep was not announced");
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = wait_with_timeout(child, 10);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(out.status.success(), "{rest}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let why = v["model"]["knob_sweep"].as_str().unwrap_or_default();
    assert!(why.starts_with("not run: stopped by a signal after "), "{why} / {rest}");
    assert!(v["rules_that_matter"].is_null());
    assert_eq!(v["model"]["complete"], true, "{}", v["model"]["incomplete"]);

    // Text output: no sweep, so no announcement.
    let out = lazyvma(&["replay", &rec]);
    ok(&out);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("knob sweep"));
}

/// `GET /metrics` over HTTP/1.0; the status line, or the error.
fn scrape(port: u16) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    Ok(raw.lines().next().unwrap_or_default().to_string())
}

/// 3,000 connections held open and silent: serve keeps at most 256 (its fds stay bounded (the
/// snapshot pass opens a few of its own at times), so
/// the snapshot pass still has its own), closes the idle ones after the header timeout and
/// scrapes again, with a line on stderr per episode of refusals.
#[test]
fn serve_bounds_held_connections_and_closes_idle_ones() {
    if !root_or_skip("serve_bounds_held_connections_and_closes_idle_ones") {
        return;
    }
    use std::io::Read;
    use std::time::{Duration, Instant};
    let dir = Dir::new("serve-held");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = std::fs::File::create(dir.path("serve.log")).unwrap();
    let mut serve = std::process::Command::new(env!("CARGO_BIN_EXE_lazyvma"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "-i", "1s"])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let pid = serve.id();
    let _k = Kill(&mut serve);
    let log = || std::fs::read_to_string(dir.path("serve.log")).unwrap_or_default();
    let t0 = Instant::now();
    while !scrape(port).is_ok_and(|s| s.contains(" 200 ")) {
        assert!(t0.elapsed() < Duration::from_secs(120), "serve did not come up: {}", log());
        std::thread::sleep(Duration::from_millis(200));
    }
    let fds = || std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0);
    let before = fds();
    // Our side needs its own fds for 3,000 sockets.
    let lim = libc::rlimit { rlim_cur: 8192, rlim_max: 8192 };
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    let held: Vec<std::net::TcpStream> = (0..3000).filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).ok()).collect();
    assert!(held.len() >= 2900, "{} connected", held.len());
    std::thread::sleep(Duration::from_secs(2));
    let during = fds();
    assert!(during <= before + 300, "serve holds {during} fds (before: {before})");
    // The idle ones are closed by the header timeout (10 s), then scrapes work again.
    let t0 = Instant::now();
    let mut open = held.len();
    for mut s in held {
        let left = Duration::from_secs(20).saturating_sub(t0.elapsed()).max(Duration::from_millis(1));
        s.set_read_timeout(Some(left)).unwrap();
        let mut b = [0u8; 1];
        let closed = match s.read(&mut b) {
            Ok(n) => n == 0,
            Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
        };
        if closed {
            open -= 1;
        }
    }
    assert_eq!(open, 0);
    assert!(t0.elapsed() < Duration::from_secs(20), "idle connections closed after {:?}", t0.elapsed());
    assert!(scrape(port).unwrap().contains(" 200 "), "{}", log());
    let lines = log();
    // A line per episode of refusals (the backlog drains in one or two), never one per connection.
    assert!((1..=5).contains(&lines.matches("connections held: new ones are closed").count()), "{lines}");
    assert!(!lines.contains("BTF"), "{lines}");
}
