//! Every file lazyvma writes. It runs as root, often in directories other users can write
//! to (/tmp): a name they can guess is a name they can plant a symlink at. So a new or
//! regular OUT is written to a temporary file of random name, created O_EXCL|O_NOFOLLOW
//! beside it, then renamed over it (rename replaces a directory entry and follows nothing).
//! Anything else at OUT is never replaced: a terminal, a pipe, /dev/null and /dev/full are
//! written in place; /dev/stdout, /dev/stderr and /dev/fd/N are the open descriptor itself;
//! any other symlink, device, socket or directory is refused.
use anyhow::{bail, Context};
use std::{
    ffi::{CString, OsString},
    fs::File,
    io::Write,
    os::{
        fd::{FromRawFd, OwnedFd},
        unix::{
            ffi::{OsStrExt, OsStringExt},
            fs::FileTypeExt,
        },
    },
    path::{Path, PathBuf},
};

/// The open file behind OUT and what makes it appear there: `commit` once it is whole.
pub struct Pending {
    temp: Option<(PathBuf, PathBuf)>,
}

impl Pending {
    /// Rename the temporary file over OUT (nothing to do for a file written in place).
    pub fn commit(&mut self) -> anyhow::Result<()> {
        if let Some((tmp, path)) = self.temp.take() {
            if let Err(e) = std::fs::rename(&tmp, &path) {
                let _ = std::fs::remove_file(&tmp);
                return Err(e).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()));
            }
        }
        Ok(())
    }
}

impl Drop for Pending {
    /// Not committed (an error, a failed start): OUT is left as it was.
    fn drop(&mut self) {
        if let Some((tmp, _)) = &self.temp {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// `path` written whole, or left as it was.
pub fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let (mut file, mut pending) = open(path).with_context(|| format!("writing {}", path.display()))?;
    file.write_all(bytes).and_then(|_| file.flush()).with_context(|| format!("writing {}", path.display()))?;
    pending.commit()
}

/// Open OUT for writing: a fresh temporary file to `commit`, or OUT itself when it is a
/// terminal, a pipe, /dev/null or /dev/full (see the module comment).
pub fn open(path: &Path) -> anyhow::Result<(File, Pending)> {
    if let Some(fd) = std_fd(path) {
        // SAFETY: dup of a descriptor number; failure is checked.
        let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
        if new < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        // SAFETY: `new` is a fresh descriptor owned by nothing else.
        return Ok((unsafe { File::from_raw_fd(new) }, Pending { temp: None }));
    }
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
        Ok(m) if m.file_type().is_file() => {}
        Ok(m) if m.file_type().is_symlink() => bail!("is a symbolic link; not written through nor replaced (give its target)"),
        Ok(m) if m.file_type().is_char_device() || m.file_type().is_fifo() => return in_place(path),
        Ok(m) => bail!("is {}; not written nor replaced", if m.is_dir() { "a directory" } else { "not a regular file" }),
    }
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().context("not a file name")?;
    // Keep the temporary name under NAME_MAX whatever OUT's length.
    let short: Vec<u8> = name.as_bytes().iter().take(200).copied().collect();
    for _ in 0..16 {
        let mut tmp_name = OsString::from(".");
        tmp_name.push(OsString::from_vec(short.clone()));
        tmp_name.push(format!(".{:016x}.tmp", random()?));
        let tmp = dir.join(&tmp_name);
        match create_excl(&tmp) {
            Ok(f) => return Ok((f, Pending { temp: Some((tmp, path.to_owned())) })),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
            // As creating OUT itself would have said: a caller names the file.
            Err(e) => return Err(e.into()),
        }
    }
    bail!("no free temporary name in 16 tries")
}

/// An input file (a report, a recording, a scenario, --btf) read whole, refused unless it is
/// a regular file: opened O_NONBLOCK so a FIFO cannot hang the open, checked by fstat so a
/// FIFO or device cannot hang or flood the read.
pub fn read(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let c = cstr(path).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `c` is a valid C string; the result is checked.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor owned by nothing else.
    let mut file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let m = file.metadata()?;
    if !m.is_file() {
        let t = m.file_type();
        let what = if t.is_fifo() {
            "a FIFO"
        } else if m.is_dir() {
            "a directory"
        } else if t.is_char_device() {
            "a character device"
        } else {
            "not a regular file"
        };
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("is {what}, not a regular file")));
    }
    let mut out = Vec::with_capacity(m.len() as usize);
    file.read_to_end(&mut out)?;
    Ok(out)
}

