//! Small facts about the running system: privilege, kallsyms, slab caches, tracefs.
use anyhow::{bail, Context};
use std::{collections::HashMap, fs, path::Path};

/// BPF needs root (CAP_BPF + CAP_PERFMON + CAP_SYS_ADMIN for iterators and tracing).
pub fn require_root(what: &str) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("`lazyvma {what}` needs root (BPF programs): run it with sudo");
    }
    Ok(())
}

/// A /proc file that carries a comm (`stat`, `status`, `comm`): any user names a process
/// with any bytes (`prctl(PR_SET_NAME)`), so invalid UTF-8 becomes U+FFFD instead of making
/// the process look gone (read_to_string's error).
pub fn proc_text(path: impl AsRef<Path>) -> std::io::Result<String> {
    fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// `/proc/kallsyms` symbol → (address, type letter). Addresses are 0 unless root.
pub fn kallsyms() -> anyhow::Result<HashMap<String, (u64, char)>> {
    let text = fs::read_to_string("/proc/kallsyms").context("reading /proc/kallsyms")?;
    let mut map = HashMap::new();
    for line in text.lines() {
        let mut it = line.split_ascii_whitespace();
        let (Some(addr), Some(kind), Some(name)) = (it.next(), it.next(), it.next()) else { continue };
        if it.next().is_some() {
            continue; // module symbols: "[module]" follows; ours are all in vmlinux
        }
        let Ok(addr) = u64::from_str_radix(addr, 16) else { continue };
        let kind = kind.chars().next().unwrap_or('?');
        map.entry(name.to_string()).or_insert((addr, kind));
    }
    Ok(map)
}

/// One SLUB cache as `/sys/kernel/slab/<name>` shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SlabCache {
    pub name: String,
    pub object_size: u64,
    pub slab_size: u64,
    pub objects: Option<u64>,
    /// `Some(target)` when the name is an alias of a merged cache (e.g. `:A-0000064`).
    pub merged_into: Option<String>,
    /// The other caches merged into the same target.
    pub merged_with: Vec<String>,
}

/// `/sys/kernel/slab/<name>`'s (object_size, slab_size) alone: no `objects`, no alias scan.
pub fn slab_sizes(name: &str) -> anyhow::Result<(u64, u64)> {
    let dir = Path::new("/sys/kernel/slab").join(name);
    let read = |f: &str| -> anyhow::Result<u64> {
        let s = fs::read_to_string(dir.join(f)).with_context(|| format!("reading {}", dir.join(f).display()))?;
        s.trim().parse().with_context(|| format!("parsing {}", dir.join(f).display()))
    };
    Ok((read("object_size")?, read("slab_size")?))
}

pub fn slab_cache(name: &str) -> anyhow::Result<SlabCache> {
    let dir = Path::new("/sys/kernel/slab").join(name);
    let read = |f: &str| -> anyhow::Result<u64> {
        let s = fs::read_to_string(dir.join(f)).with_context(|| format!("reading {}", dir.join(f).display()))?;
        // `objects` may carry per-node suffixes: "123 N0=123".
        s.split_ascii_whitespace().next().and_then(|v| v.parse().ok()).with_context(|| format!("parsing {}", dir.join(f).display()))
    };
    let object_size = read("object_size")?;
    let slab_size = read("slab_size")?;
    let objects = read("objects").ok();
    let link = fs::read_link(&dir).ok().map(|t| t.to_string_lossy().into_owned());
    let merged_into = link.and_then(|t| t.rsplit('/').next().map(str::to_string)).filter(|t| t.starts_with(':'));
    let mut merged_with = Vec::new();
    if let Some(target) = &merged_into {
        for entry in fs::read_dir("/sys/kernel/slab").into_iter().flatten().flatten() {
            let other = entry.file_name().to_string_lossy().into_owned();
            if other == name || other.starts_with(':') {
                continue;
            }
            if fs::read_link(entry.path()).ok().is_some_and(|t| t.to_string_lossy().ends_with(target.as_str())) {
                merged_with.push(other);
            }
        }
        merged_with.sort();
    }
    Ok(SlabCache { name: name.into(), object_size, slab_size, objects, merged_into, merged_with })
}

/// Mount tracefs at /sys/kernel/tracing if it is not there (it is not at boot here).
pub fn ensure_tracefs() -> anyhow::Result<()> {
    let path = Path::new("/sys/kernel/tracing");
    if path.join("events").is_dir() {
        return Ok(());
    }
    let ok = std::process::Command::new("mount").args(["-t", "tracefs", "tracefs"]).arg(path).status().map(|s| s.success()).unwrap_or(false);
    if !ok || !path.join("events").is_dir() {
        bail!("tracefs is not mounted and `mount -t tracefs tracefs /sys/kernel/tracing` failed: tracepoints cannot attach");
    }
    Ok(())
}

/// `uname -r` and machine.
pub fn uname() -> (String, String) {
    // SAFETY: utsname is plain old data; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    unsafe { libc::uname(&mut u) };
    let s = |f: &[libc::c_char]| unsafe { std::ffi::CStr::from_ptr(f.as_ptr()) }.to_string_lossy().into_owned();
    (s(&u.release), s(&u.machine))
}

/// One read of a BPF iterator's file. A read that walks `MAX_ITER_OBJECTS` (1 M) objects
/// without output (a pass that keeps nothing of another process's VMAs, or the lock set's
/// seed, which outputs nothing) fails with EAGAIN and stops where it was: read on. A
/// machine with more than 1 M VMAs failed `trace`'s seeding so.
/// A bound all the same (4 G objects), should a kernel restart the walk instead.
pub fn read_iter(f: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut again = 0;
    loop {
        match f.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && again < 4096 => again += 1,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}
