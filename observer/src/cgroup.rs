//! Cgroups for every subcommand: which directory a `--cgroup PATH` names, the processes in
//! it, and the cgroup a process is in. Hosts differ: pure v2 (cgroup2 at /sys/fs/cgroup),
//! hybrid (v1 controllers, cgroup2 at /sys/fs/cgroup/unified) and v1 only; mount points
//! come from /proc/self/mountinfo, never assumed.
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("{0} is not a cgroup directory (no cgroup.procs)")]
    NotACgroup(PathBuf),
    #[error("cgroup `{path}` not found under any cgroup mount ({tried})")]
    NotFound { path: PathBuf, tried: String },
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
}

/// One cgroup v1 hierarchy: its mount point and its controllers (`cpu`, `name=systemd`).
#[derive(Clone, Debug)]
pub struct V1 {
    pub dir: PathBuf,
    pub controllers: Vec<String>,
}

#[derive(Clone, Debug, Default)]
pub struct Mounts {
    pub v2: Option<PathBuf>,
    pub v1: Vec<V1>,
}

/// Parses mountinfo: field 5 is the mount point; after ` - ` come the fs type, the source
/// and the super options (which name a v1 hierarchy's controllers).
pub fn parse_mounts(mountinfo: &str) -> Mounts {
    let mut m = Mounts::default();
    for l in mountinfo.lines() {
        let Some((left, right)) = l.split_once(" - ") else { continue };
        let Some(dir) = left.split_ascii_whitespace().nth(4) else { continue };
        let mut r = right.split_ascii_whitespace();
        match r.next() {
            Some("cgroup2") if m.v2.is_none() => m.v2 = Some(dir.into()),
            Some("cgroup") => {
                let opts = r.nth(1).unwrap_or("");
                let controllers =
                    opts.split(',').filter(|o| !matches!(*o, "rw" | "ro") && !o.contains("xattr") && *o != "noprefix").map(String::from).collect();
                m.v1.push(V1 { dir: dir.into(), controllers });
            }
            _ => {}
        }
    }
    m
}

pub fn mounts() -> Mounts {
    std::fs::read_to_string("/proc/self/mountinfo").map(|s| parse_mounts(&s)).unwrap_or_default()
}

fn is_cgroup(dir: &Path) -> bool {
    dir.join("cgroup.procs").is_file()
}

/// An absolute PATH as given; a relative one under the cgroup2 mount, else under the first
/// v1 hierarchy that has it.
pub fn resolve(path: &Path, m: &Mounts) -> Result<PathBuf, CgroupError> {
    if path.is_absolute() {
        return if is_cgroup(path) { Ok(path.into()) } else { Err(CgroupError::NotACgroup(path.into())) };
    }
    let roots: Vec<&Path> = m.v2.iter().map(PathBuf::as_path).chain(m.v1.iter().map(|h| h.dir.as_path())).collect();
    if let Some(dir) = roots.iter().map(|r| r.join(path)).find(|d| is_cgroup(d)) {
        return Ok(dir);
    }
    let tried = if roots.is_empty() { "no cgroup mounted".into() } else { roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", ") };
    Err(CgroupError::NotFound { path: path.into(), tried })
}