/// /dev/stdout, /dev/stderr, /dev/fd/N, /proc/self/fd/N: the descriptor, not the link.
fn std_fd(path: &Path) -> Option<i32> {
    let s = path.to_str()?;
    match s {
        "/dev/stdout" => Some(1),
        "/dev/stderr" => Some(2),
        _ => s.strip_prefix("/dev/fd/").or_else(|| s.strip_prefix("/proc/self/fd/"))?.parse().ok(),
    }
}

/// A special file that is written, never replaced: a terminal, a FIFO, /dev/null, /dev/full.
fn in_place(path: &Path) -> anyhow::Result<(File, Pending)> {
    let c = cstr(path)?;
    // O_NOFOLLOW: the file checked is the file opened, not a symlink planted since.
    // SAFETY: `c` is a valid C string; the result is checked.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: `fd` is a fresh descriptor owned by nothing else.
    let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    // SAFETY: a zeroed stat is a valid buffer for fstat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open, `st` is writable.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    let kind = st.st_mode & libc::S_IFMT;
    // SAFETY: isatty on an open descriptor.
    let tty = unsafe { libc::isatty(fd) } == 1;
    // /dev/null (1:3) and /dev/full (1:7).
    let null_full = kind == libc::S_IFCHR && libc::major(st.st_rdev) == 1 && matches!(libc::minor(st.st_rdev), 3 | 7);
    if kind == libc::S_IFIFO || tty || null_full {
        return Ok((file, Pending { temp: None }));
    }
    let what = match kind {
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        libc::S_IFDIR => "a directory",
        libc::S_IFSOCK => "a socket",
        _ => "not a regular file",
    };
    bail!("is {what}; not written nor replaced")
}

fn create_excl(path: &Path) -> std::io::Result<File> {
    let c = cstr(path).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `c` is a valid C string; the result is checked.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC, 0o666 as libc::c_uint) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor owned by nothing else.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

fn cstr(path: &Path) -> anyhow::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).with_context(|| format!("{}: contains a NUL byte", path.display()))
}

fn random() -> anyhow::Result<u64> {
    let mut b = [0u8; 8];
    // SAFETY: `b` is writable for 8 bytes.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != 8 {
        bail!("getrandom: {}", std::io::Error::last_os_error());
    }
    Ok(u64::from_ne_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("lazyvma-safe-out-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn replaces_a_regular_file_and_leaves_no_temporary() {
        let d = dir("reg");
        let out = d.join("r.json");
        std::fs::write(&out, "old").unwrap();
        write(&out, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "new");
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_symlink_at_out_is_refused_and_its_target_untouched() {
        let d = dir("link");
        let victim = d.join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let out = d.join("r.json");
        std::os::unix::fs::symlink(&victim, &out).unwrap();
        let e = format!("{:#}", write(&out, b"new").unwrap_err());
        assert!(e.contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert!(std::fs::symlink_metadata(&out).unwrap().file_type().is_symlink());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn uncommitted_leaves_out_as_it_was() {
        let d = dir("uncommitted");
        let out = d.join("rec");
        std::fs::write(&out, "good recording").unwrap();
        {
            let (mut f, _pending) = open(&out).unwrap();
            f.write_all(b"half").unwrap();
        }
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "good recording");
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_fifo_or_device_input_is_refused_not_waited_on() {
        let d = dir("fifo");
        let fifo = d.join("f");
        let c = cstr(&fifo).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(read(&fifo).unwrap_err().to_string().contains("is a FIFO"));
        assert!(read(Path::new("/dev/zero")).unwrap_err().to_string().contains("character device"));
        assert!(read(Path::new("/tmp")).unwrap_err().to_string().contains("directory"));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn devices_are_written_in_place_or_refused() {
        write(Path::new("/dev/null"), b"x").unwrap();
        assert!(format!("{:#}", write(Path::new("/dev/full"), b"x").unwrap_err()).contains("writing /dev/full"));
        assert!(std::fs::metadata("/dev/full").unwrap().file_type().is_char_device());
        let e = format!("{:#}", write(Path::new("/dev/zero"), b"x").unwrap_err());
        assert!(e.contains("character device"), "{e}");
        let e = format!("{:#}", write(Path::new("/tmp"), b"x").unwrap_err());
        assert!(e.contains("directory"), "{e}");
    }
}
