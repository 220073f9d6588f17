//! `-- CMD`: a child forked before the BPF programs attach, held on a pipe, released to exec
//! CMD once they are attached, so CMD's first fault is already observed.
use anyhow::{bail, Context};
use std::{
    ffi::{CString, OsStr, OsString},
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::{Path, PathBuf},
};

pub struct Held {
    pub pid: i32,
    /// Writing one byte releases the child; closing without writing makes it exit 126.
    go: Option<OwnedFd>,
    /// CLOEXEC: EOF means exec succeeded, 4 bytes are exec's errno.
    exec_err: OwnedFd,
    name: String,
}

/// How a process ended, as `waitpid` told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Exited(i32),
    Signaled(i32),
}

/// `cmd` need not be UTF-8 (a file name is bytes): messages show it lossily.
fn resolve(cmd: &OsStr) -> anyhow::Result<PathBuf> {
    let shown = cmd.to_string_lossy();
    let executable = |p: &Path| {
        let c = CString::new(p.as_os_str().as_bytes()).ok();
        // SAFETY: a NUL-terminated path.
        p.is_file() && c.is_some_and(|c| unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0)
    };
    if cmd.as_bytes().contains(&b'/') {
        let p = PathBuf::from(cmd);
        if !p.exists() {
            bail!("command not found: {shown}");
        }
        if !executable(&p) {
            bail!("command is not an executable file: {shown}");
        }
        return Ok(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path).map(|d| d.join(cmd)).find(|p| executable(p)).with_context(|| format!("command not found: {shown} (not in PATH)"))
}

fn pipe() -> anyhow::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        bail!("pipe2: {}", std::io::Error::last_os_error());
    }
    // SAFETY: fresh fds we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Fork the child that will exec `argv` once released. Call before anything starts threads.
pub fn spawn_held(argv: &[OsString]) -> anyhow::Result<Held> {
    let path = resolve(&argv[0])?;
    let c_path = CString::new(path.as_os_str().as_bytes()).context("command path contains NUL")?;
    let c_args: Vec<CString> = argv.iter().map(|a| CString::new(a.as_bytes())).collect::<Result<_, _>>().context("argument contains NUL")?;
    let mut c_argv: Vec<*const libc::c_char> = c_args.iter().map(|a| a.as_ptr()).collect();
    c_argv.push(std::ptr::null());
    let (go_r, go_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    // SAFETY: the child only calls async-signal-safe functions (read, execv, write, _exit).
    match unsafe { libc::fork() } {
        -1 => bail!("fork: {}", std::io::Error::last_os_error()),
        0 => unsafe {
            // Its copy of the write end would keep the pipe open: never released (lazyvma's
            // error or signal before the start), it would wait forever, and lazyvma for it.
            libc::close(go_w.as_raw_fd());
            let mut b = 0u8;
            let n = loop {
                let n = libc::read(go_r.as_raw_fd(), (&mut b as *mut u8).cast(), 1);
                if n >= 0 || *libc::__errno_location() != libc::EINTR {
                    break n;
                }
            };
            if n != 1 {
                libc::_exit(126);
            }
            libc::execv(c_path.as_ptr(), c_argv.as_ptr());
            let e = *libc::__errno_location();
            libc::write(err_w.as_raw_fd(), (&e as *const i32).cast(), 4);
            libc::_exit(127)
        },
        pid => Ok(Held { pid, go: Some(go_w), exec_err: err_r, name: argv[0].to_string_lossy().into_owned() }),
    }
}

impl Held {
    /// Let the child exec; returns once exec has succeeded, or its error.
    pub fn release(&mut self) -> anyhow::Result<()> {
        let go = self.go.take().expect("released once");
        // SAFETY: writing one byte from a valid buffer.
        if unsafe { libc::write(go.as_raw_fd(), b"x".as_ptr().cast(), 1) } != 1 {
            bail!("releasing the command: {}", std::io::Error::last_os_error());
        }
        drop(go);
        let mut e = [0u8; 4];
        let n = loop {
            // SAFETY: reading into a 4-byte buffer.
            let n = unsafe { libc::read(self.exec_err.as_raw_fd(), e.as_mut_ptr().cast(), 4) };
            if n >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                break n;
            }
        };
        if n == 4 {
            let _ = wait(self.pid, true);
            bail!("cannot run {}: {}", self.name, std::io::Error::from_raw_os_error(i32::from_ne_bytes(e)));
        }
        Ok(())
    }

    /// The child's status if it has ended (reaped here).
    pub fn try_wait(&self) -> Option<Status> {
        wait(self.pid, false)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // Never released (an error before attach): closing the pipe makes the child exit unrun.
        if self.go.take().is_some() {
            let _ = wait(self.pid, true);
        }
    }
}

fn wait(pid: i32, block: bool) -> Option<Status> {
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, if block { 0 } else { libc::WNOHANG }) };
        if r == pid {
            break;
        }
        if r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        return None;
    }
    if libc::WIFEXITED(status) {
        Some(Status::Exited(libc::WEXITSTATUS(status)))
    } else {
        Some(Status::Signaled(libc::WTERMSIG(status)))
    }
}
