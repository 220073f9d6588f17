//! SIGINT, SIGTERM and SIGKILL at each stage of a trace: at start (loading and attaching),
//! during the seeding pass (`trace -p`) and during the final report (the knob sweep). Each
//! case: the exit status, the report where the signal lets one be printed, the recording
//! (`-o`) readable to its last chunk or an older one kept, `--stats`' hold on the kernel's
//! run-time stats gone with the sysctl untouched, and no program, map or link of the run
//! left in the kernel (what bpftool would list, checked by id).
//!
//! The stage is observed from outside, never signalled by the binary: the SIGINT handler in
//! SigCgt (installed just before the programs load), the `lazyvma-seed` thread, the sweep's
//! announcement on stderr.
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{atomic::AtomicBool, atomic::Ordering, Arc, Mutex};
use std::time::{Duration, Instant};

mod common;
use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_lazyvma");
const WORKLOAD: &str = env!("CARGO_BIN_EXE_lazyvma-workload");
const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";
const SIGNALS: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGKILL];

fn name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "SIGKILL",
    }
}

/// The ids of the BPF programs, maps and links a process held (its fds' fdinfo).
#[derive(Default, Debug)]
struct Ids {
    progs: BTreeSet<u32>,
    maps: BTreeSet<u32>,
    links: BTreeSet<u32>,
    /// Whether it held a BPF_ENABLE_STATS fd.
    stats: bool,
}

