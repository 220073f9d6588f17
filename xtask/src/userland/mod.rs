//! `cargo xtask userland`: a booted Debian userland (systemd + real services) under QEMU,
//! measured by lazyvma from inside: state A after boot, a `trace -p 1` across the services'
//! start, state B after. The tables go to docs/userland/, the checks decide the exit status.
use crate::{
    util,
    vm::{assets, qemu, Arch, Series},
};
use anyhow::{ensure, Context, Result};
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

mod checks;
mod render;
mod rootfs;
mod services;

const RUN_SH: &str = include_str!("run.sh");
/// The exchange disk: the run's tar in, the results' tar out.
const XCHG_MIB: u64 = 512;

#[derive(clap::Args, Clone)]
pub struct Args {
    #[arg(long, value_enum, default_value = "x86_64")]
    pub arch: Arch,
    #[arg(long, value_enum, default_value = "6.12")]
    pub kernel: Series,
    /// Start the first N of the 24 services.
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u32).range(1..=24))]
    pub apps: u32,
    /// Seconds the guest waits once no systemd job is pending (after boot, after the start).
    #[arg(long, default_value_t = 10)]
    pub settle: u32,
    /// Seconds before the guest is given up on.
    #[arg(long, default_value_t = 1800)]
    pub timeout: u64,
    /// Write the rendered tables under docs/userland/ (what is committed).
    #[arg(long)]
    pub docs: bool,
    /// No boot: render and check the last run's results (target/userland/<debarch>-<kernel>/) again.
    #[arg(long)]
    pub rerender: bool,
    /// Also record the trace (`trace -o`, results/trace.rec, ~85 MB) for `lazyvma replay
    /// --model-events --ops`; every event then streams instead of being counted in the kernel.
    #[arg(long)]
    pub record: bool,
}

/// What `cargo xtask test` runs: `cargo xtask userland` with every default (x86_64 6.12).
pub fn suite() -> Result<()> {
    run(defaults()?)
}

/// The flags' defaults, from clap itself: the suite runs exactly `cargo xtask userland`.
fn defaults() -> Result<Args> {
    use clap::{Args as _, FromArgMatches};
    let m = Args::augment_args(clap::Command::new("userland")).try_get_matches_from(["userland"])?;
    Ok(Args::from_arg_matches(&m)?)
}

#[cfg(test)]
#[test]
fn the_suite_runs_the_command_s_defaults() {
    let a = defaults().unwrap();
    assert_eq!((a.arch.deb(), a.kernel.name(), a.apps, a.docs, a.rerender, a.record), ("amd64", "6.12", 24, false, false, false));
}

pub fn run(a: Args) -> Result<()> {
    if a.rerender {
        return finish(&a);
    }
    let t_all = Instant::now();
    let bins = assets::build_binaries(a.arch)?;
    let cache = assets::Cache::open(false)?;
    let kernel = cache.kernel(a.arch, a.kernel)?;
    let deb = kernel_deb(&kernel.release, a.arch)?;
    // Built under the cache's lock: two runs never build one rootfs twice.
    let image = rootfs::image(&assets::cache_dir(), a.arch, &kernel.release, &deb)?;
    drop(cache);

    let name = format!("{}-{}", a.arch.deb(), a.kernel.name());
    let out = util::workspace_root().join("target/userland").join(&name);
    let _ = fs::remove_dir_all(&out);
    let results = out.join("results");
    fs::create_dir_all(&results)?;
    let xchg = exchange_disk(&out, &bins, &a)?;

    let units: Vec<&str> = services::SERVICES[..a.apps as usize].iter().map(|s| s.1).collect();
    eprintln!("userland: booting {} {} with {} services (QEMU TCG; minutes)", a.arch.deb(), kernel.release, units.len());
    let opts = qemu::Opts {
        mem_mib: 2048,
        args: [format!("file={},if=virtio,format=raw,snapshot=on", image.root.display()), format!("file={},if=virtio,format=raw,cache=unsafe", xchg.display())]
            .into_iter()
            .flat_map(|d| ["-drive".to_string(), d])
            // A NIC for the daemons that bind to an interface; restrict=on: no way out.
            .chain(["-netdev", "user,id=n0,restrict=on", "-device", "virtio-net-pci,netdev=n0,romfile="].map(String::from))
            .collect(),
        append: "root=/dev/vda rw slab_nomerge systemd.show_status=error".into(),
    };
    // One more boot if the guest's kernel oopsed on a stale int3 (`GuestPanic::is_int3`): the
    // emulator's fault, not lazyvma's or the kernel's. Said aloud, and kept in the report.
    let mut retried = None;
    let (boot, boot_s) = loop {
        if retried.is_some() {
            // The first guest wrote into it: start again from the same fresh disk.
            exchange_disk(&out, &bins, &a)?;
        }
        let t_boot = Instant::now();
        match qemu::boot_opts(a.arch, &kernel.vmlinuz, &image.initrd, Duration::from_secs(a.timeout), &opts, &mut |_| false) {
            Ok(boot) => break (boot, t_boot.elapsed().as_secs_f64()),
            Err(e) => match e.downcast_ref::<qemu::GuestPanic>() {
                Some(p) if p.is_int3() && retried.is_none() => {
                    eprintln!("userland: {p}\nuserland: an int3 oops is QEMU TCG's stale code after a live patch, not the run's: booting once more");
                    retried = Some(p.oops.clone().unwrap_or_default());
                }
                _ => return Err(e),
            },
        }
    };
    ensure!(boot.status == 0, "the guest's run failed (status {})", boot.status);
    let tar = Command::new("tar").arg("-xf").arg(&xchg).arg("-C").arg(&results).output().context("cannot run tar")?;
    ensure!(tar.status.success(), "cannot read the results from {}: {}", xchg.display(), String::from_utf8_lossy(&tar.stderr).trim());
    let _ = fs::remove_file(&xchg);
    let host =
        format!("rootfs_image_build_s {:.1}\nqemu_s {boot_s:.1}\ntotal_s {:.1}\nrelease {}\n", image.built_s, t_all.elapsed().as_secs_f64(), kernel.release);
    // One line, from the guest's console: keep it one line in the file.
    let host = host + &retried.map(|o| format!("retried_after {}\n", o.replace(['\n', '\r'], " "))).unwrap_or_default();
    fs::write(results.join("host-times.txt"), &host)?;
    finish(&a)
}

