//! busybox `timeout`'s process shape: P vforks V (CLONE_VM | CLONE_VFORK: V runs in P's mm
//! until it leaves), V forks the watcher W (a dup_mmap of P's mm, run by V) and exits, then P
//! execs the command. W's anon_vmas hang off P's, so P's old image is torn down while W
//! still pins them; W outlives P.
use crate::fail::{os, Res};
use crate::out::{marker, Phase};
use crate::procs;
use crate::single::setup;
use crate::{Ctx, Done};
use std::ffi::CString;

/// V's stack (CLONE_VM: not the one P is suspended on); P's heap, written before the clone.
const STACK: usize = 64 << 10;

/// What V and W need, built by P before the clone so neither allocates.
struct Shared {
    /// The pipe: W reads until EOF, which comes when P (its exec'd image) exits.
    rd: i32,
    wr: i32,
}

/// V, on its own stack in P's mm: raw syscalls only (glibc's fork would run P's atfork
/// handlers and rewrite P's thread pointer data in the shared memory).
extern "C" fn vchild(arg: *mut libc::c_void) -> libc::c_int {
    let s = unsafe { &*(arg as *const Shared) };
    // SIGCHLD alone: a plain fork, the same on every architecture (no SYS_fork on arm64).
    let w = unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_long, 0, 0, 0, 0) };
    if w == 0 {
        unsafe {
            libc::syscall(libc::SYS_close, s.wr);
            let mut b = 0u8;
            // EOF (0) or an error other than EINTR ends the watch.
            while libc::syscall(libc::SYS_read, s.rd, &mut b as *mut u8, 1) != 0 && crate::out::errno() == libc::EINTR {}
        }
        marker(Phase::Exit);
        unsafe { libc::syscall(libc::SYS_exit_group, 0) };
    }
    marker(Phase::Exit);
    unsafe { libc::syscall(libc::SYS_exit_group, if w < 0 { 1 } else { 0 }) };
    0
}

/// Write N; P vforks V, V forks W and exits; P prints its done line and execs
/// `/proc/self/exe noop -n 0` (the role `parent`), which exits at once: W leaves then.
pub fn vfork_fork(c: &Ctx) -> Res<Done> {
    let args: Vec<CString> = ["lazyvma-workload", "noop", "-n", "0", "--role", "parent"].into_iter().map(|a| CString::new(a).unwrap()).collect();
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(core::ptr::null());
    let mut stack = vec![1u8; STACK];
    let mut fds = [0i32; 2];
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(os("pipe"));
    }
    let s = Shared { rd: fds[0], wr: fds[1] };
    let pages = setup(c, true)?;
    marker(Phase::Fork);
    let top = unsafe { stack.as_mut_ptr().add(STACK) }.cast::<libc::c_void>();
    let v = unsafe { libc::clone(vchild, top, libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD, &s as *const Shared as *mut libc::c_void) };
    if v < 0 {
        return Err(os("clone(CLONE_VM | CLONE_VFORK)"));
    }
    // CLONE_VFORK: V has left by now; a failed fork in V is its exit status.
    procs::wait(v)?;
    unsafe { libc::close(s.rd) };
    say!("done scenario=vfork-fork n={} pages={pages} pid={}", c.n, crate::out::pid());
    marker(Phase::Exec);
    unsafe { libc::execv(c"/proc/self/exe".as_ptr(), argv.as_ptr()) };
    Err(os("execv /proc/self/exe"))
}
