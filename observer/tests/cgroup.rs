//! `--cgroup` and `--by-cgroup` of snapshot, trace and serve on real cgroups (root): each
//! test makes its own cgroup in the cgroup2 hierarchy (found in /proc/self/mountinfo:
//! /sys/fs/cgroup/unified on hybrid hosts), moves a workload of known layout into it, and
//! removes it however the test ends.
use serde_json::Value;
use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

mod common;
use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_lazyvma");
const WORKLOAD: &str = env!("CARGO_BIN_EXE_lazyvma-workload");

fn json_of(out: &Output) -> Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// pid → (eager AV, eager AVC, lazy AV, lazy AVC) of a snapshot's listed processes.
fn per_pid(v: &Value) -> BTreeMap<u64, [u64; 4]> {
    let n = |p: &Value, m: &str, k: &str| p[m][k].as_u64().unwrap();
    v["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (p["pid"].as_u64().unwrap(), [n(p, "eager", "anon_vma"), n(p, "eager", "anon_vma_chain"), n(p, "lazy", "anon_vma"), n(p, "lazy", "anon_vma_chain")])
        })
        .collect()
}

fn sum(m: &BTreeMap<u64, [u64; 4]>) -> [u64; 4] {
    m.values().fold([0; 4], |a, v| [a[0] + v[0], a[1] + v[1], a[2] + v[2], a[3] + v[3]])
}

#[test]
fn snapshot_cgroup_relative_and_absolute() {
    if !root_or_skip("snapshot_cgroup_relative_and_absolute") {
        return;
    }
    let cg = TestCgroup::new("snap");
    let w = HeldFork::start(3);
    cg.add(w.parent);
    cg.add(w.child);
    let by_pid = per_pid(&json_of(&lazyvma(&["snapshot", "-j", "-p", &format!("{},{}", w.parent, w.child)])));
    // Spec §1.2 + §1.4 over the base layout: the three test VMAs are in these counts.
    let s = sum(&by_pid);
    assert!(s[0] >= 6 && s[1] >= 9 && s[2] >= 3 && s[3] >= 6, "{by_pid:?}");
    let abs = cg.dir().display().to_string();
    for path in [cg.name.as_str(), abs.as_str()] {
        let v = json_of(&lazyvma(&["snapshot", "-j", "--by-cgroup", "--cgroup", path]));
        assert_eq!(per_pid(&v), by_pid, "snapshot --cgroup {path}: the workload's processes, exactly");
        let rows = v["cgroups"].as_array().unwrap();
        let row = rows.iter().find(|r| r["path"] == format!("/{}", cg.name)).unwrap_or_else(|| panic!("no row for the test cgroup: {rows:?}"));
        let got =
            [&row["eager"]["anon_vma"], &row["eager"]["anon_vma_chain"], &row["lazy"]["anon_vma"], &row["lazy"]["anon_vma_chain"]].map(|x| x.as_u64().unwrap());
        assert_eq!((row["processes"].as_u64(), got), (Some(2), s), "{row}");
        let id = std::fs::metadata(cg.dir()).map(|m| std::os::unix::fs::MetadataExt::ino(&m)).unwrap();
        assert_eq!(row["id"].as_u64(), Some(id), "the cgroup id is its directory's inode");
    }
    drop(w);
}

/// [AV alloc, AV free, AVC alloc, AVC free].
fn four(v: &Value) -> [u64; 4] {
    let g = |k: &str, op: &str| v[k][op].as_u64().unwrap_or(0);
    [g("anon_vma", "alloc"), g("anon_vma", "free"), g("anon_vma_chain", "alloc"), g("anon_vma_chain", "free")]
}

/// (proc, phase) → counts of the rows after the workload's first marker: what the
/// scenario did, the same however the process was started.
fn marked(j: &Value) -> BTreeMap<(u64, u64), [u64; 4]> {
    j["phases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| !p["phase"].is_null())
        .map(|p| ((p["proc"].as_u64().unwrap(), p["phase"].as_u64().unwrap()), four(p)))
        .collect()
}

fn no_aslr(cmd: &mut Command) -> &mut Command {
    // SAFETY: personality is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::personality(libc::ADDR_NO_RANDOMIZE as libc::c_ulong);
            Ok(())
        })
    }
}

fn report(stdout: &[u8]) -> Value {
    let s = String::from_utf8_lossy(stdout);
    let at = if s.starts_with('{') { 0 } else { s.find("\n{").map_or(s.len(), |i| i + 1) };
    serde_json::from_str(&s[at..]).unwrap_or_else(|e| panic!("no JSON report ({e}): {s}"))
}

