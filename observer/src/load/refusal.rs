//! A program the kernel refused, in one line: the errno, the verifier limit it hit, and
//! the file its verifier log was saved to. A log can be megabytes (36,000 lines on 6.1):
//! it never goes to the terminal or into JSON.
//!
//! lazyvma runs as root, so the file is created the careful way: a fresh, unpredictable
//! name in $TMPDIR (else /tmp), `O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC`, mode 0600: an
//! existing file or a planted symlink makes the open fail instead of being written through.
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

/// The one-line refusal of a `BPF_PROG_LOAD` that failed with `io_error` and `log`.
pub fn describe(io_error: &std::io::Error, log: &str) -> String {
    let errno = errno_name(io_error.raw_os_error());
    let mut s = format!("the kernel refused it ({errno}");
    if let Some(limit) = limit(log) {
        s += &format!(": {limit}");
    }
    s += ")";
    if log.trim().is_empty() {
        return s + &format!(": {io_error}");
    }
    match save(log) {
        Ok(path) => s + &format!("; verifier log saved to {}", path.display()),
        Err(e) => s + &format!("; the verifier log could not be saved ({e})"),
    }
}

/// Which of the verifier's limits the log names, in words; else its last line.
pub fn limit(log: &str) -> Option<String> {
    let find = |needle: &str| log.lines().find(|l| l.contains(needle));
    if let Some(l) = find("BPF program is too large") {
        return Some(format!("the verifier's limit of 1,000,000 processed instructions; {}", printable(l.trim())));
    }
    if let Some(l) = find("jumps is too complex") {
        return Some(format!("the verifier's limit of 8192 jumps in one path; {}", printable(l.trim())));
    }
    if let Some(l) = find("combined stack size") {
        return Some(format!("the 512-byte BPF stack; {}", printable(l.trim())));
    }
    if let Some(l) = find("unknown func") {
        return Some(format!("a helper this kernel lacks; {}", printable(l.trim())));
    }
    log.lines().rev().find(|l| !l.trim().is_empty()).map(|l| format!("verifier: {}", printable(l.trim())))
}

/// A kernel string fit for one terminal line: no control characters, bounded.
fn printable(s: &str) -> String {
    let mut out: String = s.chars().map(|c| if c.is_control() { '?' } else { c }).take(200).collect();
    if s.chars().count() > 200 {
        out.push('…');
    }
    out
}

fn save(log: &str) -> std::io::Result<PathBuf> {
    let dir = std::env::var_os("TMPDIR").map(PathBuf::from).filter(|d| d.is_absolute()).unwrap_or_else(|| "/tmp".into());
    let mut last = None;
    for _ in 0..4 {
        let path = dir.join(format!("lazyvma-verifier-{:016x}.log", random()?));
        let file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(&path);
        match file {
            Ok(mut f) => {
                f.write_all(log.as_bytes())?;
                return Ok(path);
            }
            // A name taken meanwhile (or planted): draw another.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free name")))
}

/// 64 bits from the kernel's CSPRNG.
fn random() -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    // SAFETY: getrandom writes at most b.len() bytes into b.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        return Err(std::io::Error::last_os_error());
    }
    Ok(u64::from_ne_bytes(b))
}

pub(crate) fn errno_name(errno: Option<i32>) -> String {
    let n = match errno {
        Some(libc::EPERM) => "EPERM",
        Some(libc::ENOENT) => "ENOENT",
        Some(libc::ESRCH) => "ESRCH",
        Some(libc::EBADF) => "EBADF",
        Some(libc::ENOMEM) => "ENOMEM",
        Some(libc::EACCES) => "EACCES",
        Some(libc::EBUSY) => "EBUSY",
        Some(libc::EINVAL) => "EINVAL",
        Some(libc::E2BIG) => "E2BIG",
        Some(libc::EOPNOTSUPP) => "EOPNOTSUPP",
        Some(524) => "ENOTSUPP",
        Some(n) => return format!("errno {n}"),
        None => "no errno",
    };
    n.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_instruction_limit_and_saves_the_log_privately() {
        let log = "0: (b7) r0 = 0\nBPF program is too large. Processed 1000001 insn\nprocessed 1000001 insns (limit 1000000)\n";
        let s = describe(&std::io::Error::from_raw_os_error(libc::E2BIG), log);
        assert!(s.starts_with("the kernel refused it (E2BIG: the verifier's limit of 1,000,000 processed instructions"), "{s}");
        let path = s.rsplit("saved to ").next().unwrap();
        let meta = std::fs::symlink_metadata(path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(path).unwrap(), log);
        std::fs::remove_file(path).unwrap();
        assert_eq!(s.lines().count(), 1);
    }

    #[test]
    fn no_log_no_file() {
        let s = describe(&std::io::Error::from_raw_os_error(libc::EPERM), "");
        assert!(s.starts_with("the kernel refused it (EPERM)"), "{s}");
        assert!(!s.contains("saved"));
    }

    #[test]
    fn control_characters_do_not_reach_the_terminal() {
        assert_eq!(limit("x\n\x1b[2Jevil\n").unwrap(), "verifier: ?[2Jevil");
    }
}
