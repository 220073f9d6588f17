//! The same loops in a QEMU guest (`cargo xtask vm`'s kernels), where the fentry/kprobe
//! backends attach: fewer rounds and shorter loops, and under TCG every ratio is indicative
//! only (an emulated CPU does not cost BPF and the kernel's own work in the same proportion).
//! The guest runs a busybox script; each run prints one `bench-guest` line on the console.
//! No bpftrace in the guest (not a static binary); this tree's musl build only.
use super::Overhead;
use crate::vm::{self, assets, qemu, Arch, Series};
use anyhow::{bail, Result};
use serde_json::{json, Value};
use std::time::Duration;

pub fn parse(s: &str) -> Result<(Arch, Series)> {
    let Some((a, k)) = s.split_once(':') else { bail!("--guest {s}: expected ARCH:KERNEL, e.g. x86_64:6.12") };
    let arch = match a {
        "x86_64" => Arch::X86_64,
        "aarch64" => Arch::Aarch64,
        _ => bail!("--guest {s}: ARCH is x86_64 or aarch64"),
    };
    let kernel = match k {
        "5.10" => Series::V5_10,
        "6.1" => Series::V6_1,
        "6.12" => Series::V6_12,
        _ => bail!("--guest {s}: KERNEL is 5.10, 6.1 or 6.12"),
    };
    Ok((arch, kernel))
}

/// (name, scenario args) of the guest's loops, those `--workload` names (default all).
fn loops_of(quick: bool, only: &[String]) -> Vec<(&'static str, String)> {
    loops(quick).into_iter().filter(|(n, _)| only.is_empty() || only.iter().any(|o| o == n)).collect()
}

fn loops(quick: bool) -> Vec<(&'static str, String)> {
    let l = |full: usize, q: usize| if quick { q } else { full };
    vec![
        ("fork", format!("fork-loop -n 64 --loops {}", l(200, 20))),
        ("fault", format!("fault-loop -n 64 --loops {}", l(50, 5))),
        ("pageout", format!("pageout-loop -n 64 --loops {}", l(20, 2))),
        ("migrate", format!("migrate-loop -n 64 --loops {}", l(20, 2))),
    ]
}

/// `bench-guest mode=M wl=W rc=RC lost=L done ...` per run; the fork loop's `--stats` report
/// between `bench-guest-json` markers.
fn script(rounds: usize, quick: bool, only: &[String]) -> String {
    let mut s = String::from(
        r#"W=lazyvma-workload
# The guest's init leaves loopback down: serve's port would be unreachable.
ifconfig lo 127.0.0.1 up 2>/dev/null || ip link set lo up
lost() { grep -m1 '^  "lost_events"' "$1" | tr -dc 0-9; }
ready() { i=0; while ! grep -q "$2" "$1" 2>/dev/null && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done; }
one() { echo "bench-guest mode=$1 wl=$2 rc=$3 lost=$4 $(grep '^done ' /tmp/w.out | head -n1)"; }
"#,
    );
    for r in 0..rounds {
        for (name, args) in loops_of(quick, only) {
            s += &format!(
                r#"# round {r} {name}
if [ ! -e /tmp/skip-{name} ]; then
 $W {args} >/tmp/w.out 2>/tmp/w.err; rc=$?; one bare {name} $rc ""
 if [ $rc = 3 ]; then touch /tmp/skip-{name}; echo "bench-guest-skip wl={name} $(cat /tmp/w.err)"; else
 lazyvma trace -j >/tmp/t.json 2>/tmp/t.err & tp=$!; ready /tmp/t.err time
 $W {args} >/tmp/w.out 2>/tmp/w.err; rc=$?; kill -INT $tp; wait $tp; one trace {name} $rc "$(lost /tmp/t.json)"
 lazyvma trace -j -- $W {args} >/tmp/w.out 2>/tmp/t.err; rc=$?; one trace-cmd {name} $rc "$(lost /tmp/w.out)"
 lazyvma serve --listen 127.0.0.1:9464 2>/tmp/s.err & sp=$!
 i=0; until wget -q -T 60 -O /tmp/m http://127.0.0.1:9464/metrics 2>/dev/null || [ $i -gt 1200 ]; do sleep 0.1; i=$((i+1)); done
 $W {args} >/tmp/w.out 2>/tmp/w.err; rc=$?; wget -q -O /tmp/m http://127.0.0.1:9464/metrics
 kill -INT $sp; wait $sp; one serve {name} $rc "$(grep '^lazyvma_events_lost_total' /tmp/m | awk '{{print $2}}')"
 fi
fi
"#
            );
        }
    }
    let (_, fork) = &loops(quick)[0];
    if !only.is_empty() && !only.iter().any(|o| o == "fork") {
        return s;
    }
    s += &format!(
        "lazyvma trace -j --stats -- $W {fork} >/tmp/st.json 2>/tmp/st.err\necho bench-guest-json-begin; sed -n '/^{{/,$p' /tmp/st.json; echo bench-guest-json-end\n"
    );
    s
}

