//! One QEMU (TCG) boot: the serial console goes to our stdout line by line, and the
//! guest's markers tell its release and the command's exit status.
use super::Arch;
use crate::initramfs::{EXIT_MARKER, UNAME_MARKER};
use anyhow::{anyhow, bail, Context, Result};
use std::{
    io::{BufRead, BufReader, Read, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

pub struct Boot {
    pub status: i32,
    pub release: String,
}

/// The guest kernel panicked: the panic line and the first oops before it, so a caller can
/// tell an emulator's fault from a kernel's (see `is_int3`).
#[derive(Debug)]
pub struct GuestPanic {
    pub prog: String,
    pub line: String,
    pub oops: Option<String>,
}

impl GuestPanic {
    /// An oops on a breakpoint. The kernel plants an int3 while it rewrites live code
    /// (text_poke_bp: a static key when a tracepoint gains or loses its first program, a BPF
    /// trampoline, a kprobe); one hit after the kernel removed it and made every CPU
    /// serialise finds no patch to emulate and oopses. Most likely QEMU's multi-threaded TCG
    /// running its translation of the old bytes a moment too long: seen once, in the CI's
    /// userland run of 2026-12-07 (6.12 amd64, a daemon's syscall exit on a jump label,
    /// right after a sync-core IPI, while 24 services started), never in the other stages.
    pub fn is_int3(&self) -> bool {
        self.oops.as_deref().is_some_and(|o| o.contains("Oops: int3"))
    }
}

impl std::fmt::Display for GuestPanic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: kernel panic: {}", self.prog, self.line)?;
        match &self.oops {
            Some(o) => write!(f, " (first oops: {o})"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for GuestPanic {}

/// Size of the guest's swap disk: room for every page `lazyvma-workload pageout` reclaims.
const SWAP_MIB: u64 = 64;

/// A sparse raw file the guest uses as its swap device, removed when dropped. Per process
/// (and per boot) so concurrent runs from one worktree never share one.
struct SwapDisk(PathBuf);

impl SwapDisk {
    fn create() -> Result<SwapDisk> {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("lazyvma-swap-{}-{seq}.img", std::process::id()));
        let f = std::fs::File::create(&path).with_context(|| format!("cannot create the swap disk {}", path.display()))?;
        f.set_len(SWAP_MIB << 20).with_context(|| format!("cannot size the swap disk {}", path.display()))?;
        Ok(SwapDisk(path))
    }
}

impl Drop for SwapDisk {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What a boot needs beyond `cargo xtask vm`'s machine (`cargo xtask userland`: more
/// memory, its disks and NIC, its own kernel command line).
#[derive(Default)]
pub struct Opts {
    /// Guest RAM in MiB, split over the two NUMA nodes; 0 = 1 GiB.
    pub mem_mib: u64,
    /// More QEMU arguments (`-drive`, `-device`, `-netdev`), after the swap disk.
    pub args: Vec<String>,
    /// Appended to the kernel command line.
    pub append: String,
}

fn command(arch: Arch, vmlinuz: &Path, initrd: &Path, swap: &Path, opts: &Opts) -> Command {
    let (prog, machine, cpu, console) = match arch {
        Arch::X86_64 => ("qemu-system-x86_64", None, "max", "ttyS0"),
        // Without pauth-impdef, pointer authentication is emulated with QARMA: ~2x slower.
        Arch::Aarch64 => ("qemu-system-aarch64", Some("virt"), "max,pauth-impdef=on", "ttyAMA0"),
    };
    let mut cmd = Command::new(prog);
    if let Some(m) = machine {
        cmd.args(["-M", m]);
    }
    let node = if opts.mem_mib == 0 { 512 } else { opts.mem_mib / 2 };
    cmd.args(["-accel", "tcg", "-cpu", cpu, "-smp", "2", "-m", &format!("{}M", node * 2)])
        .args(["-nodefaults", "-nographic", "-no-reboot", "-serial", "stdio"])
        // Two NUMA nodes: move_pages(2) to the other node is then a deterministic rmap trigger.
        .arg("-object")
        .arg(format!("memory-backend-ram,id=m0,size={node}M"))
        .arg("-object")
        .arg(format!("memory-backend-ram,id=m1,size={node}M"))
        .args(["-numa", "node,memdev=m0", "-numa", "node,memdev=m1"])
        // Swap for MADV_PAGEOUT. NVMe because its driver is built into every Debian cloud
        // kernel; virtio-blk is a module there, and the initramfs carries no modules.
        .arg("-drive")
        .arg(format!("file={},if=none,id=swap,format=raw,cache=unsafe", swap.display()))
        .args(["-device", "nvme,serial=lazyvma-swap,drive=swap"])
        .args(&opts.args)
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", format!("console={console} panic=-1 loglevel=4 {}", opts.append).trim_end()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Boots, echoes the console, and returns once the guest powered off (or fails on
/// timeout, kernel panic, or an exit without the status marker).
pub fn boot(arch: Arch, vmlinuz: &Path, initrd: &Path, timeout: Duration) -> Result<Boot> {
    boot_with(arch, vmlinuz, initrd, timeout, &mut |_| false)
}

/// `boot`, handing each console line to `take` first; a line it returns true for is not echoed.
pub fn boot_with(arch: Arch, vmlinuz: &Path, initrd: &Path, timeout: Duration, take: &mut dyn FnMut(&str) -> bool) -> Result<Boot> {
    boot_opts(arch, vmlinuz, initrd, timeout, &Opts::default(), take)
}

/// `boot_with` on a machine with `opts`.
pub fn boot_opts(arch: Arch, vmlinuz: &Path, initrd: &Path, timeout: Duration, opts: &Opts, take: &mut dyn FnMut(&str) -> bool) -> Result<Boot> {
    let swap = SwapDisk::create()?;
    let mut cmd = command(arch, vmlinuz, initrd, &swap.0, opts);
    let prog = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd.spawn().with_context(|| format!("cannot run {prog}: run `cargo xtask setup` (installs QEMU)"))?;
    let mut stderr = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut line = Vec::new();
        while r.read_until(b'\n', &mut line).map(|n| n > 0).unwrap_or(false) {
            let text = strip_escapes(&String::from_utf8_lossy(&line));
            if tx.send(text).is_err() {
                break;
            }
            line.clear();
        }
    });

    let mut deadline = Instant::now() + timeout;
    let (mut status, mut release, mut panic, mut oops) = (None, None, None::<String>, None::<String>);
    let out = std::io::stdout();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if !take(&line) {
                    let _ = writeln!(out.lock(), "{line}");
                }
                if let Some(s) = after(&line, EXIT_MARKER) {
                    status = s.trim().parse::<i32>().ok();
                } else if let Some(r) = after(&line, UNAME_MARKER) {
                    release = Some(r.trim().to_string());
                } else if oops.is_none() && line.contains("Oops: ") {
                    oops = Some(line.trim().to_string());
                } else if panic.is_none() && line.contains("Kernel panic - not syncing") {
                    panic = Some(line.trim().to_string());
                    // panic=-1 reboots and -no-reboot ends QEMU; don't wait the full timeout.
                    deadline = deadline.min(Instant::now() + Duration::from_secs(15));
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                if let Some(line) = panic {
                    return Err(GuestPanic { prog, line, oops }.into());
                }
                bail!("{prog}: no exit status from the guest within {} s (timeout; see --timeout)", timeout.as_secs());
            }
        }
    }
    let exit = child.wait()?;
    let qemu_err = err_reader.join().unwrap_or_default();
    if let Some(line) = panic {
        return Err(GuestPanic { prog, line, oops }.into());
    }
    let Some(status) = status else {
        let why = qemu_err.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
        return Err(anyhow!("{prog} ended ({exit}) without the guest's exit-status marker{}", tail(&why)));
    };
    let release = release.ok_or_else(|| anyhow!("{prog}: the guest printed no `{}` line", UNAME_MARKER.trim()))?;
    Ok(Boot { status, release })
}

fn tail(why: &str) -> String {
    if why.is_empty() {
        String::new()
    } else {
        format!(": {why}")
    }
}

fn after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    line.find(marker).map(|i| &line[i + marker.len()..])
}

/// SeaBIOS resets and clears the terminal with escape sequences: keep them out of our
/// output (and out of the way of the markers), along with the line ends.
fn strip_escapes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    // CSI: parameters, then one final byte in @..~
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\r' | '\n' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn seabios_escapes_are_dropped() {
        let line = "\x1bc\x1b[?7l\x1b[2Jlazyvma-vm: uname -r: 6.1.0-56-cloud-amd64\r\n";
        assert_eq!(super::strip_escapes(line), "lazyvma-vm: uname -r: 6.1.0-56-cloud-amd64");
    }
}

#[cfg(test)]
#[test]
fn an_int3_oops_is_told_from_other_panics() {
    let p = |oops: Option<&str>| GuestPanic {
        prog: "qemu".into(),
        line: "Kernel panic - not syncing: Fatal exception in interrupt".into(),
        oops: oops.map(String::from),
    };
    // The lines of the CI run of 2026-12-07.
    assert!(p(Some("[  115.483154] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI")).is_int3());
    assert!(!p(Some("[   14.220729] Oops: invalid opcode: 0000 [#1] SMP NOPTI")).is_int3());
    assert!(!p(None).is_int3());
    assert!(p(None).to_string().ends_with("Fatal exception in interrupt"));
}