/// Render and check the results in target/userland/<name>/results.
fn finish(a: &Args) -> Result<()> {
    let name = format!("{}-{}", a.arch.deb(), a.kernel.name());
    let out = util::workspace_root().join("target/userland").join(&name);
    let results = out.join("results");
    let host = fs::read_to_string(results.join("host-times.txt")).with_context(|| format!("no finished run in {}", results.display()))?;
    let field = |k: &str| host.lines().find_map(|l| l.strip_prefix(k)?.strip_prefix(' ')).unwrap_or("").to_string();
    let (built_s, boot_s): (f64, f64) = (field("rootfs_image_build_s").parse().unwrap_or(0.0), field("qemu_s").parse().unwrap_or(0.0));
    let release = field("release");
    let retried = Some(field("retried_after")).filter(|s| !s.is_empty());
    let units: Vec<&str> = services::SERVICES[..a.apps as usize].iter().map(|s| s.1).collect();
    let run = checks::Run::load(&results, &units)?;
    let md = render::markdown(&run, a, &release, built_s, boot_s, retried.as_deref())?;
    fs::write(out.join(format!("{name}.md")), &md)?;
    if a.docs {
        let doc = util::workspace_root().join("docs/userland").join(format!("{name}.md"));
        fs::create_dir_all(doc.parent().unwrap())?;
        fs::write(&doc, &md)?;
        eprintln!("userland: wrote {}", doc.display());
    }
    let verdicts = run.checks();
    println!("userland {name} ({release}): rootfs+image {built_s:.0} s (0 = cached), boot+run {boot_s:.0} s");
    if let Some(o) = &retried {
        println!("  (a second boot: the first guest's kernel oopsed on a stale int3 under TCG: {o})");
    }
    for v in &verdicts {
        println!("  {:<6} {}", if v.ok { "ok" } else { "FAILED" }, v.what);
    }
    println!("userland: results and tables in {}", out.display());
    let failed = verdicts.iter().filter(|v| !v.ok).count();
    ensure!(failed == 0, "userland {name}: {failed} of {} checks failed", verdicts.len());
    Ok(())
}

/// The kernel package `Cache::kernel` downloaded (its modules go into the initramfs).
fn kernel_deb(release: &str, arch: Arch) -> Result<PathBuf> {
    let dir = assets::cache_dir().join("debs");
    let prefix = format!("linux-image-{release}-unsigned_");
    let suffix = format!("_{}.deb", arch.deb());
    let found = fs::read_dir(&dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&prefix) && n.ends_with(&suffix)))
        .max();
    found.with_context(|| format!("no {prefix}*{suffix} in {}: remove {}'s kernels/{release} and run again", dir.display(), assets::cache_dir().display()))
}

/// A raw disk holding a tar of the run: run.sh, its config, the static binaries.
fn exchange_disk(out: &Path, bins: &[PathBuf], a: &Args) -> Result<PathBuf> {
    let stage = out.join("stage");
    fs::create_dir_all(&stage)?;
    fs::write(stage.join("run.sh"), RUN_SH)?;
    let units: Vec<&str> = services::SERVICES[..a.apps as usize].iter().map(|s| s.1).collect();
    fs::write(
        stage.join("config"),
        format!(
            "UNITS='{}'\nSETTLE={}\nTRACE_ARGS='{}'\nZYGOTE_N=256\nZYGOTE_APPS={}\n",
            units.join(" "),
            a.settle,
            if a.record { "-o /run/lazyvma/results/trace.rec" } else { "" },
            a.apps
        ),
    )?;
    for b in bins {
        fs::copy(b, stage.join(b.file_name().unwrap())).with_context(|| format!("cannot copy {}", b.display()))?;
    }
    let img = out.join("xchg.img");
    let tar = Command::new("tar").arg("-cf").arg(&img).arg("-C").arg(&stage).arg(".").output().context("cannot run tar")?;
    ensure!(tar.status.success(), "tar of the run failed: {}", String::from_utf8_lossy(&tar.stderr).trim());
    let f = fs::OpenOptions::new().write(true).open(&img)?;
    ensure!(f.metadata()?.len() < XCHG_MIB << 20, "the run's tar is over {XCHG_MIB} MiB");
    f.set_len(XCHG_MIB << 20)?;
    let _ = fs::remove_dir_all(&stage);
    Ok(img)
}
