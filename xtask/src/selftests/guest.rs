//! `--guest ARCH:X.Y`: the same selftests on a real Debian kernel under QEMU (TCG), where
//! lazyvma attaches its function hooks (fentry, else kprobes) and not only tracepoints.
//! The tests are built static from the linux-source of the guest's series, put in the
//! initramfs's /bin, each traced by the guest's `lazyvma trace -j`; each report comes back
//! on one marked console line (as in `cargo xtask fidelity`) and is judged on the host.
use super::{conclude, judged, source, Outcome};
use crate::{
    setup, util,
    vm::{self, assets, qemu, Arch, Series},
};
use anyhow::{anyhow, ensure, Result};
use std::{collections::BTreeMap, str::FromStr, time::Duration};

/// One guest: `x86_64:6.12`.
#[derive(Clone, Copy, Debug)]
pub struct Guest {
    arch: Arch,
    series: Series,
}

impl FromStr for Guest {
    type Err = String;
    fn from_str(s: &str) -> Result<Guest, String> {
        use clap::ValueEnum;
        let (a, k) = s.split_once(':').ok_or_else(|| format!("{s:?}: want ARCH:X.Y, e.g. x86_64:6.12"))?;
        let arch = Arch::from_str(a, false).map_err(|_| format!("{a:?}: the arch is x86_64 or aarch64"))?;
        let series = Series::from_str(k, false).map_err(|_| format!("{k:?}: the kernel is 5.10, 6.1 or 6.12"))?;
        Ok(Guest { arch, series })
    }
}

/// What the guest said of one test.
#[derive(Default)]
struct Run {
    /// `lazyvma trace`'s exit status.
    rc: Option<i32>,
    secs: f64,
    errors: Vec<String>,
    log: Vec<String>,
    json: Option<String>,
}

#[derive(Default)]
struct Console {
    runs: BTreeMap<String, Run>,
    ended: bool,
}

impl Console {
    /// Takes the marked lines; everything else (the kernel's messages) is echoed.
    fn take(&mut self, line: &str) -> bool {
        let Some(at) = line.find("LZS-") else { return false };
        let mut w = line[at..].splitn(3, ' ');
        let (tag, test, rest) = (w.next().unwrap_or(""), w.next().unwrap_or(""), w.next().unwrap_or(""));
        if tag == "LZS-END" {
            self.ended = true;
            return true;
        }
        let r = self.runs.entry(test.to_string()).or_default();
        match tag {
            "LZS-RUN" => {
                let f: Vec<&str> = rest.split_whitespace().collect();
                r.rc = f.first().and_then(|v| v.parse().ok());
                let up = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
                r.secs = up(2) - up(1);
            }
            "LZS-ERR" => r.errors.push(rest.to_string()),
            "LZS-LOG" => r.log.push(rest.to_string()),
            "LZS-JSON" => r.json = Some(rest.to_string()),
            _ => return false,
        }
        true
    }
}

/// Each test under `lazyvma trace -j`, its own output to a log of which only the failures
/// and the TAP totals come back. The timeout is a watchdog outside the traced tree, not
/// busybox's `timeout`: that one vforks a child which forks the watcher, a topology the
/// host's coreutils `timeout` does not have (the model follows it since 2026-12-07, but the
/// watcher would be part of each test's trace: docs/trace.md).
fn script(tests: &[&str], timeout: u64, kprobes: bool) -> String {
    let k = if kprobes { " -k" } else { "" };
    format!(
        r#"up() {{ cut -d' ' -f1 /proc/uptime; }}
for t in {}; do
  t0=$(up)
  (sleep {timeout}; killall -9 $t) & w=$!
  lazyvma trace -j{k} -- sh -c "exec $t >/tmp/$t.log 2>&1" >/tmp/out 2>/tmp/err; rc=$?
  kill $w 2>/dev/null
  echo "LZS-RUN $t $rc $t0 $(up)"
  grep -E '^lazyvma' /tmp/err | head -3 | sed "s/^/LZS-ERR $t /"
  grep -E '^(not ok|# Totals|Bail out)' /tmp/$t.log | head -20 | sed "s/^/LZS-LOG $t /"
  echo "LZS-JSON $t $(sed -n '/^{{/,$p' /tmp/out | tr -d '\n')"
done
echo LZS-END
"#,
        tests.join(" ")
    )
}

