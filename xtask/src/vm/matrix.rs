//! `cargo xtask vm-matrix`: the user's commands in every guest (amd64/arm64 × 5.10/6.1/6.12).
//! A script in the guest runs each command and prints marked console lines (status, first
//! stderr lines, JSON); the host judges each command against exact numbers, keeps going
//! after a failure, writes `target/vm-matrix/results.json` (and each command's JSON beside it) and fails at the end. `--readme`
//! rewrites README.md's kernel table from that file.
use super::{assets, qemu, Series};
use crate::util;
use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

pub(crate) mod readme;

/// The commands in the order the guest runs them (and the README's columns).
pub const COMMANDS: [&str; 8] = ["doctor", "workload", "snapshot", "trace", "serve", "serve-snapshot", "report", "many-vmas"];
pub const RESULTS: &str = "target/vm-matrix/results.json";

/// Written anon VMAs of the held `touch` process `many-vmas` judges: far more than 5.10's
/// iter/task walk fits in one pass (768 steps, 32 KiB of records: ~250), so its passes
/// resume it (observer-ebpf/src/iter_task.rs).
const MANY_VMAS: u32 = 2000;

/// Scenarios every guest supports (two NUMA nodes make `migrate` deterministic, the swap disk `pageout`).
const WORKLOADS: &str = "touch fork fork-chain fork-exec reuse split mremap munmap-hole thp migrate pageout";

#[derive(clap::Args, Default)]
pub struct Args {
    #[command(flatten)]
    cells: super::Cells,
    /// Rewrite README.md's kernel table from target/vm-matrix/results.json after the run.
    #[arg(long)]
    readme: bool,
    /// Boot nothing: only rewrite the README's table from the results file (with --readme).
    #[arg(long, requires = "readme")]
    no_boot: bool,
}