impl Ids {
    fn add(&mut self, pid: u32) {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return };
        for e in dir.flatten() {
            let Ok(link) = std::fs::read_link(e.path()) else { continue };
            let (set, key) = match link.to_string_lossy().as_ref() {
                "anon_inode:bpf-prog" => (&mut self.progs, "prog_id:"),
                "anon_inode:bpf-map" => (&mut self.maps, "map_id:"),
                "anon_inode:bpf_link" => (&mut self.links, "link_id:"),
                "anon_inode:bpf-stats" => {
                    self.stats = true;
                    continue;
                }
                _ => continue,
            };
            let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", e.file_name().to_string_lossy())).unwrap_or_default();
            if let Some(id) = info.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.trim().parse().ok()) {
                set.insert(id);
            }
        }
    }

    /// Those still in the kernel (none once the last fd is closed; the kernel frees them
    /// after an RCU grace period or from a workqueue: waited for up to 10 s).
    fn left(&self) -> Vec<String> {
        let t0 = Instant::now();
        loop {
            let mut left = vec![];
            for p in aya::programs::loaded_programs().flatten() {
                if self.progs.contains(&p.id()) {
                    left.push(format!("prog {} {}", p.id(), String::from_utf8_lossy(p.name())));
                }
            }
            for m in aya::maps::loaded_maps().flatten() {
                if self.maps.contains(&m.id()) {
                    left.push(format!("map {} {}", m.id(), String::from_utf8_lossy(m.name())));
                }
            }
            for l in aya::programs::loaded_links().flatten() {
                if self.links.contains(&l.id()) {
                    left.push(format!("link {}", l.id()));
                }
            }
            if left.is_empty() || t0.elapsed() > Duration::from_secs(10) {
                return left;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The ids `pid` holds, gathered every 2 ms until it exits (or `stop`).
struct Watch {
    ids: Arc<Mutex<Ids>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watch {
    fn new(pid: u32) -> Watch {
        let (ids, stop) = (Arc::new(Mutex::new(Ids::default())), Arc::new(AtomicBool::new(false)));
        let (i, s) = (ids.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) && std::path::Path::new(&format!("/proc/{pid}/fd")).exists() {
                i.lock().unwrap().add(pid);
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Watch { ids, stop, thread: Some(thread) }
    }

    fn finish(mut self) -> Ids {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        std::mem::take(&mut *self.ids.lock().unwrap())
    }
}

fn catches(pid: u32, sig: i32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let cgt = status.lines().find_map(|l| l.strip_prefix("SigCgt:")).map(|v| u64::from_str_radix(v.trim(), 16).unwrap()).unwrap_or(0);
    cgt & (1 << (sig - 1)) != 0
}

/// Whether one of `pid`'s threads is named `comm`.
fn has_thread(pid: u32, comm: &str) -> bool {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
    dir.flatten().any(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end() == comm))
}

fn wait_until(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !done() {
        assert!(t0.elapsed() < Duration::from_secs(secs), "{what}: not within {secs} s");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn send(pid: u32, sig: i32) {
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(pid as i32, sig) };
}

fn sysctl() -> String {
    std::fs::read_to_string(SYSCTL).unwrap().trim().to_string()
}

/// What every case checks once lazyvma has exited: nothing of it left in the kernel, its
/// stats hold gone with it and the sysctl as it was (another engineer's tool may change it:
/// said, not failed).
fn nothing_left(case: &str, ids: &Ids, pid: u32, sysctl_before: &str, stats_expected: bool) {
    assert!(!ids.progs.is_empty() || !stats_expected, "{case}: no BPF program seen in the run");
    let left = ids.left();
    assert!(left.is_empty(), "{case}: left in the kernel: {left:?}");
    // Legacy kprobe events (kernels without the perf kprobe PMU) are named after the pid.
    let events = std::fs::read_to_string("/sys/kernel/tracing/kprobe_events").unwrap_or_default();
    assert!(!events.contains(&format!("aya_{pid}_")), "{case}: kprobe events left: {events}");
    if stats_expected {
        assert!(ids.stats, "{case}: no bpf-stats fd held during the --stats run");
    }
    let now = sysctl();
    if now != sysctl_before {
        eprintln!("{case}: kernel.bpf_stats_enabled {sysctl_before} -> {now}: lazyvma never writes it (it holds an fd), another process did");
    }
}

fn spawn(args: &[&str]) -> Child {
    Command::new(BIN).args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

fn output(child: Child, case: &str) -> (Option<i32>, Option<i32>, Vec<u8>, String) {
    use std::os::unix::process::ExitStatusExt;
    let t0 = Instant::now();
    let mut child = child;
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("{case}: still running 60 s after the signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (out.status.code(), out.status.signal(), out.stdout, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `replay -j` of a recording a trace finished: whole, with the trace's `ended_by`.
fn replays_whole(case: &str, rec: &str, ended_by: &str) {
    let out = lazyvma(&["replay", "-j", rec]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{case}: replay: {err}");
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["recording"]["complete"], true, "{case}: {err}");
    assert_eq!(j["ended_by"], ended_by, "{case}");
}

/// `replay -j` of a recording cut by SIGKILL: read to its last chunk, said cut short.
fn replays_cut(case: &str, rec: &str) -> Value {
    let out = lazyvma(&["replay", "-j", rec]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{case}: replay: {err}");
    assert!(err.starts_with("lazyvma: recording cut short after chunk "), "{case}: {err}");
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["recording"]["complete"], false, "{case}");
    j
}

/// Files in `dir` other than `keep` (a temporary recording left by SIGKILL is removed and
/// counted).
fn strays(dir: &Dir, keep: &str) -> Vec<String> {
    let mut out = vec![];
    for e in std::fs::read_dir(&dir.0).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n != keep {
            let _ = std::fs::remove_file(e.path());
            out.push(n);
        }
    }
    out
}

/// At start, with a command: the signal comes while the programs load (the handler is in
/// place just before). SIGINT/SIGTERM: the command is never run, one line, exit 130, an
/// existing recording kept. SIGKILL once a BPF object exists: killed, the command not run,
/// the existing recording kept (its temporary file is left: docs/reliability.md).
#[test]
fn a_signal_while_loading_runs_nothing_and_leaves_nothing() {
    if !root_or_skip("a_signal_while_loading_runs_nothing_and_leaves_nothing") {
        return;
    }
    let dir = Dir::new("sig-start");
    let rec = dir.file("old.lzv");
    for sig in SIGNALS {
        let case = format!("{} while loading `trace -- CMD`", name(sig));
        std::fs::write(&rec, b"an older recording").unwrap();
        let before = sysctl();
        let t = spawn(&["trace", "-j", "--stats", "-o", &rec, "--", WORKLOAD, "touch"]);
        let pid = t.id();
        let watch = Watch::new(pid);
        if sig == libc::SIGKILL {
            wait_until(&case, 30, || !watch.ids.lock().unwrap().maps.is_empty());
        } else {
            wait_until(&case, 30, || catches(pid, libc::SIGINT));
        }
        send(pid, sig);
        let (code, killed, stdout, err) = output(t, &case);
        let ids = watch.finish();
        // The workload's done line would be on stdout.
        assert!(stdout.is_empty(), "{case}: the command ran: {}", String::from_utf8_lossy(&stdout));
        if sig == libc::SIGKILL {
            assert_eq!(killed, Some(libc::SIGKILL), "{case}: {err}");
        } else {
            let want = format!("lazyvma: stopped by a signal before `{WORKLOAD} touch` started: it was not run, nothing traced\n");
            assert_eq!((code, err.as_str()), (Some(130), want.as_str()), "{case}");
        }
        assert_eq!(std::fs::read(&rec).unwrap(), b"an older recording", "{case}");
        let left = strays(&dir, "old.lzv");
        assert!(sig == libc::SIGKILL || left.is_empty(), "{case}: {left:?}");
        nothing_left(&case, &ids, pid, &before, sig != libc::SIGKILL);
    }
}

/// At start, whole system: SIGINT/SIGTERM while loading end the trace as soon as it is
/// attached, through its report (`ended_by: signal`, exit 0) and a whole recording.
#[test]
fn a_signal_while_loading_a_system_trace_still_reports() {
    if !root_or_skip("a_signal_while_loading_a_system_trace_still_reports") {
        return;
    }
    let dir = Dir::new("sig-start-sys");
    let rec = dir.file("sys.lzv");
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let case = format!("{} while loading `trace` (system)", name(sig));
        let before = sysctl();
        let t = spawn(&["trace", "-j", "--stats", "-o", &rec, "-d", "60"]);
        let pid = t.id();
        let watch = Watch::new(pid);
        wait_until(&case, 30, || catches(pid, libc::SIGINT));
        send(pid, sig);
        let (code, _, stdout, err) = output(t, &case);
        let ids = watch.finish();
        assert_eq!(code, Some(0), "{case}: {err}");
        let j: Value = serde_json::from_slice(&stdout).unwrap_or_else(|e| panic!("{case}: {e}: {err}"));
        assert_eq!((j["ended_by"].as_str(), j["scope"].as_str()), (Some("signal"), Some("system")), "{case}");
        assert!(j["bpf_stats"].is_object(), "{case}");
        replays_whole(&case, &rec, "signal");
        nothing_left(&case, &ids, pid, &before, true);
    }
}

/// `lazyvma-workload manyvmas --hold`: 17 processes of ~170k VMAs in all (~300 ms of
/// seeding here), held until dropped.
struct Many {
    proc: Child,
    parent: u32,
}

impl Many {
    fn start() -> Many {
        let mut proc = Command::new(WORKLOAD).args(["manyvmas", "--loops", "10000", "--hold"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        let mut lines = BufReader::new(proc.stdout.take().unwrap()).lines();
        let (mut ready, mut parent) = (0, 0);
        while ready < 17 {
            let l = lines.next().expect("manyvmas exited before ready").unwrap();
            if l.starts_with("ready role=") {
                ready += 1;
                if !l.contains("role=child") {
                    parent = l.rsplit("pid=").next().unwrap().parse().unwrap();
                }
            }
        }
        assert_ne!(parent, 0);
        Many { proc, parent }
    }
}

impl Drop for Many {
    fn drop(&mut self) {
        drop(self.proc.stdin.take());
        let _ = self.proc.wait();
    }
}

/// During the seeding pass of `trace -p`: SIGINT/SIGTERM let the pass finish and its held
/// records feed, then the report (all 17 processes seeded) and a whole recording; SIGKILL
/// leaves a recording cut short that replays to its last chunk.
#[test]
fn a_signal_while_seeding_keeps_the_seed_or_the_recording() {
    if !root_or_skip("a_signal_while_seeding_keeps_the_seed_or_the_recording") {
        return;
    }
    let dir = Dir::new("sig-seed");
    let rec = dir.file("seed.lzv");
    let many = Many::start();
    for sig in SIGNALS {
        let case = format!("{} while seeding `trace -p`", name(sig));
        let before = sysctl();
        let t = spawn(&["trace", "-j", "--stats", "-o", &rec, "-p", &many.parent.to_string()]);
        let pid = t.id();
        let watch = Watch::new(pid);
        wait_until(&case, 60, || has_thread(pid, "lazyvma-seed"));
        send(pid, sig);
        let (code, killed, stdout, err) = output(t, &case);
        let ids = watch.finish();
        // -j: a live row (on stderr) only comes once seeded; the signal came before.
        assert!(!err.contains("    1.0s "), "{case}: a live row before the signal: {err}");
        if sig == libc::SIGKILL {
            assert_eq!(killed, Some(libc::SIGKILL), "{case}: {err}");
            replays_cut(&case, &rec);
        } else {
            assert_eq!(code, Some(0), "{case}: {err}");
            let j: Value = serde_json::from_slice(&stdout).unwrap_or_else(|e| panic!("{case}: {e}: {err}"));
            assert_eq!(j["ended_by"], "signal", "{case}");
            assert_eq!(j["model"]["seeded"].as_array().map(Vec::len), Some(17), "{case}: {}", j["model"]);
            assert!(j["model"]["seeded_live"]["eager"]["anon_vma"].as_u64().unwrap_or(0) >= 10_000, "{case}: {}", j["model"]["seeded_live"]);
            replays_whole(&case, &rec, "signal");
        }
        let left = strays(&dir, "seed.lzv");
        assert!(left.is_empty(), "{case}: {left:?}");
        nothing_left(&case, &ids, pid, &before, true);
    }
}

/// During the final report's knob sweep (announced on stderr once it is big): SIGINT/SIGTERM
/// skip the sweep and the report comes, saying so; SIGKILL leaves no report but the
/// recording is already whole (written before the sweep), as are the programs' release and
/// the stats hold.
#[test]
fn a_signal_in_the_final_report_skips_the_sweep_or_keeps_the_recording() {
    if !root_or_skip("a_signal_in_the_final_report_skips_the_sweep_or_keeps_the_recording") {
        return;
    }
    let dir = Dir::new("sig-report");
    let rec = dir.file("report.lzv");
    // ~58k model events: the sweep of 15 runs over them is announced (~1 s).
    let cmd = format!("{WORKLOAD} fault-loop -n 64 --loops 300 >/dev/null");
    for sig in SIGNALS {
        let case = format!("{} in the final report of `trace -- CMD`", name(sig));
        let before = sysctl();
        let mut t = spawn(&["trace", "-j", "--stats", "-o", &rec, "--", "sh", "-c", &cmd]);
        let pid = t.id();
        let watch = Watch::new(pid);
        let mut stderr = BufReader::new(t.stderr.take().unwrap());
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            assert!(stderr.read_line(&mut line).unwrap() > 0, "{case}: the sweep was not announced: {seen}");
            seen += &line;
            if line.contains("knob sweep: 15 runs over ") {
                break;
            }
        }
        send(pid, sig);
        let (code, killed, stdout, _) = output(t, &case);
        let ids = watch.finish();
        stderr.read_to_string(&mut seen).unwrap();
        if sig == libc::SIGKILL {
            assert_eq!(killed, Some(libc::SIGKILL), "{case}: {seen}");
            assert!(stdout.is_empty(), "{case}");
        } else {
            assert_eq!(code, Some(0), "{case}: {seen}");
            let j: Value = serde_json::from_slice(&stdout).unwrap_or_else(|e| panic!("{case}: {e}: {seen}"));
            assert_eq!(j["ended_by"], "command exit", "{case}");
            let why = j["model"]["knob_sweep"].as_str().unwrap_or_default();
            assert!(why.starts_with("not run: stopped by a signal after "), "{case}: {why}");
            assert!(j["bpf_stats"].is_object(), "{case}");
        }
        replays_whole(&case, &rec, "command exit");
        nothing_left(&case, &ids, pid, &before, true);
    }
}