/// Every pid in `cgroup.procs` of `dir` and of the cgroups below it, sorted.
pub fn procs(dir: &Path) -> Result<Vec<u32>, CgroupError> {
    fn walk(dir: &Path, out: &mut Vec<u32>) -> Result<(), CgroupError> {
        let file = dir.join("cgroup.procs");
        let text = std::fs::read_to_string(&file).map_err(|source| CgroupError::Read { path: file, source })?;
        out.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        let entries = std::fs::read_dir(dir).map_err(|source| CgroupError::Read { path: dir.into(), source })?;
        for e in entries.flatten() {
            // A child cgroup removed meanwhile has no processes left to miss.
            if e.file_type().is_ok_and(|t| t.is_dir()) && is_cgroup(&e.path()) {
                walk(&e.path(), out)?;
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, &mut out)?;
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// A process's cgroup: the v2 path (`/a/b`), or on a v1-only host `controllers:/path` of
/// its `name=systemd` (else first) hierarchy. `id` is the directory's inode, the kernel's
/// cgroup id; 0 when the directory is not found under our mounts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    pub path: String,
    pub id: u64,
}

fn inode(dir: &Path, path: &str) -> u64 {
    std::fs::metadata(dir.join(path.trim_start_matches('/'))).map_or(0, |m| m.ino())
}

/// From the text of /proc/PID/cgroup (`hierarchy-id:controllers:path` lines).
pub fn parse_membership(text: &str, m: &Mounts) -> Membership {
    let lines: Vec<(&str, &str)> = text.lines().filter_map(|l| l.split_once(':')?.1.split_once(':')).collect();
    if let Some((_, path)) = lines.iter().find(|(c, _)| c.is_empty()) {
        return Membership { path: path.to_string(), id: m.v2.as_deref().map_or(0, |d| inode(d, path)) };
    }
    let Some(&(ctl, path)) = lines.iter().find(|(c, _)| *c == "name=systemd").or(lines.first()) else {
        return Membership { path: "/".into(), id: 0 };
    };
    let want: Vec<&str> = ctl.split(',').collect();
    let dir = m.v1.iter().find(|h| want.iter().all(|w| h.controllers.iter().any(|c| c == w)));
    Membership { path: format!("{ctl}:{path}"), id: dir.map_or(0, |h| inode(&h.dir, path)) }
}

/// `None` when the process is gone. A cgroup's name is bytes: a non-UTF-8 one is shown
/// lossily and found (its id) by its bytes, never taken for a gone process.
pub fn of_pid(pid: u32, m: &Mounts) -> Option<Membership> {
    let bytes = std::fs::read(format!("/proc/{pid}/cgroup")).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let mut got = parse_membership(&text, m);
    if let (std::borrow::Cow::Owned(_), Some(v2)) = (&text, m.v2.as_deref()) {
        use std::os::unix::ffi::OsStrExt;
        if let Some(raw) = bytes.split(|&b| b == b'\n').find_map(|l| l.strip_prefix(b"0::")) {
            let rel = std::ffi::OsStr::from_bytes(raw.strip_prefix(b"/").unwrap_or(raw));
            got.id = std::fs::metadata(v2.join(rel)).map_or(0, |m| m.ino());
        }
    }
    Some(got)
}

/// Rows already sorted, most important first: the first `cap` keep their own row, the rest
/// are added into `other` (never dropped), which goes last.
pub fn fold_other<T>(mut rows: Vec<T>, cap: usize, mut other: T, mut add: impl FnMut(&mut T, T)) -> Vec<T> {
    if rows.len() > cap {
        for r in rows.drain(cap..) {
            add(&mut other, r);
        }
        rows.push(other);
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
        32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n\
        40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd\n\
        41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate\n";

    #[test]
    fn mounts_of_a_hybrid_host() {
        let m = parse_mounts(HYBRID);
        assert_eq!(m.v2.as_deref(), Some(Path::new("/sys/fs/cgroup/unified")));
        assert_eq!(m.v1.len(), 2);
        assert_eq!(m.v1[0].controllers, ["cpu", "cpuacct"]);
        assert_eq!(m.v1[1].controllers, ["name=systemd"]);
    }

    #[test]
    fn v2_path_preferred_else_systemd_hierarchy() {
        let m = parse_mounts(HYBRID);
        let hybrid = "2:cpu,cpuacct:/x\n1:name=systemd:/user.slice\n0::/work/a\n";
        assert_eq!(parse_membership(hybrid, &m).path, "/work/a");
        let v1 = "2:cpu,cpuacct:/x\n1:name=systemd:/user.slice\n";
        assert_eq!(parse_membership(v1, &m).path, "name=systemd:/user.slice");
        assert_eq!(parse_membership("", &m), Membership { path: "/".into(), id: 0 });
    }

    #[test]
    fn past_the_cap_rows_are_folded_never_dropped() {
        let rows = fold_other(vec![5, 4, 3, 2], 2, 0, |o, r| *o += r);
        assert_eq!(rows, [5, 4, 5]);
        assert_eq!(fold_other(vec![1, 2], 2, 0, |o, r| *o += r), [1, 2]);
    }

    #[test]
    fn unknown_paths_name_what_was_tried() {
        let m = Mounts { v2: Some("/nonexistent-v2".into()), v1: vec![] };
        let e = resolve(Path::new("a/b"), &m).unwrap_err().to_string();
        assert_eq!(e, "cgroup `a/b` not found under any cgroup mount (/nonexistent-v2)");
        let e = resolve(Path::new("/nonexistent/cg"), &m).unwrap_err().to_string();
        assert_eq!(e, "/nonexistent/cg is not a cgroup directory (no cgroup.procs)");
    }
}