/// One boot of `g` running every test of `wanted` its source has; returns what fails the suite.
/// `kprobes`: trace with `-k` (kprobes where fentry would attach).
pub fn run(g: Guest, wanted: &[&str], timeout: u64, kprobes: bool) -> Result<Vec<String>> {
    let place = format!("guest {} {}{}", g.arch.deb(), g.series.name(), if kprobes { " -k" } else { "" });
    // Tried: its tree has no mm/gup_test.h (5.11+), which vm_util.c and the tests include.
    ensure!(g.series != Series::V5_10, "{place}: not built: linux-source-5.10's selftests predate mm/gup_test.h (and MADV_POPULATE_*)");
    if g.arch == Arch::Aarch64 {
        setup::cross_gcc()?;
    }
    let bins = assets::build_binaries(g.arch)?;
    let cache = assets::Cache::open(false)?;
    let kernel = cache.kernel(g.arch, g.series)?;
    let src = source::Source::fetch(&cache, source::major_minor(g.series.name()).expect("a series is X.Y"), g.arch)?;
    let busybox = cache.busybox(g.arch)?;
    drop(cache);
    ensure!(src.series == g.series.name(), "{place}: Debian has no linux-source-{} (closest: {})", g.series.name(), src.series);
    let out = util::workspace_root().join("target/selftests").join(format!("guest-{}-{}", g.arch.deb(), src.series));
    let (mut results, mut built, mut tests) = (Vec::new(), Vec::new(), Vec::new());
    for &test in wanted {
        if src.has(test) {
            built.push(src.build(test, &out, source::Target::Guest(g.arch))?);
            tests.push(test);
        }
    }
    let cmd = vec!["sh".to_string(), "-c".to_string(), script(&tests, timeout, kprobes)];
    let initrd = vm::initrd(g.arch, &vm::initramfs(&busybox, &bins, &built, &cmd)?)?;
    eprintln!("selftests: booting {place} ({}) for {}", kernel.release, tests.join(" "));
    let t = std::time::Instant::now();
    let mut c = Console::default();
    // The guest's own timeout kills a hung test; this one catches a hung guest.
    let limit = Duration::from_secs(120 + tests.len() as u64 * (timeout + 60));
    // 3 GiB: mremap_test's 2 GB moves need a 2 GB mapping past the overcommit heuristic
    // (RAM + swap); it touches only 4 MB of it, so QEMU allocates little of this.
    let opts = qemu::Opts { mem_mib: 3072, ..Default::default() };
    let boot = qemu::boot_opts(g.arch, &kernel.vmlinuz, &initrd, limit, &opts, &mut |l| c.take(l));
    let _ = std::fs::remove_file(&initrd);
    let secs = t.elapsed().as_secs_f64();
    let boot = boot?;
    eprintln!("selftests: {place} ({}): {secs:.0} s in QEMU", boot.release);
    ensure!(c.ended, "{place}: the guest script ended early (exit status {})", boot.status);
    // The binaries are shared; the -k reports go beside the fentry ones, not over them.
    let out = if kprobes { out.join("kprobes") } else { out };
    std::fs::create_dir_all(&out)?;
    for &test in wanted {
        if !src.has(test) {
            results.push(Outcome::missing(test, &src));
            continue;
        }
        let r = c.runs.remove(test).unwrap_or_default();
        let o = Outcome { test: test.into(), status: "?".into(), secs: r.secs, verdict: None, error: None };
        if !r.log.is_empty() {
            let _ = std::fs::write(out.join(format!("{test}.log")), r.log.join("\n") + "\n");
        }
        let failed = match r.rc {
            Some(0) => None,
            rc => Some(rc.map_or_else(|| "never ran".into(), |n| format!("exit status {n}: {}", r.errors.first().map_or("", String::as_str)))),
        };
        results.push(judged(o, r.json.as_deref().filter(|j| j.starts_with('{')), failed, &out, timeout));
    }
    conclude(&format!("{place}, {secs:.0} s in QEMU"), &boot.release, &src, &results, &out).map_err(|e| anyhow!("{place}: {e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guests_parse_and_console_lines_are_taken() {
        let g: Guest = "x86_64:6.12".parse().unwrap();
        assert_eq!((g.arch, g.series), (Arch::X86_64, Series::V6_12));
        assert!("x86_64".parse::<Guest>().is_err());
        assert!("riscv:6.12".parse::<Guest>().is_err());
        assert!("aarch64:6.2".parse::<Guest>().is_err());
        let mut c = Console::default();
        assert!(!c.take("[   3.1] nvme nvme0: 1/0/0 default/read/poll queues"));
        assert!(c.take("LZS-RUN cow 0 12.50 40.75"));
        assert!(c.take("LZS-LOG cow # Totals: pass:1 fail:0"));
        assert!(c.take("LZS-JSON cow {\"a\": 1}"));
        assert!(c.take("LZS-END"));
        let r = &c.runs["cow"];
        assert_eq!((r.rc, r.secs, r.json.as_deref()), (Some(0), 28.25, Some("{\"a\": 1}")));
        assert_eq!(r.log, ["# Totals: pass:1 fail:0"]);
        assert!(c.ended);
    }
}