pub fn run(arch: Arch, kernel: Series, o: &Overhead, builds: &[(String, std::path::PathBuf)]) -> Result<Value> {
    let rounds = if o.quick { 1 } else { o.rounds.min(3) };
    if builds.len() > 1 || !o.lazyvma.is_empty() {
        eprintln!("bench: guests run this tree's musl build only (--lazyvma/--baseline apply to the host rounds)");
    }
    let bins = assets::build_binaries(arch)?;
    let cache = assets::Cache::open(false)?;
    let k = cache.kernel(arch, kernel)?;
    let cmd = vec!["sh".to_string(), "-c".to_string(), script(rounds, o.quick, &o.workloads)];
    let initrd = vm::initrd(arch, &vm::initramfs(&cache.busybox(arch)?, &bins, &[], &cmd)?)?;
    drop(cache);
    let (mut lines, mut json_text, mut in_json) = (Vec::<String>::new(), String::new(), false);
    let t = std::time::Instant::now();
    let boot = qemu::boot_with(arch, &k.vmlinuz, &initrd, Duration::from_secs(3600), &mut |l| {
        if l.starts_with("bench-guest-json-begin") {
            in_json = true;
        } else if l.starts_with("bench-guest-json-end") {
            in_json = false;
        } else if in_json {
            json_text.push_str(l);
            json_text.push('\n');
            return true;
        } else if l.starts_with("bench-guest") {
            lines.push(l.trim().to_string());
        }
        false
    });
    let _ = std::fs::remove_file(&initrd);
    let boot = boot?;
    eprintln!("bench: guest {} {} done in {:.0} s", arch.deb(), boot.release, t.elapsed().as_secs_f64());
    Ok(summarise(&format!("{}:{}", arch.deb(), kernel.name()), &boot.release, rounds, &loops_of(o.quick, &o.workloads), &lines, &json_text))
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

fn summarise(name: &str, release: &str, rounds: usize, wls: &[(&'static str, String)], lines: &[String], stats: &str) -> Value {
    let stats: Value = serde_json::from_str(stats).unwrap_or(Value::Null);
    println!("\nguest {name} ({release}), {rounds} rounds; ratios under TCG are indicative only");
    println!("  {:<10} {:<14} {:>5} {:>10} {:>8}  lost (runs with loss / runs, max)", "workload", "mode", "runs", "median s", "× bare");
    let mut out = serde_json::Map::new();
    for &(wl, _) in wls {
        if let Some(skip) = lines.iter().find(|l| l.starts_with("bench-guest-skip") && field(l, "wl") == Some(wl)) {
            println!("  {wl:<10} not run: {}", skip.split_once(' ').map_or("", |x| x.1).trim_start_matches(&format!("wl={wl} ")));
            out.insert(wl.into(), json!({"unavailable": skip}));
            continue;
        }
        let mut rows = Vec::new();
        let mut bare = None;
        for mode in ["bare", "trace", "trace-cmd", "serve"] {
            let runs: Vec<&String> =
                lines.iter().filter(|l| l.starts_with("bench-guest ") && field(l, "mode") == Some(mode) && field(l, "wl") == Some(wl)).collect();
            let ns: Vec<f64> = runs.iter().filter_map(|l| field(l, "elapsed_ns")?.parse().ok()).collect();
            let lost: Vec<Option<u64>> = runs.iter().map(|l| field(l, "lost").and_then(|v| v.parse().ok())).collect();
            let m = super::median_f(&ns);
            if mode == "bare" {
                bare = m;
            }
            let ratio = m.zip(bare).map(|(m, b)| m / b);
            let lossy = lost.iter().filter(|l| l.unwrap_or(0) > 0).count();
            let max = lost.iter().flatten().max();
            println!(
                "  {wl:<10} {mode:<14} {:>5} {:>10} {:>8}  {}",
                ns.len(),
                m.map_or("-".into(), |m| format!("{:.3}", m / 1e9)),
                ratio.map_or("-".into(), |r| format!("{r:.2}×")),
                if mode == "bare" { String::new() } else { format!("{lossy}/{}, max {}", lost.len(), max.map_or("-".into(), |m| m.to_string())) }
            );
            rows.push(json!({"mode": mode, "elapsed_ns": ns, "median_ns": m, "ratio_to_bare": ratio, "lost": lost, "failed": runs.len() - ns.len()}));
        }
        out.insert(wl.into(), json!({"rows": rows}));
    }
    if let Some(p) = stats["bpf_stats"].as_object() {
        let mut progs: Vec<(&String, &Value)> = p.iter().filter(|(_, v)| v["runs"].as_u64().unwrap_or(0) > 0).collect();
        progs.sort_by_key(|(_, v)| std::cmp::Reverse(v["runs"].as_u64().unwrap_or(0)));
        let list: Vec<String> = progs.iter().map(|(k, v)| format!("{k} {} ns ({})", v["mean_ns"], v["runs"])).collect();
        println!("  fork loop --stats: {}", list.join(", "));
    }
    json!({"guest": name, "release": release, "rounds": rounds, "indicative": true, "workloads": out,
           "bpf_stats": stats["bpf_stats"], "backend": stats["backend"], "lines": lines})
}