/// `trace --cgroup` of a shell in the cgroup that, once the trace is attached, execs
/// `fork -n 3`; against `trace -- fork -n 3`. Before the first marker they differ by
/// design (the shell's own image is torn down at its exec and counted; lazyvma's forked
/// image under `-- CMD` is not); from the first marker on, every (process, phase) row is
/// the same.
#[test]
fn trace_cgroup_follows_a_workload_like_a_command() {
    if !root_or_skip("trace_cgroup_follows_a_workload_like_a_command") {
        return;
    }
    let cg = TestCgroup::new("trace");
    let mut sh = no_aslr(Command::new("sh").args(["-c", "read x; exec \"$0\" \"$@\"", WORKLOAD, "fork", "-n", "3"]))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    cg.add(sh.id());
    let mut trace = Command::new(BIN)
        .args(["trace", "-j", "--by-cgroup", "-i", "100ms", "-d", "60s", "--cgroup", &cg.name])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The first live row comes after the programs are attached.
    let mut err = BufReader::new(trace.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    loop {
        let Some(Ok(line)) = err.next() else {
            let _ = sh.kill();
            let _ = sh.wait();
            panic!("trace ended before attaching: {seen}");
        };
        seen += &line;
        if line.trim_start().starts_with("time") {
            break;
        }
    }
    let drain = std::thread::spawn(move || err.map_while(Result::ok).collect::<Vec<_>>().join("\n"));
    sh.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let mut stdout = Vec::new();
    trace.stdout.take().unwrap().read_to_end(&mut stdout).unwrap();
    let st = trace.wait().unwrap();
    let err = drain.join().unwrap();
    assert!(sh.wait().unwrap().success());
    assert!(st.success(), "trace --cgroup: {st}: {err}");
    let c = report(&stdout);
    assert_eq!((c["scope"].as_str(), c["ended_by"].as_str()), (Some("cgroup"), Some("all traced processes exited")), "{c}");
    assert_eq!(c["cgroup"].as_str(), Some(cg.dir().to_str().unwrap()));

    let out = no_aslr(Command::new(BIN).args(["trace", "-j", "--", WORKLOAD, "fork", "-n", "3"])).stderr(Stdio::inherit()).output().unwrap();
    assert!(out.status.success());
    let k = report(&out.stdout);
    for j in [&c, &k] {
        assert_eq!(j["lost_events"], 0, "events lost: counts not exact");
    }
    let (mc, mk) = (marked(&c), marked(&k));
    assert!(mk.len() >= 4, "the fork scenario's phases: {mk:?}");
    assert_eq!(mc, mk, "per (proc, phase) from the first marker: trace --cgroup vs trace -- CMD");
    // Spec §5 B, N = 3: the touch phase writes the three test VMAs only.
    assert_eq!(mc[&(0, 2)], [3, 0, 3, 0]);
    // (That trace -- CMD gives the spec's counts for this scenario is trace_host's `fork`.)
    eprintln!("trace --cgroup == trace -- CMD from the first marker: {mc:?}");

    // --by-cgroup: everything traced started in the test cgroup, and rows sum to the totals.
    let rows = c["by_cgroup"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["path"], format!("/{}", cg.name));
    assert_eq!(rows[0]["processes"], 2);
    assert_eq!(four(&rows[0]), four(&c["observed"]));
}

/// `trace -j --by-cgroup -- sh -c 'move into cgroup DIR; exec fork -n 3 --hold'`: the child
/// holds (stdin) until well after its fork was decoded (a child already gone when trace
/// first sees it can only be given its parent's cgroup as first seen). Its report, the
/// trace and the command successful, nothing lost.
fn trace_fork_in(dir: &Path) -> Value {
    let script = "echo $$ > \"$1\"/cgroup.procs && shift && exec \"$0\" \"$@\"";
    let mut trace = Command::new(BIN)
        .args(["trace", "-j", "--by-cgroup", "--", "sh", "-c", script, WORKLOAD])
        .arg(dir)
        .args(["fork", "-n", "3", "--hold"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(trace.stdout.take().unwrap());
    let mut text = String::new();
    while !text.contains("ready role=child") {
        assert!(stdout.read_line(&mut text).unwrap() > 0, "trace ended before the child was ready: {text}");
    }
    std::thread::sleep(Duration::from_secs(1));
    drop(trace.stdin.take());
    stdout.read_to_string(&mut text).unwrap();
    assert!(trace.wait().unwrap().success());
    let j = report(text.as_bytes());
    assert_eq!((j["command"]["exit_status"].as_i64(), j["lost_events"].as_i64()), (Some(0), Some(0)), "{}", j["events"]);
    j
}

/// `trace --by-cgroup -- sh -c 'move into the cgroup; exec fork -n 3'`: the shell is seen
/// first in the test's cgroup, its forked child first in the test cgroup, so the child's
/// counts are the test cgroup's row, and the rows sum to the totals.
#[test]
fn trace_by_cgroup_rows_sum_to_the_totals() {
    if !root_or_skip("trace_by_cgroup_rows_sum_to_the_totals") {
        return;
    }
    let cg = TestCgroup::new("bycg");
    let j = trace_fork_in(&cg.dir());
    let rows = j["by_cgroup"].as_array().unwrap();
    let total = rows.iter().map(four).fold([0; 4], |a, v| [a[0] + v[0], a[1] + v[1], a[2] + v[2], a[3] + v[3]]);
    assert_eq!(total, four(&j["observed"]), "{rows:?}");
    assert_eq!(rows.iter().map(|r| r["processes"].as_u64().unwrap()).sum::<u64>(), 2);
    let mine = rows.iter().find(|r| r["path"] == format!("/{}", cg.name)).unwrap_or_else(|| panic!("{rows:?}"));
    let child: [u64; 4] =
        j["phases"].as_array().unwrap().iter().filter(|p| p["proc"] == 1).map(four).fold([0; 4], |a, v| [a[0] + v[0], a[1] + v[1], a[2] + v[2], a[3] + v[3]]);
    assert_eq!(four(mine), child);
    // Spec §5 B: the child forked with 3 written VMAs frees 3 AV and 6 AVC at its exit, more
    // for its base layout.
    assert!(child[1] >= 3 && child[3] >= 6, "{child:?}");
    assert_eq!(mine["processes"], 1);
}

/// A cgroup whose name is not UTF-8 (a name is bytes; any root-made cgroup may have one):
/// the process in it gets that cgroup's row, shown lossily with its real id, not its
/// parent's row as if /proc/PID/cgroup could not be read.
#[test]
fn a_non_utf8_cgroup_keeps_its_own_row() {
    use std::os::unix::ffi::OsStrExt;
    if !root_or_skip("a_non_utf8_cgroup_keeps_its_own_row") {
        return;
    }
    let cg = TestCgroup::new("bytes");
    let sub = cg.dir().join(std::ffi::OsStr::from_bytes(b"n\xffme"));
    std::fs::create_dir(&sub).unwrap();
    struct Rmdir(PathBuf);
    impl Drop for Rmdir {
        fn drop(&mut self) {
            for _ in 0..100 {
                if std::fs::remove_dir(&self.0).is_ok() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    let _rm = Rmdir(sub.clone());
    let j = trace_fork_in(&sub);
    let rows = j["by_cgroup"].as_array().unwrap();
    let want = format!("/{}/n\u{fffd}me", cg.name);
    let mine = rows.iter().find(|r| r["path"] == want.as_str()).unwrap_or_else(|| panic!("no row {want:?}: {rows:?}"));
    use std::os::unix::fs::MetadataExt;
    assert_eq!(mine["id"].as_u64(), Some(std::fs::metadata(&sub).unwrap().ino()), "{mine}");
    assert_eq!(mine["processes"], 1, "the forked child, first seen in the cgroup: {rows:?}");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Sample lines of /metrics in the text format: series → value.
fn scrape(port: u16) -> std::io::Result<BTreeMap<String, f64>> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\nAccept: text/plain;version=0.0.4\r\n\r\n")?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok(body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' ').and_then(|(k, v)| Some((k.to_string(), v.parse().ok()?))))
        .collect())
}

/// Sum of the series whose name (before the labels) is `name`.
fn family(m: &BTreeMap<String, f64>, name: &str) -> f64 {
    m.iter().filter(|(k, _)| k.split('{').next() == Some(name)).map(|(_, v)| v).sum()
}

/// A child killed and reaped when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        // SAFETY: our own child's pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let t0 = Instant::now();
        while self.0.try_wait().ok().flatten().is_none() {
            if t0.elapsed() > Duration::from_secs(10) {
                let _ = self.0.kill();
                let _ = self.0.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `lazyvma serve ARGS -i 500ms` on a free port: the server, its port, the first scrape
/// (after the first pass) and its log file.
fn serve(args: &[&str]) -> (Killed, u16, BTreeMap<String, f64>, PathBuf) {
    let port = free_port();
    let log = std::env::temp_dir().join(format!("lazyvma-cgroup-serve-{}-{port}.log", std::process::id()));
    let f = std::fs::File::create(&log).unwrap();
    let serve = Killed(
        Command::new(BIN)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "-i", "500ms"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap(),
    );
    let t0 = Instant::now();
    loop {
        if let Ok(m) = scrape(port) {
            return (serve, port, m, log);
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "serve did not answer: {}", std::fs::read_to_string(&log).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn objects(m: &BTreeMap<String, f64>) -> [u64; 4] {
    [("anon_vma", "eager"), ("anon_vma_chain", "eager"), ("anon_vma", "lazy"), ("anon_vma_chain", "lazy")]
        .map(|(o, md)| m.get(&format!("lazyvma_objects{{object=\"{o}\",model=\"{md}\"}}")).copied().unwrap_or(-1.0) as u64)
}

#[test]
fn serve_pid_scope_follows_descendants() {
    if !root_or_skip("serve_pid_scope_follows_descendants") {
        return;
    }
    let w = HeldFork::start(3);
    let want = sum(&per_pid(&json_of(&lazyvma(&["snapshot", "-j", "-p", &format!("{},{}", w.parent, w.child)]))));
    let (serve, _, first, log) = serve(&["-p", &w.parent.to_string()]);
    assert_eq!(first.get(&format!("lazyvma_scope{{kind=\"pids\",pids=\"{}\"}}", w.parent)), Some(&1.0), "{first:?}");
    assert_eq!(first.get("lazyvma_scope_processes"), Some(&2.0), "the parent and its child");
    assert_eq!(objects(&first), want, "serve -p PARENT: parent and child objects, exactly");
    drop(serve);
    let _ = std::fs::remove_file(&log);
}

#[test]
fn serve_cgroup_exposes_the_workloads_objects() {
    if !root_or_skip("serve_cgroup_exposes_the_workloads_objects") {
        return;
    }
    let cg = TestCgroup::new("serve");
    let w = HeldFork::start(3);
    cg.add(w.parent);
    cg.add(w.child);
    let want = sum(&per_pid(&json_of(&lazyvma(&["snapshot", "-j", "-p", &format!("{},{}", w.parent, w.child)]))));
    let (serve, port, first, log) = serve(&["--cgroup", &cg.name]);
    let scope = format!("lazyvma_scope{{kind=\"cgroup\",cgroup=\"{}\"}}", cg.dir().display());
    assert_eq!(first.get(&scope), Some(&1.0), "{first:?}");
    assert_eq!(first.get("lazyvma_scope_processes"), Some(&2.0));
    assert_eq!(objects(&first), want, "serve --cgroup: the held fork's objects, exactly");

    // A workload outside the scope moves no counter.
    let out = Command::new(WORKLOAD).args(["fork", "-n", "3"]).output().unwrap();
    assert!(out.status.success());
    std::thread::sleep(Duration::from_millis(1500));
    let outside = scrape(port).unwrap();
    for f in
        ["lazyvma_anon_vma_allocations_total", "lazyvma_anon_vma_chain_allocations_total", "lazyvma_anon_vma_frees_total", "lazyvma_anon_vma_chain_frees_total"]
    {
        assert_eq!(family(&outside, f), 0.0, "{f}: the held fork is idle, the other workload is outside the scope");
    }
    // The held fork exits: every anon_vma and chain it held is freed, in the scope.
    drop(w);
    let t0 = Instant::now();
    loop {
        let m = scrape(port).unwrap();
        let freed = [family(&m, "lazyvma_anon_vma_frees_total") as u64, family(&m, "lazyvma_anon_vma_chain_frees_total") as u64];
        let lost = family(&m, "lazyvma_events_lost_total") - family(&outside, "lazyvma_events_lost_total");
        if freed == [want[0], want[1]] {
            assert_eq!(family(&m, "lazyvma_anon_vma_allocations_total"), 0.0);
            break;
        }
        assert!(freed[0] <= want[0] && freed[1] <= want[1], "more frees than the held fork held: {freed:?} vs {want:?}");
        if t0.elapsed() > Duration::from_secs(10) {
            panic!("the held fork's exit frees {freed:?}, want {:?} ({lost} events lost meanwhile)", [want[0], want[1]]);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(serve);
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    assert!(!log_text.contains("panicked"), "{log_text}");
}

#[test]
fn bad_cgroups_are_one_clear_line() {
    if !root_or_skip("bad_cgroups_are_one_clear_line") {
        return;
    }
    let empty = TestCgroup::new("empty");
    for (args, needle) in [
        (vec!["snapshot", "--cgroup", "no-such-cgroup-here"], "cgroup `no-such-cgroup-here` not found under any cgroup mount"),
        (vec!["trace", "--cgroup", "/nonexistent/cg"], "/nonexistent/cg is not a cgroup directory"),
        (vec!["trace", "--cgroup", &empty.name], "has no processes to trace"),
        (vec!["serve", "--cgroup", "no-such-cgroup-here"], "not found under any cgroup mount"),
    ] {
        let out = lazyvma(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle) && !err.contains("panicked"), "{args:?}: {err}");
    }
    assert!(Path::new(&empty.dir()).is_dir());
}
