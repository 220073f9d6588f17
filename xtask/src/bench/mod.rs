//! `cargo xtask bench overhead`: what tracing costs the traced machine. Each workload loop
//! runs bare, under `lazyvma trace` (system-wide), `trace -- CMD`, `serve` and a bpftrace
//! script counting the same call sites, in interleaved rounds (so a busy moment of a
//! shared machine hits every mode alike); medians, ratios to bare, lost records, per-program
//! cost (`--stats`), recording bytes per fork, snapshot time and RSS at ≥ 1 M VMAs.
//! Several builds (`--lazyvma`, `--baseline`) are compared in the same rounds. Not a test:
//! nothing is asserted on the numbers. docs/bench.md.
use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use std::path::PathBuf;

mod bpftrace;
mod guest;
mod modes;
pub mod proc;
mod snapshot;

use modes::{Mode, Outcome, Sample, Workload};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand)]
enum What {
    /// Tracing overhead: bare vs trace / trace -- CMD / serve / bpftrace, interleaved rounds.
    Overhead(Overhead),
}

#[derive(clap::Args)]
pub struct Overhead {
    /// Interleaved rounds (each mode once per round).
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// One round, small loops, a small snapshot population: proves the harness runs.
    #[arg(long)]
    quick: bool,
    /// Forks of the fork+exit loop.
    #[arg(long, default_value_t = 2000)]
    forks: usize,
    /// A lazyvma binary to measure (repeatable: compared side by side in the same rounds).
    /// Default: this tree's release build.
    #[arg(long = "lazyvma", value_name = "PATH")]
    lazyvma: Vec<PathBuf>,
    /// A lazyvma binary to measure before this tree's build (or the --lazyvma ones).
    #[arg(long, value_name = "PATH")]
    baseline: Option<PathBuf>,
    /// Workloads to run (fork, fault, pageout, migrate); default all the machine supports.
    #[arg(long = "workload", value_delimiter = ',', value_parser = ["fork", "fault", "pageout", "migrate"])]
    workloads: Vec<String>,
    /// Skip the snapshot-at-scale measurement.
    #[arg(long)]
    no_snapshot: bool,
    /// VMAs of the manyvmas parent (×17 processes) for the snapshot measurement.
    #[arg(long, default_value_t = 60_000)]
    snapshot_vmas: usize,
    /// Write the results here (default target/bench/overhead-UNIXTIME.json).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Also run the loops in a QEMU guest (`cargo xtask vm`), e.g. x86_64:6.12 (repeatable).
    #[arg(long = "guest", value_name = "ARCH:KERNEL")]
    guests: Vec<String>,
    /// Only the guests: no host rounds.
    #[arg(long)]
    guest_only: bool,
}

/// `cargo xtask test`'s run of the harness: `bench overhead --quick` (≈ 30 s here), results
/// in target/bench/quick.json. Proves every mode starts, runs and stops; no number asserted.
pub fn quick() -> Result<()> {
    overhead(Overhead {
        rounds: 1,
        quick: true,
        forks: 2000,
        lazyvma: vec![],
        baseline: None,
        workloads: vec![],
        no_snapshot: false,
        snapshot_vmas: 60_000,
        json: Some(crate::util::workspace_root().join("target/bench/quick.json")),
        guests: vec![],
        guest_only: false,
    })
}

pub fn run(a: Args) -> Result<()> {
    match a.what {
        What::Overhead(o) => overhead(o),
    }
}