fn script() -> String {
    format!(
        r#"up() {{ cut -d' ' -f1 /proc/uptime; }}
begin() {{ t0=$(up); }}
res() {{ echo "LZM-RC $1 $2 $t0 $(up)"; }}
errs() {{ head -3 "$2" | cut -c1-300 | sed "s/^/LZM-ERR $1 /"; }}
json() {{ [ -s "$2" ] && echo "LZM-JSON $1 $(sed -n '/^{{/,$p' "$2" | tr -d '\n')"; }}
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up

begin; lazyvma doctor -j >/tmp/d 2>/tmp/e; rc=$?; errs doctor /tmp/e; json doctor /tmp/d; res doctor $rc

begin; rc=0
for s in {WORKLOADS}; do
  lazyvma-workload $s -n 3 >/dev/null 2>/tmp/e || {{ rc=$?; echo "LZM-ERR workload $s: $(head -1 /tmp/e | cut -c1-300)"; break; }}
done
res workload $rc

# fork -n 0 (the baseline) and fork -n 3 held: both processes of each alive until EOF.
mkfifo /tmp/h0 /tmp/h3
lazyvma-workload fork -n 0 --hold </tmp/h0 >/tmp/w0 2>&1 &
exec 7>/tmp/h0
lazyvma-workload fork -n 3 --hold </tmp/h3 >/tmp/w3 2>&1 &
exec 8>/tmp/h3
# many-vmas: one process of {MANY_VMAS} written VMAs, alive through snapshot, trace and serve.
mkfifo /tmp/hb
lazyvma-workload touch -n {MANY_VMAS} --hold </tmp/hb >/tmp/wb 2>&1 &
exec 9>/tmp/hb
i=0; while [ "$(cat /tmp/w0 /tmp/w3 /tmp/wb | grep -c '^ready')" -lt 5 ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
pid() {{ sed -n "s/^ready role=$2 pid=\([0-9]*\).*/\1/p" $1; }}
held="$(pid /tmp/w0 parent),$(pid /tmp/w0 child),$(pid /tmp/w3 parent),$(pid /tmp/w3 child)"
echo "LZM-HELD $held"
big=$(pid /tmp/wb main)
# Its VMAs as /proc lists them, less the gate area ([vsyscall]: in no mm's VMA tree).
echo "LZM-BIG ${{big:-none}} $(grep -vc '\[vsyscall\]' /proc/$big/maps)"

begin; lazyvma snapshot -j -p $held${{big:+,$big}} >/tmp/snap.json 2>/tmp/e; rc=$?
errs snapshot /tmp/e; json snapshot /tmp/snap.json; res snapshot $rc

begin; lazyvma trace -p 1 -d 2s -j >/tmp/trace.json 2>/tmp/e; rc=$?
errs trace /tmp/e; json trace /tmp/trace.json; res trace $rc

exec 7>&- 8>&-

# scrape PORT FILE: wait (<= 120 s) for serve ($sp) to answer on PORT; got=1 if it did.
scrape() {{
  got=0; i=0
  while [ $i -lt 240 ]; do
    wget -q -O $2 http://127.0.0.1:$1/metrics 2>/dev/null && {{ got=1; break; }}
    kill -0 $sp 2>/dev/null || break
    sleep 0.5; i=$((i+1))
  done
}}

begin; lazyvma serve -i 2s >/dev/null 2>/tmp/e & sp=$!
scrape 9464 /tmp/metrics
kill -TERM $sp 2>/dev/null; wait $sp; rc=$?
echo "LZM-SCRAPE serve $got"
[ $got = 1 ] && grep -E '^(lazyvma_objects|lazyvma_events_lost|lazyvma_snapshot_incomplete_processes|lazyvma_snapshot_unseen_vmas|# EOF)' /tmp/metrics | head -20 | sed 's/^/LZM-METRIC serve /'
grep -v '^lazyvma: serving' /tmp/e >/tmp/e2; errs serve /tmp/e2; res serve $rc

# --snapshot-only of the held fork -n 3 (its child a descendant): one pass (-i 1h) before
# the port answers, then no BPF program or link among its fds.
begin; lazyvma serve --snapshot-only -p $(pid /tmp/w3 parent) --listen 127.0.0.1:9465 -i 1h >/dev/null 2>/tmp/e & sp=$!
scrape 9465 /tmp/metrics2
bpf=$(cat /proc/$sp/fdinfo/* 2>/dev/null | grep -cE '^(prog_type|link_type):')
kill -TERM $sp 2>/dev/null; wait $sp; rc=$?
echo "LZM-SCRAPE serve-snapshot $got $bpf"
[ $got = 1 ] && grep -E '^(lazyvma_build_info|lazyvma_objects|# EOF)' /tmp/metrics2 | head -20 | sed 's/^/LZM-METRIC serve-snapshot /'
grep -v '^lazyvma: serving' /tmp/e >/tmp/e2; errs serve-snapshot /tmp/e2; res serve-snapshot $rc
exec 9>&-; wait

begin; rc=0
for f in /tmp/snap.json /tmp/trace.json; do
  [ -s $f ] || continue
  lazyvma report $f >/tmp/rep 2>/tmp/e; r=$?
  echo "LZM-REPORT report $f $r $(wc -l </tmp/rep)"
  errs report /tmp/e; [ $r = 0 ] || rc=$r
done
res report $rc
echo LZM-END
"#
    )
}

/// What the guest printed, per command.
#[derive(Default)]
struct Guest {
    status: BTreeMap<String, i32>,
    secs: BTreeMap<String, f64>,
    errors: BTreeMap<String, Vec<String>>,
    json: BTreeMap<String, Result<Value, String>>,
    /// The lines of a command's own tag (LZM-HELD, LZM-BIG, LZM-REPORT; LZM-SCRAPE and
    /// LZM-METRIC by command: "LZM-SCRAPE serve").
    lines: BTreeMap<String, Vec<String>>,
    ended: bool,
}

impl Guest {
    fn take(&mut self, line: &str) -> bool {
        let Some(at) = line.find("LZM-") else { return false };
        let line = &line[at..];
        let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
        let (cmd, tail) = rest.split_once(' ').unwrap_or((rest, ""));
        match tag {
            "LZM-RC" => {
                let w: Vec<&str> = tail.split_whitespace().collect();
                self.status.insert(cmd.into(), w.first().and_then(|s| s.parse().ok()).unwrap_or(-1));
                if let (Some(a), Some(b)) = (w.get(1).and_then(|s| s.parse::<f64>().ok()), w.get(2).and_then(|s| s.parse::<f64>().ok())) {
                    self.secs.insert(cmd.into(), b - a);
                }
            }
            "LZM-ERR" => self.errors.entry(cmd.into()).or_default().push(tail.into()),
            "LZM-JSON" => {
                self.json.insert(cmd.into(), serde_json::from_str(tail).map_err(|e| format!("{e}: {tail:.200}")));
            }
            "LZM-HELD" => self.lines.entry("held".into()).or_default().push(cmd.into()),
            "LZM-BIG" => self.lines.entry("big".into()).or_default().push(rest.into()),
            "LZM-SCRAPE" | "LZM-METRIC" => self.lines.entry(format!("{tag} {cmd}")).or_default().push(tail.into()),
            "LZM-REPORT" => self.lines.entry(tag.into()).or_default().push(tail.into()),
            "LZM-END" => self.ended = true,
            _ => return false,
        }
        true
    }

    /// The command ran and exited 0; else why not, with its first stderr line.
    fn exited_ok(&self, cmd: &str) -> Result<()> {
        let st = self.status.get(cmd).with_context(|| "did not run (the guest script ended before it)")?;
        let err = self.errors.get(cmd).and_then(|e| e.first()).map(String::as_str).unwrap_or("");
        ensure!(*st == 0, "exit status {st}: {err}");
        Ok(())
    }

    fn json(&self, cmd: &str) -> Result<&Value> {
        match self.json.get(cmd) {
            Some(Ok(v)) => Ok(v),
            Some(Err(e)) => anyhow::bail!("its output is not JSON: {e}"),
            None => anyhow::bail!("no JSON on stdout"),
        }
    }

    /// The held workloads' pids: fork -n 0 parent, child, fork -n 3 parent, child.
    fn held(&self) -> Result<[u32; 4]> {
        let line = self.lines.get("held").and_then(|l| l.first()).context("no held workload")?;
        let pids: Vec<u32> = line.split(',').filter_map(|p| p.parse().ok()).collect();
        pids.try_into().map_err(|_| anyhow::anyhow!("the held workloads did not all get ready: `{line}`"))
    }

    /// The held `touch -n MANY_VMAS` process and its VMAs as /proc/PID/maps lists them.
    fn big_maps(&self) -> Result<(u32, u64)> {
        let line = self.lines.get("big").and_then(|l| l.first()).context("no many-VMA process")?;
        let mut w = line.split_whitespace().map(str::parse::<u64>);
        match (w.next(), w.next()) {
            (Some(Ok(pid)), Some(Ok(maps))) if pid <= u64::from(u32::MAX) => Ok((pid as u32, maps)),
            _ => anyhow::bail!("the many-VMA process did not get ready: `{line}`"),
        }
    }

    /// A gauge of `cmd`'s scrape, e.g. `lazyvma_snapshot_incomplete_processes`.
    fn metric(&self, cmd: &str, name: &str) -> Option<f64> {
        let m = self.lines.get(&format!("LZM-METRIC {cmd}"))?;
        m.iter().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }
}

/// `snapshot -j` of the held workloads: spec §1.2 + §1.4 over the -n 0 baseline, parent
/// +3 AV / +3 AVC and child +3 / +6 eager; lazy (default knobs) parent 3 / 3, child 0 / 3.
fn check_snapshot(g: &Guest) -> Result<()> {
    g.exited_ok("snapshot")?;
    let v = g.json("snapshot")?;
    let [p0, c0, p3, c3] = g.held()?;
    let find = |pid: u32| -> Result<&Value> {
        v["processes"].as_array().into_iter().flatten().find(|p| p["pid"] == pid).with_context(|| format!("pid {pid} not in the snapshot"))
    };
    let counts = |p: &Value, m: &str| (p[m]["anon_vma"].as_i64().unwrap_or(-1), p[m]["anon_vma_chain"].as_i64().unwrap_or(-1));
    for (model, want_p, want_c) in [("eager", (3, 3), (3, 6)), ("lazy", (3, 3), (0, 3))] {
        for (role, base, held, want) in [("parent", p0, p3, want_p), ("child", c0, c3, want_c)] {
            let (b, h) = (counts(find(base)?, model), counts(find(held)?, model));
            let got = (h.0 - b.0, h.1 - b.1);
            ensure!(got == want, "fork -n 3 minus -n 0, {role}, {model} [AV, AVC]: got {got:?}, want {want:?}");
        }
    }
    Ok(())
}

/// `trace -p 1 -d 2s -j`: every process under init seeded (the held workloads among
/// them), nothing lost, the model fed and complete.
fn check_trace(g: &Guest, kernel: &str) -> Result<()> {
    g.exited_ok("trace")?;
    let j = g.json("trace")?;
    ensure!(j["lost_events"] == 0, "{} events lost", j["lost_events"]);
    ensure!(j["events"]["sent"] == j["events"]["received"], "sent {} != received {}", j["events"]["sent"], j["events"]["received"]);
    let m = &j["model"];
    let not_seeded: Vec<(&String, &Value)> = m["not_seeded"].as_object().into_iter().flatten().collect();
    if let Some((pid, why)) = not_seeded.first() {
        let why = why.as_str().unwrap_or("");
        let first = why.lines().next().unwrap_or("");
        anyhow::bail!("{} not seeded, first pid {pid}: {first:.200}", not_seeded.len());
    }
    // What the kernel lacks that the fidelity suite also tolerates (it leaves these
    // single-threaded processes exact).
    let tolerated = |i: &Value| crate::fidelity::INCOMPLETE_OK.iter().any(|(k, why)| *k == kernel && i == *why);
    let incomplete: Vec<&Value> = m["incomplete"].as_array().into_iter().flatten().filter(|i| !tolerated(i)).collect();
    ensure!(m["fed"] == true && incomplete.is_empty(), "model not fed or incomplete: fed {}, incomplete {incomplete:?}", m["fed"]);
    let seeded: Vec<u64> = m["seeded"].as_array().into_iter().flatten().filter_map(Value::as_u64).collect();
    let held = g.held()?;
    for pid in std::iter::once(1).chain(held) {
        ensure!(seeded.contains(&(pid as u64)), "pid {pid} not seeded (seeded: {seeded:?})");
    }
    no_fallback(g, "trace", kernel)
}

/// A `tp_btf` program refused where the matrix expects every one to load (after 5.10): the
/// command said so (`bpf::say_fallbacks`) and runs its classic programs, at more cost.
fn no_fallback(g: &Guest, cmd: &str, kernel: &str) -> Result<()> {
    let older = REFUSED_WITH_FALLBACK.iter().any(|(k, _)| *k == kernel);
    match g.errors.get(cmd).and_then(|e| e.iter().find(|l| l.contains("tp_btf program was refused"))) {
        Some(l) if !older => anyhow::bail!("{l}"),
        _ => Ok(()),
    }
}

/// The held process of MANY_VMAS written VMAs in `snapshot -j -p`, `trace -p 1` and the serve
/// scrape, on every kernel (5.10's iter/task passes resume a long list): walked whole (no
/// `incomplete`, exactly the VMAs /proc/PID/maps lists, one chain entry per anon_vma),
/// seeded, both serve gauges 0.
fn check_many_vmas(g: &Guest) -> Result<()> {
    let (big, maps) = g.big_maps()?;
    g.exited_ok("snapshot").context("snapshot")?;
    let snap = g.json("snapshot").context("snapshot")?;
    let p = snap["processes"].as_array().into_iter().flatten().find(|p| p["pid"] == big).with_context(|| format!("pid {big} not in the snapshot"))?;
    g.exited_ok("trace").context("trace")?;
    let model = &g.json("trace").context("trace")?["model"];
    let why = model["not_seeded"][big.to_string()].as_str();
    let seeded = model["seeded"].as_array().into_iter().flatten().any(|s| *s == big);
    let gauges = (g.metric("serve", "lazyvma_snapshot_incomplete_processes"), g.metric("serve", "lazyvma_snapshot_unseen_vmas"));
    ensure!(p.get("incomplete").is_none(), "snapshot: pid {big} incomplete: {}", p["incomplete"]);
    ensure!(maps >= MANY_VMAS as u64, "pid {big} has {maps} VMAs in /proc, fewer than the {MANY_VMAS} it wrote");
    let vmas = p["vmas"].as_u64().unwrap_or(0);
    ensure!(vmas == maps, "snapshot: pid {big} has {vmas} VMAs, /proc/{big}/maps {maps}");
    // Never forked: each anon VMA's chain is its own anon_vma alone (spec §5 A), so a chain
    // entry lost or doubled (a walk resumed in the middle of a chain) shows here.
    let (av, avc) = (p["eager"]["anon_vma"].as_u64().unwrap_or(0), p["eager"]["anon_vma_chain"].as_u64().unwrap_or(0));
    ensure!(av == avc && av >= MANY_VMAS as u64, "snapshot: pid {big} eager anon_vma {av}, anon_vma_chain {avc}: want equal and at least {MANY_VMAS}");
    ensure!(seeded && why.is_none(), "trace -p 1: pid {big} not seeded: {}", why.unwrap_or("(not in not_seeded either)"));
    ensure!(gauges == (Some(0.0), Some(0.0)), "serve: incomplete processes, unseen VMAs {gauges:?}, want 0, 0");
    Ok(())
}

/// One scrape of `serve`: OpenMetrics with its `# EOF`, object gauges, no event lost;
/// SIGTERM then exits 0.
fn check_serve(g: &Guest, kernel: &str) -> Result<()> {
    let scraped = g.lines.get("LZM-SCRAPE serve").and_then(|l| l.first()).is_some_and(|l| l.trim() == "1");
    if !scraped {
        g.exited_ok("serve")?;
        anyhow::bail!("no scrape answered within 120 s");
    }
    g.exited_ok("serve").context("after SIGTERM")?;
    let m = g.lines.get("LZM-METRIC serve").cloned().unwrap_or_default();
    ensure!(m.iter().any(|l| l == "# EOF"), "the scrape has no `# EOF`");
    // Without the iterator (UNSUPPORTED's snapshot), serve keeps its trace counters and says
    // in one line that the object gauges are missing.
    let no_iter = UNSUPPORTED.iter().any(|(k, c, _)| *k == kernel && *c == "snapshot");
    let said = g.errors.get("serve").is_some_and(|e| e.iter().any(|l| l.contains("no object gauges on this kernel, trace counters only")));
    ensure!(m.iter().any(|l| l.starts_with("lazyvma_objects")) || (no_iter && said), "the scrape has no lazyvma_objects gauge");
    if let Some(l) = m.iter().find(|l| l.starts_with("lazyvma_events_lost") && !l.ends_with(" 0")) {
        anyhow::bail!("events lost: {l}");
    }
    // doctor loads serve's programs with serve's branches pruned (its globals unset): only
    // serve's own note tells whether this kernel took them as tp_btf.
    no_fallback(g, "serve", kernel)
}

/// Programs a kernel may refuse because something else serves: `trace_sys_exit_plain` and
/// the slab `_plain` variants before 5.17 (no `bpf_loop`), and on 5.10 the per-hook kprobe
/// backend where fentry/fexit is refused (the fidelity suite checks the backends it chose):
/// the fexit programs read the return value with `bpf_get_func_ret` (5.17; "invalid func
/// unknown#184" on 5.10), and 5.10 refuses a `bpf_loop` or `bpf_find_vma` callback as
/// "number of funcs in func_info doesn't match number of subprogs" (`trace_sys_exit_btf`:
/// `trace_sys_exit_btf_plain` serves; `trace_prepare_vma`). `trace` reads the return from
/// the context at the function's BTF argument count there (`FEXIT_ARGS`) and keeps fentry;
/// doctor loads with the globals unset, so its fexit refusals stay. `type:T`: every program
/// of attach type T.
/// On 5.10 the iter/task_vma programs have no iterator to load for: `snapshot_task` (iter/task)
/// takes the pass, and `lock_seed_task_vma` seeds lock contention, which needs 5.19's tracepoints.
const REFUSED_WITH_FALLBACK: &[(&str, &[&str])] =
    &[("5.10", &["trace_prepare_vma", "trace_sys_exit", "trace_sys_exit_btf", "type:fentry", "type:fexit", "snapshot_task_vma", "lock_seed_task_vma"])];

/// `doctor -j`: every program of the object loads, or is "not used" with its reason (an attach
/// type or tracepoint prototype this kernel lacks), or is refused for a gap the matrix already
/// calls unsupported on this kernel, or is one `REFUSED_WITH_FALLBACK` names. Any other refusal
/// fails the cell, even where `trace` would fall back without a word (6.1's tp_btf kmem
/// programs were refused that way, unseen).
fn check_doctor(g: &Guest, kernel: &str) -> Result<()> {
    g.exited_ok("doctor")?;
    let v = g.json("doctor")?;
    let programs = v["programs"].as_array().context("no programs in doctor -j")?;
    ensure!(!programs.is_empty(), "doctor -j lists no programs");
    let allowed = REFUSED_WITH_FALLBACK.iter().find(|(k, _)| *k == kernel).map_or(&[][..], |(_, p)| *p);
    let gap = |why: &str| UNSUPPORTED.iter().any(|(k, _, phrase)| *k == kernel && why.contains(phrase));
    let refused: Vec<String> = programs
        .iter()
        .filter(|p| p["loaded"] != true)
        .filter(|p| !p["reason"].as_str().is_some_and(|r| r.starts_with("not used") || gap(r)))
        .filter(|p| !allowed.iter().any(|a| p["program"] == *a || a.strip_prefix("type:").is_some_and(|t| p["type"] == t)))
        .map(|p| format!("{} ({})", p["program"].as_str().unwrap_or("?"), p["reason"].as_str().unwrap_or("")))
        .collect();
    ensure!(refused.is_empty(), "{} refused: {}", refused.len(), refused.join("; "));
    Ok(())
}

/// `report` of each JSON the guest's snapshot and trace produced: exit 0, some text.
fn check_report(g: &Guest) -> Result<()> {
    let runs = g.lines.get("LZM-REPORT").cloned().unwrap_or_default();
    ensure!(!runs.is_empty(), "nothing to report: snapshot and trace produced no JSON");
    g.exited_ok("report")?;
    for r in &runs {
        let w: Vec<&str> = r.split_whitespace().collect();
        ensure!(w.get(2).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0) > 0, "report {} printed nothing", w.first().unwrap_or(&"?"));
    }
    let of: Vec<&str> = runs.iter().filter_map(|r| r.split_whitespace().next()).map(|f| f.trim_start_matches("/tmp/")).collect();
    ensure!(of.len() == 2, "only {} reported ({} missing)", of.join(", "), if of.contains(&"snap.json") { "trace's JSON" } else { "snapshot's JSON" });
    Ok(())
}

/// `serve --snapshot-only -p PARENT` of the held fork -n 3: a scrape, no BPF program or
/// link among its fds after the first pass, `trace="off"`, and each `lazyvma_objects`
/// gauge equal to the sum of snapshot's two processes (held, unchanged since).
fn check_serve_snapshot(g: &Guest) -> Result<()> {
    let scrape = g.lines.get("LZM-SCRAPE serve-snapshot").and_then(|l| l.first()).cloned().unwrap_or_default();
    let w: Vec<&str> = scrape.split_whitespace().collect();
    if w.first() != Some(&"1") {
        g.exited_ok("serve-snapshot")?;
        anyhow::bail!("no scrape answered within 120 s");
    }
    g.exited_ok("serve-snapshot").context("after SIGTERM")?;
    ensure!(w.get(1) == Some(&"0"), "{} BPF program or link fds held after the first pass, want 0", w.get(1).unwrap_or(&"?"));
    let m = g.lines.get("LZM-METRIC serve-snapshot").cloned().unwrap_or_default();
    ensure!(m.iter().any(|l| l == "# EOF"), "the scrape has no `# EOF`");
    ensure!(m.iter().any(|l| l.starts_with("lazyvma_build_info{") && l.contains("trace=\"off\"")), "lazyvma_build_info does not say trace=\"off\"");
    g.exited_ok("snapshot").context("snapshot")?;
    let v = g.json("snapshot").context("snapshot")?;
    let [_, _, p3, c3] = g.held()?;
    let procs: Vec<&Value> = v["processes"].as_array().into_iter().flatten().filter(|p| p["pid"] == p3 || p["pid"] == c3).collect();
    ensure!(procs.len() == 2, "snapshot has {} of the held fork's two processes", procs.len());
    for model in ["eager", "lazy"] {
        for object in ["anon_vma", "anon_vma_chain"] {
            let want: f64 = procs.iter().map(|p| p[model][object].as_f64().unwrap_or(-1.0)).sum();
            let got = g.metric("serve-snapshot", &format!("lazyvma_objects{{object=\"{object}\",model=\"{model}\"}}"));
            ensure!(got == Some(want), "{model} {object}: serve --snapshot-only {got:?}, snapshot {want}");
        }
    }
    Ok(())
}

/// What a kernel cannot give, said by lazyvma in one line: (kernel, command, a phrase that
/// line must hold). Such a command is `unsupported` (a **no** in the README, with the line),
/// not a failure; it fails like any other when its error says something else.
/// None today: 5.10's passes (no iter/task_vma) are iter/task walks resumed across passes
/// (observer-ebpf/src/iter_task.rs), whole up to `WALK_PASSES`.
pub const UNSUPPORTED: &[(&str, &str, &str)] = &[];

fn verdict(g: &Guest, kernel: &str, cmd: &str) -> (String, String) {
    let r = match cmd {
        "snapshot" => check_snapshot(g),
        "trace" => check_trace(g, kernel),
        "serve" => check_serve(g, kernel),
        "serve-snapshot" => check_serve_snapshot(g),
        "report" => check_report(g),
        "doctor" => check_doctor(g, kernel),
        "many-vmas" => check_many_vmas(g),
        _ => g.exited_ok(cmd),
    };
    match r {
        Ok(()) => ("ok".into(), String::new()),
        Err(e) => {
            let why = one_line(&format!("{e:#}"));
            let said = UNSUPPORTED.iter().any(|(k, c, phrase)| *k == kernel && *c == cmd && why.contains(phrase));
            (if said { "unsupported" } else { "failed" }.into(), why)
        }
    }
}

/// A kernel string on one line, without control characters, at most 300 characters.
fn one_line(s: &str) -> String {
    let flat: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    flat.chars().take(300).collect()
}

pub fn run(a: Args) -> Result<()> {
    if a.no_boot {
        let path = util::workspace_root().join(RESULTS);
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}: run the matrix first", path.display()))?;
        readme::rewrite(&serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?)?;
        println!("vm-matrix: README.md's kernel table rewritten from {RESULTS}");
        return Ok(());
    }
    let cmd = vec!["sh".to_string(), "-c".to_string(), script()];
    let commit = util::stdout(std::process::Command::new("git").args(["describe", "--always", "--dirty"]).current_dir(util::workspace_root()));
    let date = util::stdout(std::process::Command::new("date").args(["-u", "+%Y-%m-%d"]));
    let mut cells = Vec::new();
    for arch in a.cells.arches() {
        let series: Vec<Series> = Series::ALL.into_iter().filter(|s| a.cells.kernel.is_none_or(|k| k == *s)).collect();
        let bins = assets::build_binaries(arch)?;
        let cache = assets::Cache::open(false)?;
        let kernels: Vec<_> = series.iter().map(|s| cache.kernel(arch, *s).map(|k| (*s, k))).collect();
        let initrd = super::initrd(arch, &super::initramfs(&cache.busybox(arch)?, &bins, &[], &cmd)?)?;
        drop(cache);
        for k in kernels {
            let (series, kernel) = k?;
            println!("vm matrix: booting {} {} ({})", arch.deb(), series.name(), kernel.release);
            let t = Instant::now();
            let mut g = Guest::default();
            let res = qemu::boot_with(arch, &kernel.vmlinuz, &initrd, Duration::from_secs(900), &mut |l| g.take(l));
            let secs = t.elapsed().as_secs_f64();
            let boot = match &res {
                Ok(b) if b.release != kernel.release => format!("booted {} instead", b.release),
                Ok(_) if !g.ended => "the guest script ended early".to_string(),
                Ok(_) => String::new(),
                Err(e) => one_line(&format!("{e:#}")),
            };
            save_outputs(&g, &format!("{}-{}", arch.deb(), series.name()));
            let mut commands = serde_json::Map::new();
            for c in COMMANDS {
                let (v, why) = verdict(&g, series.name(), c);
                commands.insert(c.into(), json!({ "verdict": v, "why": why, "secs": g.secs.get(c).map(|s| (s * 10.0).round() / 10.0) }));
            }
            cells.push(json!({
                "arch": arch.deb(), "kernel": series.name(), "release": kernel.release,
                "secs": (secs * 10.0).round() / 10.0, "boot": if boot.is_empty() { "ok".into() } else { format!("failed: {boot}") },
                "commands": commands, "commit": commit.trim(), "date": date.trim(),
            }));
        }
        let _ = std::fs::remove_file(&initrd);
    }
    let all = merge_results(&cells)?;
    let failed = print(&cells);
    if a.readme {
        readme::rewrite(&all)?;
        println!("vm-matrix: README.md's kernel table rewritten from {RESULTS}");
    }
    ensure!(failed == 0, "vm matrix: {failed} failures (see above; {RESULTS})");
    Ok(())
}

/// Each command's JSON next to the results, for a look at what a verdict was made of.
fn save_outputs(g: &Guest, cell: &str) {
    let dir = util::workspace_root().join(RESULTS).with_file_name("");
    let _ = std::fs::create_dir_all(&dir);
    for (cmd, v) in g.json.iter().filter_map(|(c, v)| v.as_ref().ok().map(|v| (c, v))) {
        let _ = std::fs::write(dir.join(format!("{cell}-{cmd}.json")), serde_json::to_string_pretty(v).unwrap_or_default());
    }
}

/// Prints the cells and returns how many failures they hold.
fn print(cells: &[Value]) -> usize {
    let mut failed = 0;
    println!("vm matrix:");
    for c in cells {
        println!(
            "  {:<6} {:<5} {:<28} {:>6.1} s  boot {}",
            c["arch"].as_str().unwrap_or(""),
            c["kernel"].as_str().unwrap_or(""),
            c["release"].as_str().unwrap_or(""),
            c["secs"].as_f64().unwrap_or(0.0),
            c["boot"].as_str().unwrap_or("")
        );
        failed += (c["boot"] != "ok") as usize;
        for cmd in COMMANDS {
            let r = &c["commands"][cmd];
            let secs = r["secs"].as_f64().map_or("     ".into(), |s| format!("{s:5.1}"));
            let v = r["verdict"].as_str().unwrap_or("?");
            failed += (v != "ok" && v != "unsupported") as usize;
            let why = r["why"].as_str().unwrap_or("");
            let (arch, kernel) = (c["arch"].as_str().unwrap_or(""), c["kernel"].as_str().unwrap_or(""));
            let tag = match v {
                "ok" => "ok".to_string(),
                "unsupported" => format!("unsupported on {arch} {kernel}, and said so: {why}"),
                _ => format!("FAILED: {arch} {kernel} {cmd}: {why}"),
            };
            println!("    {cmd:<9} {secs} s  {tag}");
        }
    }
    let total = cells.len() * COMMANDS.len();
    let unsupported = cells.iter().flat_map(|c| COMMANDS.map(|cmd| c["commands"][cmd]["verdict"] == "unsupported")).filter(|u| *u).count();
    println!(
        "vm-matrix: {} cells, {} of {total} commands passed, {unsupported} unsupported (said), {failed} failures",
        cells.len(),
        total.saturating_sub(failed + unsupported)
    );
    failed
}

/// This run's cells replace the same (arch, kernel) in target/vm-matrix/results.json; the others stay
/// (with their own commit and date), so single-kernel runs add up to the whole table.
fn merge_results(cells: &[Value]) -> Result<Value> {
    let path = util::workspace_root().join(RESULTS);
    let old: Value = std::fs::read_to_string(&path).ok().and_then(|s| serde_json::from_str(&s).ok()).unwrap_or(json!({}));
    let key = |c: &Value| (c["arch"].as_str().unwrap_or("").to_string(), c["kernel"].as_str().unwrap_or("").to_string());
    let mut by: BTreeMap<(String, String), Value> = old["cells"].as_array().into_iter().flatten().map(|c| (key(c), c.clone())).collect();
    for c in cells {
        by.insert(key(c), c.clone());
    }
    let all = json!({ "about": "cargo xtask vm-matrix: per (arch, kernel) the verdict of each command in the guest", "commands": COMMANDS, "cells": by.into_values().collect::<Vec<_>>() });
    std::fs::create_dir_all(path.parent().unwrap())?;
    std::fs::write(&path, serde_json::to_string_pretty(&all)? + "\n").with_context(|| format!("cannot write {}", path.display()))?;
    println!("vm-matrix: results in {}", path.display());
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest(lines: &[&str]) -> Guest {
        let mut g = Guest::default();
        for l in lines {
            assert!(g.take(l), "{l}");
        }
        g
    }

    fn proc(pid: u32, eager: (i64, i64), lazy: (i64, i64)) -> Value {
        json!({"pid": pid, "eager": {"anon_vma": eager.0, "anon_vma_chain": eager.1}, "lazy": {"anon_vma": lazy.0, "anon_vma_chain": lazy.1}})
    }

    #[test]
    fn snapshot_is_judged_on_the_spec_counts() {
        let snap = |child_chains: i64| {
            let procs = [proc(10, (5, 5), (5, 5)), proc(11, (5, 8), (2, 5)), proc(20, (8, 8), (8, 8)), proc(21, (8, child_chains), (2, 8))];
            format!("LZM-JSON snapshot {}", json!({ "processes": procs }))
        };
        let ok = snap(14);
        let g = guest(&["LZM-HELD 10,11,20,21", "LZM-RC snapshot 0 1.0 2.5", &ok]);
        assert!(check_snapshot(&g).is_ok(), "{:?}", check_snapshot(&g));
        assert_eq!(g.secs["snapshot"], 1.5);
        let bad = snap(13);
        let g = guest(&["LZM-HELD 10,11,20,21", "LZM-RC snapshot 0 1.0 2.5", &bad]);
        let e = format!("{:#}", check_snapshot(&g).unwrap_err());
        assert!(e.contains("child, eager [AV, AVC]: got (3, 5), want (3, 6)"), "{e}");
        // A refused program: the status and the loader's first line, not the verifier log.
        let g = guest(&["LZM-RC snapshot 1 1 2", "LZM-ERR snapshot lazyvma: loading iter/task_vma (the verifier refused it?): E2BIG"]);
        assert_eq!(verdict(&g, "6.1", "snapshot").1, "exit status 1: lazyvma: loading iter/task_vma (the verifier refused it?): E2BIG");
    }

    #[test]
    fn trace_names_an_unseeded_process_in_one_line() {
        let j = json!({"lost_events": 0, "events": {"sent": 5, "received": 5},
            "model": {"fed": true, "complete": true, "seeded": [], "not_seeded": {"1": "the snapshot pass failed:\nverifier log..."}}});
        let g = guest(&["LZM-HELD 10,11,20,21", "LZM-RC trace 0 1 9", &format!("LZM-JSON trace {j}")]);
        let (v, why) = verdict(&g, "6.1", "trace");
        assert_eq!((v.as_str(), why.as_str()), ("failed", "1 not seeded, first pid 1: the snapshot pass failed:"));
    }

    #[test]
    fn a_kernel_gap_said_in_its_line_is_unsupported_not_failed() {
        // 5.10 takes its pass with iter/task now: the line that once marked the gap fails there too.
        let line = "LZM-ERR snapshot lazyvma: this kernel has no iter/task_vma (added in 5.12; no `bpf_iter_task_vma` in its BTF): …";
        let g = guest(&["LZM-RC snapshot 1 1 2", line]);
        assert_eq!(verdict(&g, "5.10", "snapshot").0, "failed");
        assert_eq!(verdict(&g, "6.1", "snapshot").0, "failed");
        let g = guest(&["LZM-RC snapshot 1 1 2", "LZM-ERR snapshot lazyvma: loading iter/task_vma: E2BIG"]);
        assert_eq!(verdict(&g, "5.10", "snapshot").0, "failed");
    }

    #[test]
    fn many_vmas_is_whole_and_exact_on_every_kernel() {
        let snap = |p: Value| format!("LZM-JSON snapshot {}", json!({ "processes": [p] }));
        let trace = |seeded: Value, not_seeded: Value| {
            format!(
                "LZM-JSON trace {}",
                json!({"lost_events": 0, "events": {"sent": 1, "received": 1}, "model": {"fed": true, "seeded": seeded, "not_seeded": not_seeded}})
            )
        };
        let lines = |s: &str, t: &str, inc: &str, unseen: &str| {
            let mut g = guest(&["LZM-HELD 10,11,20,21", "LZM-BIG 30 2011", "LZM-RC snapshot 0 1 2", s, "LZM-RC trace 0 2 9", t, "LZM-SCRAPE serve 1"]);
            g.take(&format!("LZM-METRIC serve lazyvma_snapshot_incomplete_processes {inc}"));
            g.take(&format!("LZM-METRIC serve lazyvma_snapshot_unseen_vmas {unseen}"));
            g
        };
        let eager = json!({"anon_vma": 2005, "anon_vma_chain": 2005});
        let whole = snap(json!({"pid": 30, "vmas": 2011, "eager": eager}));
        for k in ["5.10", "6.12"] {
            let g = lines(&whole, &trace(json!([1, 30]), json!({})), "0", "0");
            assert_eq!(verdict(&g, k, "many-vmas"), ("ok".into(), String::new()));
            let g = lines(&whole, &trace(json!([1, 30]), json!({})), "1", "5");
            assert_eq!(verdict(&g, k, "many-vmas").1, "serve: incomplete processes, unseen VMAs (Some(1.0), Some(5.0)), want 0, 0");
            // One VMA fewer than /proc lists fails, as does a cut said by every command.
            let g = lines(&snap(json!({"pid": 30, "vmas": 2010, "eager": eager})), &trace(json!([1, 30]), json!({})), "0", "0");
            assert_eq!(verdict(&g, k, "many-vmas"), ("failed".into(), "snapshot: pid 30 has 2010 VMAs, /proc/30/maps 2011".into()));
            let doubled = json!({"anon_vma": 2005, "anon_vma_chain": 2006});
            let g = lines(&snap(json!({"pid": 30, "vmas": 2011, "eager": doubled})), &trace(json!([1, 30]), json!({})), "0", "0");
            assert_eq!(verdict(&g, k, "many-vmas").1, "snapshot: pid 30 eager anon_vma 2005, anon_vma_chain 2006: want equal and at least 2000");
            let cut = snap(json!({"pid": 30, "vmas": 256, "incomplete": {"vmas_seen": 256, "map_count": 2011, "why": "passes"}}));
            let named = trace(json!([1, 10, 11, 20, 21]), json!({"30": "the snapshot pass (iter/task) saw 256 of its 2011 VMAs (passes)"}));
            let g = lines(&cut, &named, "1", "1755");
            let (v, why) = verdict(&g, k, "many-vmas");
            assert_eq!(v, "failed", "{why}");
            assert!(why.starts_with("snapshot: pid 30 incomplete"), "{why}");
            assert_eq!(verdict(&g, k, "trace").1, "1 not seeded, first pid 30: the snapshot pass (iter/task) saw 256 of its 2011 VMAs (passes)");
        }
        let g = guest(&["LZM-BIG 30"]);
        assert!(verdict(&g, "5.10", "many-vmas").1.contains("did not get ready: `30`"));
    }

    #[test]
    fn doctor_fails_on_a_refused_program_unless_a_fallback_serves() {
        let doc = |p: Value| {
            format!("LZM-JSON doctor {}", json!({ "programs": [{"program": "trace_exit_btf", "type": "tp_btf", "loaded": true, "reason": null}, p] }))
        };
        let refused = |name: &str, ty: &str| json!({"program": name, "type": ty, "loaded": false, "reason": "the kernel refused it (EINVAL)"});
        let g = guest(&["LZM-RC doctor 0 1 2", &doc(refused("trace_slab_alloc_btf", "tp_btf"))]);
        let (v, why) = verdict(&g, "6.1", "doctor");
        assert_eq!((v.as_str(), why.as_str()), ("failed", "1 refused: trace_slab_alloc_btf (the kernel refused it (EINVAL))"));
        assert_eq!(verdict(&g, "5.10", "doctor").0, "failed");
        let g = guest(&["LZM-RC doctor 0 1 2", &doc(refused("hk_clone_fexit", "fexit"))]);
        assert_eq!((verdict(&g, "5.10", "doctor").0.as_str(), verdict(&g, "6.12", "doctor").0.as_str()), ("ok", "failed"));
        let unused = json!({"program": "hk_clone_kprobe", "type": "kprobe", "loaded": null, "reason": "not used: kprobe is not usable"});
        assert_eq!(verdict(&guest(&["LZM-RC doctor 0 1 2", &doc(unused)]), "6.1", "doctor").0, "ok");
    }

    #[test]
    fn serve_snapshot_only_must_hold_nothing_and_match_the_snapshot() {
        let snap = r#"LZM-JSON snapshot {"processes": [{"pid": 20, "eager": {"anon_vma": 9, "anon_vma_chain": 12}, "lazy": {"anon_vma": 5, "anon_vma_chain": 8}}, {"pid": 21, "eager": {"anon_vma": 3, "anon_vma_chain": 6}, "lazy": {"anon_vma": 0, "anon_vma_chain": 3}}, {"pid": 10, "eager": {"anon_vma": 1, "anon_vma_chain": 1}, "lazy": {"anon_vma": 1, "anon_vma_chain": 1}}]}"#;
        let gauges = |av: u32| {
            [
                "LZM-METRIC serve-snapshot lazyvma_build_info{version=\"0.1.0\",trace=\"off\"} 1".to_string(),
                format!("LZM-METRIC serve-snapshot lazyvma_objects{{object=\"anon_vma\",model=\"eager\"}} {av}"),
                "LZM-METRIC serve-snapshot lazyvma_objects{object=\"anon_vma_chain\",model=\"eager\"} 18".to_string(),
                "LZM-METRIC serve-snapshot lazyvma_objects{object=\"anon_vma\",model=\"lazy\"} 5".to_string(),
                "LZM-METRIC serve-snapshot lazyvma_objects{object=\"anon_vma_chain\",model=\"lazy\"} 11".to_string(),
                "LZM-METRIC serve-snapshot # EOF".to_string(),
            ]
        };
        let run = |scrape: &str, av: u32| {
            let mut lines =
                vec!["LZM-HELD 10,11,20,21".to_string(), "LZM-RC snapshot 0 1 2".into(), snap.into(), scrape.into(), "LZM-RC serve-snapshot 0 2 3".into()];
            lines.extend(gauges(av));
            let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
            verdict(&guest(&refs), "6.1", "serve-snapshot")
        };
        assert_eq!(run("LZM-SCRAPE serve-snapshot 1 0", 12).0, "ok");
        assert_eq!(run("LZM-SCRAPE serve-snapshot 1 2", 12).1, "2 BPF program or link fds held after the first pass, want 0");
        assert_eq!(run("LZM-SCRAPE serve-snapshot 1 0", 11).1, "eager anon_vma: serve --snapshot-only Some(11.0), snapshot 12");
        assert!(run("LZM-SCRAPE serve-snapshot 0 0", 12).1.contains("no scrape answered"));
    }

    #[test]
    fn a_command_the_script_never_reached_fails() {
        let g = guest(&[
            "LZM-RC doctor 0 1 2",
            r#"LZM-JSON doctor {"programs": [{"program": "trace_fork_btf", "type": "tp_btf", "loaded": true, "reason": null}]}"#,
        ]);
        assert_eq!(verdict(&g, "6.1", "doctor").0, "ok");
        assert!(verdict(&g, "6.1", "workload").1.contains("did not run"));
        assert!(verdict(&g, "6.1", "serve").1.contains("did not run"));
    }

    #[test]
    fn the_readme_table_has_a_row_per_cell_and_a_note_per_failure() {
        let ok = json!({"verdict": "ok", "why": "", "secs": 1.0});
        let mut commands: serde_json::Map<String, Value> = COMMANDS.iter().map(|c| (c.to_string(), ok.clone())).collect();
        commands.insert("serve".into(), json!({"verdict": "failed", "why": "exit status 1: a|b", "secs": 1.0}));
        let cell = |k: &str| json!({"arch": "amd64", "kernel": k, "release": format!("{k}.0-1-cloud-amd64"), "secs": 40.0, "date": "2026-12-06", "commit": "abc", "commands": commands});
        let t = readme::table(&json!({"cells": [cell("6.12"), cell("5.10")]}));
        let rows: Vec<&str> = t.lines().filter(|l| l.starts_with("| 5.10") || l.starts_with("| 6.12")).collect();
        assert_eq!(rows.len(), 2);
        assert!(rows[0].starts_with("| 5.10 | amd64 | `5.10.0-1-cloud-amd64` | ok | ok | ok | ok | **no** [1] | ok | ok | ok |"), "{}", rows[0]);
        assert!(t.contains("1. amd64 5.10 `serve`: exit status 1: a/b\n"), "{t}");
        assert!(!t.contains("– :"), "{t}");
        // A row run before many-vmas existed: a dash, not a failure.
        let mut old = cell("6.1");
        old["commands"].as_object_mut().unwrap().remove("many-vmas");
        let t = readme::table(&json!({"cells": [old]}));
        assert!(t.contains("| ok | ok | ok | ok | **no** [1] | ok | ok | – |") && t.contains("\n– : not in that row's run"), "{t}");
    }
}
