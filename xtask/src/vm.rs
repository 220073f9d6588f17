//! `cargo xtask vm`: run a command as root on a real Debian cloud kernel under QEMU (TCG),
//! with static lazyvma, lazyvma-workload and any `--add` files in the guest's /bin.
use crate::{initramfs, util};
use anyhow::{ensure, Context, Result};
use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

pub(crate) mod assets;
pub mod matrix;
pub(crate) mod qemu;

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Arch {
    #[value(name = "x86_64")]
    X86_64,
    #[value(name = "aarch64")]
    Aarch64,
}

impl Arch {
    pub(crate) fn deb(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
        }
    }
    fn musl_target(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-unknown-linux-musl",
            Arch::Aarch64 => "aarch64-unknown-linux-musl",
        }
    }
}

/// A kernel series = the Debian release that ships it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Series {
    #[value(name = "5.10")]
    V5_10,
    #[value(name = "6.1")]
    V6_1,
    #[value(name = "6.12")]
    V6_12,
}

impl Series {
    pub(crate) const ALL: [Series; 3] = [Series::V5_10, Series::V6_1, Series::V6_12];

    fn suites(self) -> [&'static str; 2] {
        match self {
            Series::V5_10 => ["bullseye", "bullseye-security"],
            Series::V6_1 => ["bookworm", "bookworm-security"],
            Series::V6_12 => ["trixie", "trixie-security"],
        }
    }
    pub(crate) fn name(self) -> &'static str {
        match self {
            Series::V5_10 => "5.10",
            Series::V6_1 => "6.1",
            Series::V6_12 => "6.12",
        }
    }
}

/// `--arch` / `--kernel` of the suites that boot several guests (vm-matrix, fidelity): which
/// of the matrix's cells to run.
#[derive(clap::Args, Default, Clone, Copy)]
pub struct Cells {
    /// Only this architecture (default: both).
    #[arg(long, value_enum)]
    pub arch: Option<Arch>,
    /// Only this kernel series (default: every one).
    #[arg(long, value_enum)]
    pub kernel: Option<Series>,
}

impl Cells {
    pub fn arches(self) -> impl Iterator<Item = Arch> {
        [Arch::X86_64, Arch::Aarch64].into_iter().filter(move |x| self.arch.is_none_or(|y| y == *x))
    }
}

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, value_enum)]
    arch: Arch,
    #[arg(long, value_enum)]
    kernel: Series,
    /// A host file to put in the guest's /bin (repeatable; executables keep their mode).
    #[arg(long = "add", value_name = "FILE")]
    add: Vec<PathBuf>,
    /// Seconds before the guest is given up on.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Re-read Debian's package lists now (else at most weekly).
    #[arg(long)]
    refresh: bool,
    /// The command to run in the guest, as root, from /root.
    #[arg(last = true, required = true, value_name = "CMD")]
    cmd: Vec<String>,
}

/// Returns the guest command's exit status.
pub fn run(a: Args) -> Result<i32> {
    // Bad input fails before minutes of building and fetching.
    for f in &a.add {
        ensure!(f.is_file(), "--add {}: no such regular file", f.display());
    }
    let bins = assets::build_binaries(a.arch)?;
    let cache = assets::Cache::open(a.refresh)?;
    let kernel = cache.kernel(a.arch, a.kernel)?;
    let initrd = initrd(a.arch, &initramfs(&cache.busybox(a.arch)?, &bins, &a.add, &a.cmd)?)?;
    drop(cache);
    let t = Instant::now();
    let boot = qemu::boot(a.arch, &kernel.vmlinuz, &initrd, Duration::from_secs(a.timeout));
    let _ = std::fs::remove_file(&initrd);
    let boot = boot?;
    eprintln!("vm: {} {} exited {} after {:.1} s", a.arch.deb(), boot.release, boot.status, t.elapsed().as_secs_f64());
    Ok(boot.status)
}

/// busybox + /init + our binaries + `--add` files + the command, as the guest's rootfs.
pub(crate) fn initramfs(busybox: &Path, bins: &[PathBuf], add: &[PathBuf], cmd: &[String]) -> Result<Vec<u8>> {
    let mut c = initramfs::Cpio::new();
    for d in ["bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "root", "run", "lazyvma"] {
        c.dir(d)?;
    }
    // The kernel opens /dev/console before init runs, before devtmpfs is mounted.
    c.char_dev("dev/console", 0o600, 5, 1)?;
    c.file("bin/busybox", 0o755, &read(busybox)?)?;
    c.symlink("bin/sh", "busybox")?;
    c.file("init", 0o755, initramfs::INIT.as_bytes())?;
    c.file("lazyvma/cmd", 0o644, initramfs::shell_line(cmd).as_bytes())?;
    for f in bins.iter().chain(add) {
        let name = f.file_name().with_context(|| format!("--add {}: not a file name", f.display()))?;
        let meta = std::fs::metadata(f).with_context(|| format!("--add {}: cannot read it", f.display()))?;
        ensure!(meta.is_file(), "--add {}: not a regular file", f.display());
        let mode = if std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 != 0 { 0o755 } else { 0o644 };
        c.file(&format!("bin/{}", name.to_string_lossy()), mode, &read(f)?)?;
    }
    c.finish()
}

fn read(p: &Path) -> Result<Vec<u8>> {
    std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))
}

/// Written per process so concurrent runs from one worktree don't clobber each other.
pub(crate) fn initrd(arch: Arch, bytes: &[u8]) -> Result<PathBuf> {
    let dir = util::workspace_root().join("target/vm");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("initrd-{}-{}.gz", arch.deb(), std::process::id()));
    std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}
