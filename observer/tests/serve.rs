//! `lazyvma serve` against a real Prometheus (Debian's, from `cargo xtask setup`): the
//! exposition lints clean with promtool, a known workload moves the counters by at least
//! its exact eager counts, and what Prometheus stored equals serve's own numbers for the
//! same snapshot generation. Both servers are killed however the test ends.
use serde_json::Value;
use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

mod common;
use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_lazyvma");
const WORKLOAD: &str = env!("CARGO_BIN_EXE_lazyvma-workload");
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A child killed and reaped when dropped (test failure included).
struct Running {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Running {
    fn spawn(name: &'static str, cmd: &mut Command, log: PathBuf) -> Running {
        let f = std::fs::File::create(&log).unwrap();
        let child = cmd.stdin(Stdio::null()).stdout(f.try_clone().unwrap()).stderr(f).spawn().unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Running { name, child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn assert_alive(&mut self) {
        if let Some(st) = self.child.try_wait().unwrap() {
            panic!("{} exited early ({st}):\n{}", self.name, self.log());
        }
    }

    /// SIGTERM, then the exit status (SIGKILL after 10 s).
    fn term(&mut self) -> std::process::ExitStatus {
        // SAFETY: our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            if t0.elapsed() > Duration::from_secs(10) {
                let _ = self.child.kill();
                panic!("{} ignored SIGTERM for 10 s:\n{}", self.name, self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// HTTP/1.0 GET (no chunking, the server closes): (content-type, body).
fn get(port: u16, path: &str, accept: &str) -> std::io::Result<(String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: {accept}\r\n\r\n")?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    assert!(head.starts_with("HTTP/1.") && head.contains(" 200 "), "GET {path}: {head}");
    let ctype = head.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("content-type:").map(|v| v.trim().to_string())).unwrap_or_default();
    Ok((ctype, body.to_string()))
}

/// Sample lines of an exposition: series (name and labels as written) → value.
fn samples(body: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, v) = l.rsplit_once(' ').unwrap_or_else(|| panic!("bad sample line: {l}"));
            (series.to_string(), v.parse().unwrap_or_else(|_| panic!("bad value in: {l}")))
        })
        .collect()
}

fn text_samples(port: u16) -> BTreeMap<String, f64> {
    samples(&get(port, "/metrics", "text/plain;version=0.0.4").expect("fetching /metrics").1)
}

fn encode_query(q: &str) -> String {
    q.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

/// Prometheus instant query → result vector.
fn query(port: u16, q: &str) -> Vec<Value> {
    let Ok((_, body)) = get(port, &format!("/api/v1/query?query={}", encode_query(q)), "application/json") else { return vec![] };
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("query {q}: {e}: {body}"));
    assert_eq!(v["status"], "success", "query {q}: {body}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

fn value(r: &Value) -> f64 {
    r["value"][1].as_str().and_then(|s| s.parse().ok()).expect("sample value")
}

/// `fork -n 3`, spec §5 B per test VMA: touch +1 AV +1 AVC (prepare); fork +1 AV +1 AVC
/// (anon_vma_fork) +1 AVC (anon_vma_clone of the parent's chain); child exit −1 AV −2 AVC,
/// parent exit −1 AV −1 AVC. Whole system, so at least these.
const FORK_3: &[(&str, f64)] = &[
    ("lazyvma_anon_vma_allocations_total{function=\"__anon_vma_prepare\",reason=\"prepare\"}", 3.0),
    ("lazyvma_anon_vma_allocations_total{function=\"anon_vma_fork\",reason=\"fork\"}", 3.0),
    ("lazyvma_anon_vma_chain_allocations_total{function=\"__anon_vma_prepare\",reason=\"prepare\"}", 3.0),
    ("lazyvma_anon_vma_chain_allocations_total{function=\"anon_vma_fork\",reason=\"fork\"}", 3.0),
    ("lazyvma_anon_vma_chain_allocations_total{function=\"anon_vma_clone\",reason=\"fork\"}", 3.0),
    ("lazyvma_anon_vma_frees_total{function=\"__put_anon_vma\",reason=\"exit\"}", 6.0),
    ("lazyvma_anon_vma_chain_frees_total{function=\"unlink_anon_vmas\",reason=\"exit\"}", 9.0),
];

fn short(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> Vec<String> {
    FORK_3
        .iter()
        .filter_map(|(k, want)| {
            let d = after.get(*k).copied().unwrap_or(0.0) - before.get(*k).copied().unwrap_or(0.0);
            (d < *want).then(|| format!("{k}: moved by {d}, want >= {want}"))
        })
        .collect()
}

fn check_counters(port: u16) {
    let before = text_samples(port);
    let out = Command::new(WORKLOAD).args(["fork", "-n", "3"]).output().expect("running lazyvma-workload");
    assert!(out.status.success(), "lazyvma-workload fork -n 3: {}", String::from_utf8_lossy(&out.stderr));
    // The ring buffer is polled every 100 ms; give a loaded machine some slack.
    let t0 = Instant::now();
    loop {
        let after = text_samples(port);
        let missing = short(&before, &after);
        if missing.is_empty() {
            return;
        }
        if t0.elapsed() > Duration::from_secs(10) {
            let lost = after.get("lazyvma_events_lost_total").copied().unwrap_or(0.0) - before.get("lazyvma_events_lost_total").copied().unwrap_or(0.0);
            panic!("counters did not move by the workload's counts ({lost} events lost):\n{}", missing.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Each series with the least the held fork (3 written VMAs, one child) alone gives it:
/// eager parent 3/3 + child 3/6, lazy parent 3/3 + child 0/3. A CI host may run nothing
/// else that ever forked, so the test brings its own sharing.
const OBJECTS: [(&str, &str, f64); 4] =
    [("anon_vma", "eager", 6.0), ("anon_vma", "lazy", 3.0), ("anon_vma_chain", "eager", 9.0), ("anon_vma_chain", "lazy", 6.0)];

fn objects_key(object: &str, model: &str) -> String {
    format!("lazyvma_objects{{object=\"{object}\",model=\"{model}\"}}")
}

fn start_prometheus(dir: &Path, serve_port: u16, port: u16) -> Running {
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: lazyvma\n    scrape_interval: 1s\n    scrape_timeout: 1s\n    static_configs:\n      - targets: ['127.0.0.1:{serve_port}']\n"
        ),
    )
    .unwrap();
    Running::spawn(
        "prometheus",
        Command::new("prometheus").args([
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ]),
        dir.join("prometheus.log"),
    )
}

/// Prometheus's latest lazyvma_objects and generation, from one scrape, compared with
/// serve's own exposition of that generation (the test keeps serve's history meanwhile).
fn compare_with_prometheus(prom: &mut Running, serve: &mut Running, serve_port: u16, port: u16) {
    let t0 = Instant::now();
    while query(port, "up{job=\"lazyvma\"}").first().map(value) != Some(1.0) {
        prom.assert_alive();
        serve.assert_alive();
        assert!(t0.elapsed() < Duration::from_secs(30), "up{{job=\"lazyvma\"}} not 1 within 30 s:\n{}", prom.log());
        std::thread::sleep(Duration::from_millis(250));
    }
    let mut history: BTreeMap<i64, BTreeMap<String, f64>> = BTreeMap::new();
    let t0 = Instant::now();
    loop {
        let own = text_samples(serve_port);
        history.insert(own["lazyvma_snapshot_generation"] as i64, own);
        let r = query(port, "{__name__=~\"lazyvma_objects|lazyvma_snapshot_generation\",job=\"lazyvma\"}");
        let gen = r.iter().find(|s| s["metric"]["__name__"] == "lazyvma_snapshot_generation");
        if let (Some(gen), 5) = (gen, r.len()) {
            let stamps: Vec<&Value> = r.iter().map(|s| &s["value"][0]).collect();
            if stamps.iter().all(|t| *t == stamps[0]) {
                if let Some(own) = history.get(&(value(gen) as i64)) {
                    for (object, model, least) in OBJECTS {
                        let theirs = r.iter().find(|s| s["metric"]["object"] == object && s["metric"]["model"] == model).map(value);
                        let key = objects_key(object, model);
                        assert_eq!(theirs, own.get(&key).copied(), "{key} in Prometheus vs serve, generation {}", value(gen));
                        assert!(theirs.unwrap() >= least, "{key} is {theirs:?}, below the held fork's own {least}");
                    }
                    eprintln!("serve: generation {} matched in Prometheus: {:?}", value(gen), OBJECTS.map(|(o, m, _)| own[&objects_key(o, m)]));
                    break;
                }
            }
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "no Prometheus sample of a generation serve was seen exposing within 30 s: {r:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
    // Prometheus negotiated OpenMetrics: the test fetched it once, every later fetch is text.
    let om = query(port, "lazyvma_scrapes_total{format=\"openmetrics\",job=\"lazyvma\"}");
    assert!(om.first().map(value).unwrap_or(0.0) >= 2.0, "Prometheus did not scrape OpenMetrics: {om:?}");
}

/// The first answer of serve's /metrics: (content type, body), within 60 s.
fn first_scrape(serve: &mut Running, port: u16) -> (String, String) {
    let t0 = Instant::now();
    loop {
        if let Ok(r) = get(port, "/metrics", "*/*") {
            return r;
        }
        serve.assert_alive();
        assert!(t0.elapsed() < Duration::from_secs(60), "serve did not answer within 60 s:\n{}", serve.log());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn serve_with_prometheus() {
    if !root_or_skip("serve_with_prometheus") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("lazyvma-serve-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (serve_port, prom_port) = (free_port(), free_port());
    let listen = format!("127.0.0.1:{serve_port}");
    let _held = HeldFork::start(3);
    let mut serve = Running::spawn("lazyvma serve", Command::new(BIN).args(["serve", "--listen", &listen, "-i", "1s"]), dir.join("serve.log"));

    // BPF load and the first snapshot pass come before the port answers.
    let (ctype, om) = first_scrape(&mut serve, serve_port);
    assert_eq!(ctype, OPENMETRICS);
    assert!(om.ends_with("# EOF\n"), "an OpenMetrics exposition ends with # EOF");
    for family in ["lazyvma_build_info", "lazyvma_objects", "lazyvma_object_bytes", "lazyvma_snapshot_duration_seconds_bucket", "lazyvma_events_lost_total"] {
        assert!(om.contains(&format!("\n{family}")), "{family} missing from:\n{om}");
    }
    assert!(om.contains("# UNIT lazyvma_object_bytes bytes"), "{om}");
    // One size source: serve prices an object at its slab slot, as snapshot and trace do
    // (tests/report.rs), from one pass's gauges.
    let s = samples(&om);
    for object in ["anon_vma", "anon_vma_chain"] {
        let slot: f64 = std::fs::read_to_string(format!("/sys/kernel/slab/{object}/slab_size")).unwrap().trim().parse().unwrap();
        let bytes = format!("lazyvma_object_bytes{{object=\"{object}\",model=\"eager\"}}");
        assert_eq!(s.get(&bytes).copied(), s.get(&objects_key(object, "eager")).map(|n| n * slot), "{bytes} in:\n{om}");
    }
    // This kernel has iter/task_vma: every process is walked whole (5.10's walk limit is the matrix's).
    for gap in ["lazyvma_snapshot_incomplete_processes", "lazyvma_snapshot_unseen_vmas"] {
        assert!(om.lines().any(|l| l == format!("{gap} 0")), "{gap} is not 0:\n{om}");
        assert!(om.contains(&format!("# HELP {gap} ")), "{gap} has no HELP");
    }

    let (ttype, text) = get(serve_port, "/metrics", "text/plain;version=0.0.4").unwrap();
    assert_eq!(ttype, "text/plain; version=0.0.4; charset=utf-8");
    let lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(
            std::fs::File::open({
                let p = dir.join("metrics.txt");
                std::fs::write(&p, &text).unwrap();
                p
            })
            .unwrap(),
        )
        .output()
        .expect("running promtool (cargo xtask setup installs Debian's prometheus)");
    assert!(lint.status.success(), "promtool check metrics: {}{}", String::from_utf8_lossy(&lint.stdout), String::from_utf8_lossy(&lint.stderr));
    // The text form carries every series of the OpenMetrics one (OpenMetrics-only lines are
    // comments); series are never removed, new ones may have appeared in between.
    let text_series = samples(&text);
    let gone: Vec<String> = samples(&om).into_keys().filter(|k| !text_series.contains_key(k)).collect();
    assert!(gone.is_empty(), "series missing from the text form: {gone:?}");

    check_counters(serve_port);

    let mut prom = start_prometheus(&dir, serve_port, prom_port);
    compare_with_prometheus(&mut prom, &mut serve, serve_port, prom_port);
    let st = prom.term();
    assert!(st.success(), "prometheus exited with {st} on SIGTERM:\n{}", prom.log());
    let st = serve.term();
    let log = serve.log();
    assert!(st.success(), "serve exited with {st} on SIGTERM:\n{log}");
    assert!(!log.contains("panicked"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Run serve with these arguments, expecting it to refuse: (exit code, stderr).
fn refused(args: &[&str], uid: Option<u32>) -> (i32, String) {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve").args(args).stdin(Stdio::null());
    if let Some(uid) = uid {
        use std::os::unix::process::CommandExt;
        cmd.uid(uid).gid(uid);
    }
    let out = cmd.output().expect("running lazyvma");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn serve_refuses_bad_input() {
    if !root_or_skip("serve_refuses_bad_input") {
        return;
    }
    let (code, err) = refused(&["--listen", "127.0.0.1:1"], Some(65534));
    assert_eq!((code, err.trim()), (1, "lazyvma: `lazyvma serve` needs root (BPF programs): run it with sudo"));
    let (code, err) = refused(&["--listen", "localhost"], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--listen"), "{err}");
    let (code, err) = refused(&["-i", "0s"], None);
    assert_eq!(code, 2, "{err}");
    // A busy port fails at once, before any BPF is loaded.
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let (code, err) = refused(&["--listen", &addr], None);
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with(&format!("lazyvma: --listen {addr}: cannot listen there: ")), "{err}");
}

/// `serve --snapshot-only -p PARENT`: no program is left in the kernel between passes (the
/// process holds no BPF program or link), no counter is kept (`trace="off"`), and the
/// gauges of the held fork (the parent and its child, a descendant found at start) equal
/// `snapshot -p` of the same two processes, object for object: both read the same
/// unchanging VMAs.
#[test]
fn serve_snapshot_only_holds_nothing_in_the_kernel() {
    if !root_or_skip("serve_snapshot_only_holds_nothing_in_the_kernel") {
        return;
    }
    let dir = Dir::new("serve-snapshot-only");
    let held = HeldFork::start(3);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let parent = held.parent.to_string();
    // One pass (before the port answers) and none after within the test: -i 1h.
    let mut serve = Running::spawn(
        "lazyvma serve --snapshot-only",
        Command::new(BIN).args(["serve", "--snapshot-only", "-p", &parent, "--listen", &listen, "-i", "1h"]),
        dir.path("serve.log"),
    );
    let (_, om) = first_scrape(&mut serve, port);
    let s = samples(&om);
    assert!(om.lines().any(|l| l.starts_with("lazyvma_build_info{") && l.contains("trace=\"off\"")), "{om}");
    assert!(!om.contains("backend_"), "no hook is attached, none is named:\n{om}");

    // Every fd of the serve process: no BPF program, no link (a tp_btf attach is a link).
    let fds = std::fs::read_dir(format!("/proc/{}/fdinfo", serve.child.id())).unwrap();
    let bpf: Vec<String> = fds
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .filter(|info| info.lines().any(|l| l.starts_with("prog_type:") || l.starts_with("link_type:")))
        .collect();
    assert!(bpf.is_empty(), "serve --snapshot-only holds BPF programs or links between passes:\n{}", bpf.join("\n"));

    let out = Command::new(BIN).args(["snapshot", "-j", "-p", &format!("{},{}", held.parent, held.child)]).output().unwrap();
    assert!(out.status.success(), "snapshot: {}", String::from_utf8_lossy(&out.stderr));
    let snap: Value = serde_json::from_slice(&out.stdout).unwrap();
    let procs = snap["processes"].as_array().unwrap();
    assert_eq!(procs.len(), 2, "{procs:?}");
    for (object, model, least) in OBJECTS {
        let want: f64 = procs.iter().map(|p| p[model][object].as_f64().unwrap()).sum();
        assert!(want >= least, "snapshot: {object} {model} {want} < the held fork's {least}");
        assert_eq!(s.get(&objects_key(object, model)).copied(), Some(want), "{object} {model} in:\n{om}");
    }
    let st = serve.term();
    assert!(st.success(), "serve exited with {st} on SIGTERM:\n{}", serve.log());
}
