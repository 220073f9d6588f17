//! fork, exit and reaping. Children leave with `_exit` (no atexit handlers, no stdio flush)
//! and report failures as an exit code the parent turns back into an error.
use crate::fail::{broken, os, Fail, Res, EXIT_UNAVAILABLE};
use crate::out::{marker, Phase};

/// `None` in the child.
pub fn fork() -> Res<Option<i32>> {
    match unsafe { libc::fork() } {
        -1 => Err(os("fork")),
        0 => Ok(None),
        pid => Ok(Some(pid)),
    }
}

/// Runs the rest of a child's life and exits with its outcome; never returns.
pub fn child(f: impl FnOnce() -> Res<()>) -> ! {
    let code = match f() {
        Ok(()) => 0,
        Err(e) => {
            warn!("pid {}: {e}", crate::out::pid());
            e.code()
        }
    };
    marker(Phase::Exit);
    unsafe { libc::_exit(code) }
}

fn check(pid: i32, status: i32) -> Res<()> {
    if libc::WIFEXITED(status) {
        match libc::WEXITSTATUS(status) {
            0 => Ok(()),
            EXIT_UNAVAILABLE => Err(Fail::Unavailable(format!("child pid {pid} found its environment lacking"))),
            c => Err(broken(format!("child pid {pid} exited with status {c}"))),
        }
    } else if libc::WIFSIGNALED(status) {
        Err(broken(format!("child pid {pid} was killed by signal {}", libc::WTERMSIG(status))))
    } else {
        Err(broken(format!("child pid {pid} ended with wait status {status:#x}")))
    }
}

/// Waits for one child; a child that failed fails the scenario.
pub fn wait(pid: i32) -> Res<()> {
    let mut status = 0;
    loop {
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return check(pid, status);
        }
        if r < 0 && crate::out::errno() != libc::EINTR {
            return Err(os(format_args!("waitpid {pid}")));
        }
    }
}

/// Reaps every child, including orphans adopted as subreaper, until none is left.
pub fn wait_all() -> Res<()> {
    let mut first: Option<Fail> = None;
    loop {
        let mut status = 0;
        let r = unsafe { libc::waitpid(-1, &mut status, 0) };
        if r < 0 {
            match crate::out::errno() {
                libc::EINTR => continue,
                libc::ECHILD => break,
                _ => return Err(os("waitpid")),
            }
        }
        if let Err(e) = check(r, status) {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}