pub fn median_f(v: &[f64]) -> Option<f64> {
    let mut s: Vec<f64> = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    (!s.is_empty()).then(|| if s.len() % 2 == 1 { s[s.len() / 2] } else { (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0 })
}

/// The builds compared: (label, binary).
fn builds(o: &Overhead) -> Result<Vec<(String, PathBuf)>> {
    let mut b = Vec::new();
    if let Some(p) = &o.baseline {
        b.push(("baseline".to_string(), p.clone()));
    }
    if o.lazyvma.is_empty() {
        b.push(("this tree".to_string(), crate::util::workspace_root().join("target/release/lazyvma")));
    }
    for p in &o.lazyvma {
        b.push((p.display().to_string(), p.clone()));
    }
    for (_, p) in &b {
        ensure!(p.is_file(), "{}: no such file", p.display());
    }
    Ok(b)
}

fn workloads(o: &Overhead) -> Vec<Workload> {
    let q = o.quick;
    let all = [
        Workload { name: "fork", scenario: "fork-loop", n: 64, loops: if q { 100 } else { o.forks } },
        Workload { name: "fault", scenario: "fault-loop", n: 64, loops: if q { 25 } else { 500 } },
        Workload { name: "pageout", scenario: "pageout-loop", n: 64, loops: if q { 10 } else { 200 } },
        Workload { name: "migrate", scenario: "migrate-loop", n: 64, loops: if q { 10 } else { 200 } },
    ];
    all.into_iter().filter(|w| o.workloads.is_empty() || o.workloads.iter().any(|n| n == w.name)).collect()
}

/// One (mode, build) row of a workload: its samples in round order, and failed runs.
struct Row {
    mode: Mode,
    build: String,
    samples: Vec<Sample>,
    errors: Vec<String>,
}

struct WlResult {
    w: Workload,
    unavailable: Option<String>,
    rows: Vec<Row>,
}

impl WlResult {
    fn row(&mut self, mode: Mode, build: &str) -> &mut Row {
        if let Some(i) = self.rows.iter().position(|r| r.mode == mode && r.build == build) {
            return &mut self.rows[i];
        }
        self.rows.push(Row { mode, build: build.into(), samples: vec![], errors: vec![] });
        self.rows.last_mut().unwrap()
    }
}

fn overhead(mut o: Overhead) -> Result<()> {
    ensure!(unsafe { libc::geteuid() } == 0, "bench overhead runs tracers: run it as root");
    if o.quick {
        o.rounds = 1;
    }
    ensure!(o.rounds >= 1, "--rounds must be at least 1");
    let guests = o.guests.iter().map(|g| guest::parse(g)).collect::<Result<Vec<_>>>()?;
    if o.lazyvma.is_empty() {
        crate::util::cargo(&["build", "--release", "--bin", "lazyvma", "--bin", "lazyvma-workload", "--bin", "lazyvma-floor"], &[])?;
    } else {
        crate::util::cargo(&["build", "--release", "--bin", "lazyvma-workload", "--bin", "lazyvma-floor"], &[])?;
    }
    let builds = builds(&o)?;
    let workload = crate::util::workspace_root().join("target/release/lazyvma-workload");
    let mut doc = json!({
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "kernel": crate::util::stdout(std::process::Command::new("uname").arg("-r")).trim(),
        "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "start_unix_s": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        "rounds": o.rounds,
        "builds": builds.iter().map(|(l, p)| json!({"label": l, "path": p})).collect::<Vec<_>>(),
        "note": "interleaved rounds on a shared machine: ratios to bare of the same rounds are what compares; absolute times vary with the others' load",
    });
    if !o.guest_only {
        host(&o, &builds, &workload, &mut doc)?;
    }
    if !guests.is_empty() {
        let mut g = Vec::new();
        for (arch, kernel) in guests {
            g.push(guest::run(arch, kernel, &o, &builds)?);
        }
        doc["guests"] = Value::Array(g);
    }
    let path = o
        .json
        .clone()
        .unwrap_or_else(|| crate::util::workspace_root().join(format!("target/bench/overhead-{}.json", doc["start_unix_s"].as_u64().unwrap_or(0))));
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    std::fs::write(&path, serde_json::to_string_pretty(&doc)? + "\n").with_context(|| format!("cannot write {}", path.display()))?;
    println!("bench: results in {}", path.display());
    Ok(())
}

fn host(o: &Overhead, builds: &[(String, PathBuf)], workload: &std::path::Path, doc: &mut Value) -> Result<()> {
    crate::util::ok(std::process::Command::new("sh").args(["-c", "mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing"]));
    let script = if crate::util::ok(std::process::Command::new("bpftrace").arg("--version")) {
        let k = std::fs::read_to_string("/proc/kallsyms").context("reading /proc/kallsyms")?;
        Some(bpftrace::script(&bpftrace::ranges(&k)?))
    } else {
        eprintln!("bench: bpftrace is not installed (`cargo xtask setup` installs it): no bpftrace rows");
        None
    };
    let floor = workload.with_file_name("lazyvma-floor");
    let h = modes::Host { workload: workload.to_path_buf(), floor, bpftrace_script: script.clone() };
    let mut order = vec![Mode::Bare, Mode::Floor, Mode::Trace, Mode::TraceCmd, Mode::Serve, Mode::ServeSnapshot];
    if script.is_some() {
        order.push(Mode::Bpftrace);
    }
    let mut res: Vec<WlResult> = workloads(o).into_iter().map(|w| WlResult { w, unavailable: None, rows: vec![] }).collect();
    for round in 1..=o.rounds {
        for r in res.iter_mut().filter(|r| r.unavailable.is_none()) {
            let w = r.w.clone();
            for &mode in &order {
                // Modes run once use the newest build (the last given): only ServeSnapshot runs one.
                let bs: Vec<&(String, PathBuf)> = if mode.per_build() { builds.iter().collect() } else { builds.iter().rev().take(1).collect() };
                for (label, bin) in bs {
                    let label = if mode.per_build() { label.as_str() } else { "" };
                    match modes::run(&h, mode, bin, &w) {
                        Ok(Outcome::Ran(mut s)) => {
                            s.round = round;
                            eprintln!(
                                "bench: round {round} {} {}{}: {:.3} s, lost {}",
                                w.name,
                                mode.name(),
                                tag(label, builds),
                                s.elapsed_ns as f64 / 1e9,
                                opt(s.lost)
                            );
                            r.row(mode, label).samples.push(s)
                        }
                        Ok(Outcome::Unavailable(why)) => {
                            eprintln!("bench: {} skipped: {why}", w.name);
                            r.unavailable = Some(why);
                            break;
                        }
                        Err(e) => {
                            eprintln!("bench: round {round} {} {}{} FAILED: {e:#}", w.name, mode.name(), tag(label, builds));
                            r.row(mode, label).errors.push(format!("{e:#}"))
                        }
                    }
                }
                if r.unavailable.is_some() {
                    break;
                }
            }
        }
    }
    let mut table = String::new();
    let mut wl_json = serde_json::Map::new();
    for r in &res {
        wl_json.insert(r.w.name.into(), summarise(r, builds, &mut table));
    }
    doc["workloads"] = Value::Object(wl_json);
    // --stats and -o: one extra run each per build (bpf_stats costs time itself).
    if let Some(fork) = res.iter().find(|r| r.w.name == "fork" && r.unavailable.is_none()) {
        let (mut stats, mut recs) = (serde_json::Map::new(), serde_json::Map::new());
        for (label, bin) in builds {
            match modes::trace_cmd(&h, bin, &fork.w, &["--stats"]) {
                Ok((s, j)) => {
                    stats.insert(label.clone(), json!({"elapsed_ns": s.elapsed_ns, "lost": s.lost, "bpf_stats": j["bpf_stats"]}));
                }
                Err(e) => eprintln!("bench: --stats run of {label} FAILED: {e:#}"),
            }
            let file = std::env::temp_dir().join(format!("lazyvma-bench-{}.lzr", std::process::id()));
            let out = modes::trace_cmd(&h, bin, &fork.w, &["-o", file.to_str().context("temp path")?]);
            let bytes = std::fs::metadata(&file).map(|m| m.len()).ok();
            let _ = std::fs::remove_file(&file);
            match out {
                Ok((s, _)) => {
                    recs.insert(
                        label.clone(),
                        json!({"forks": fork.w.loops, "bytes": bytes, "bytes_per_fork": bytes.map(|b| b / fork.w.loops.max(1) as u64), "lost": s.lost}),
                    );
                }
                Err(e) => eprintln!("bench: -o run of {label} FAILED: {e:#}"),
            }
        }
        table += &stats_text(&stats, &recs);
        doc["bpf_stats"] = Value::Object(stats);
        doc["recording"] = Value::Object(recs);
    }
    if !o.no_snapshot {
        let vmas = if o.quick { 2000 } else { o.snapshot_vmas };
        match snapshot::measure(builds, workload, vmas, if o.quick { 1 } else { 3 }) {
            Ok(s) => {
                table += &snapshot_text(&s);
                doc["snapshot"] = s;
            }
            Err(e) => {
                eprintln!("bench: snapshot at scale FAILED: {e:#}");
                doc["snapshot"] = json!({"error": format!("{e:#}")});
            }
        }
    }
    if let Some(s) = &script {
        doc["bpftrace_script"] = json!(s);
    }
    print!("{table}");
    Ok(())
}

fn tag(label: &str, builds: &[(String, PathBuf)]) -> String {
    if label.is_empty() || builds.len() == 1 {
        String::new()
    } else {
        format!(" [{label}]")
    }
}

fn opt(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

fn summarise(r: &WlResult, builds: &[(String, PathBuf)], table: &mut String) -> Value {
    use std::fmt::Write;
    let w = &r.w;
    if let Some(why) = &r.unavailable {
        let _ = writeln!(table, "\n{} ({}): not run: {why}", w.name, w.scenario);
        return json!({"scenario": w.scenario, "n": w.n, "loops": w.loops, "unavailable": why});
    }
    let med = |row: &Row| median_f(&row.samples.iter().map(|s| s.elapsed_ns as f64).collect::<Vec<_>>());
    let bare_row = r.rows.iter().find(|x| x.mode == Mode::Bare);
    let bare = bare_row.and_then(med);
    // Each run over its own round's bare run: robust to the load drifting between rounds.
    let paired = |row: &Row| {
        let ratios: Vec<f64> =
            row.samples.iter().filter_map(|s| Some(s.elapsed_ns as f64 / bare_row?.samples.iter().find(|b| b.round == s.round)?.elapsed_ns as f64)).collect();
        median_f(&ratios)
    };
    let _ = writeln!(table, "\n{} ({} -n {} --loops {}): median of the loop's elapsed time", w.name, w.scenario, w.n, w.loops);
    let _ = writeln!(
        table,
        "  {:<14} {:<22} {:>5} {:>10} {:>8} {:>9}  lost records (runs with loss / runs, max)",
        "mode", "build", "runs", "median s", "× bare", "per-round"
    );
    let mut rows = Vec::new();
    for row in &r.rows {
        let m = med(row);
        let ratio = m.zip(bare).map(|(m, b)| m / b);
        let lost: Vec<Option<u64>> = row.samples.iter().map(|s| s.lost).collect();
        let lossy = lost.iter().filter(|l| l.unwrap_or(0) > 0).count();
        let max = lost.iter().flatten().max().copied();
        let lost_txt = if row.mode == Mode::Bare {
            String::new()
        } else if lost.iter().all(|l| l.is_none()) {
            "n/a".into()
        } else {
            format!("{lossy}/{}, max {}", lost.len(), opt(max))
        };
        let build = if builds.len() == 1 && row.mode.per_build() { "" } else { &row.build };
        let fails = if row.errors.is_empty() { String::new() } else { format!("  ({} FAILED)", row.errors.len()) };
        let _ = writeln!(
            table,
            "  {:<14} {:<22} {:>5} {:>10} {:>8} {:>9}  {lost_txt}{fails}",
            row.mode.name(),
            build,
            row.samples.len(),
            m.map_or("-".into(), |m| format!("{:.3}", m / 1e9)),
            ratio.map_or("-".into(), |r| format!("{r:.2}×")),
            paired(row).map_or("-".into(), |r| format!("{r:.2}×"))
        );
        rows.push(json!({
            "mode": row.mode.name(), "build": row.build, "elapsed_ns": row.samples.iter().map(|s| s.elapsed_ns).collect::<Vec<_>>(),
            "median_ns": m, "ratio_to_bare": ratio, "median_per_round_ratio": paired(row), "lost": lost,
            "rounds": row.samples.iter().map(|s| s.round).collect::<Vec<_>>(), "errors": row.errors,
            "bpftrace_counts": row.samples.iter().filter_map(|s| s.counted).map(|(a, f)| json!({"alloc": a, "free": f})).collect::<Vec<_>>(),
        }));
    }
    json!({"scenario": w.scenario, "n": w.n, "loops": w.loops, "rows": rows})
}

fn stats_text(stats: &serde_json::Map<String, Value>, recs: &serde_json::Map<String, Value>) -> String {
    use std::fmt::Write;
    let mut t = String::from("\nfork loop under `trace --stats -- CMD` (one extra run): mean ns per BPF program run (runs)\n");
    for (label, s) in stats {
        let mut progs: Vec<(&String, &Value)> = s["bpf_stats"].as_object().map(|m| m.iter().collect()).unwrap_or_default();
        progs.sort_by_key(|(_, v)| std::cmp::Reverse(v["runs"].as_u64().unwrap_or(0)));
        let list: Vec<String> = progs
            .iter()
            .map(|(p, v)| format!("{p} {} ns ({})", v["mean_ns"].as_u64().map_or("-".into(), |n| n.to_string()), opt(v["runs"].as_u64())))
            .collect();
        let _ = writeln!(t, "  {label}: lost {}; {}", opt(s["lost"].as_u64()), list.join(", "));
    }
    let _ = writeln!(t, "recording of the fork loop (`trace -o FILE -- CMD`):");
    for (label, r) in recs {
        let _ = writeln!(
            t,
            "  {label}: {} bytes, {} bytes per fork, lost {}",
            opt(r["bytes"].as_u64()),
            opt(r["bytes_per_fork"].as_u64()),
            opt(r["lost"].as_u64())
        );
    }
    t
}

fn snapshot_text(s: &Value) -> String {
    use std::fmt::Write;
    let mut t =
        format!("\nsnapshot -j of a machine with {} VMAs ({}), median of {} runs:\n", s["machine_vmas"], s["workload"].as_str().unwrap_or(""), s["rounds"]);
    for b in s["builds"].as_array().into_iter().flatten() {
        let _ = writeln!(
            t,
            "  {}: {:.2} s wall, {:.0} MB peak RSS",
            b["build"].as_str().unwrap_or(""),
            b["median_wall_s"].as_f64().unwrap_or(f64::NAN),
            b["median_peak_rss_kib"].as_f64().unwrap_or(f64::NAN) / 1024.0
        );
    }
    match s["seeding"].as_array() {
        Some(rows) => {
            let _ = writeln!(
                t,
                "trace -p PARENT -d 1 -j of the same 17 processes (the seeding pass, then the model holding them), median of {} runs:",
                s["rounds"]
            );
            for b in rows {
                let first = &b["runs"][0];
                let _ = writeln!(
                    t,
                    "  {}: {:.2} s wall, {:.0} MB peak RSS; seeded {} (not {}), pass {:.2} s, lost {}",
                    b["build"].as_str().unwrap_or(""),
                    b["median_wall_s"].as_f64().unwrap_or(f64::NAN),
                    b["median_peak_rss_kib"].as_f64().unwrap_or(f64::NAN) / 1024.0,
                    first["seeded"],
                    first["not_seeded"],
                    first["seed_pass_us"].as_f64().unwrap_or(f64::NAN) / 1e6,
                    first["lost"]
                );
            }
        }
        None => {
            let _ = writeln!(t, "trace -p seeding: not measured ({})", s["seeding"]["error"]);
        }
    }
    t
}
