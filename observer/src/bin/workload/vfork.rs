//! busybox `timeout`'s process shape: P vforks V (CLONE_VM | CLONE_VFORK: V runs in P's mm
//! until it leaves), V forks the watcher W (a dup_mmap of P's mm, run by V) and exits, then P
//! execs the command. W's anon_vmas hang off P's, so P's old image is torn down while W
//! still pins them. busybox's watcher outlives the command; this one leaves once P's exec is
//! over, just before P's new image, so that the trace sees every exit in a known order.
use crate::fail::{os, Res};
use crate::out::{marker, Phase};
use crate::procs;
use crate::single::setup;
use crate::{Ctx, Done};
use std::ffi::CString;

/// V's stack (CLONE_VM: not the one P is suspended on); P's heap, written before the clone.
const STACK: usize = 64 << 10;

/// The pipes, made by P before the clone so neither V nor W allocates. W reads `ready` until
/// P's new image writes its ready line there (its exec is over: `sched_process_exec` came
/// before W's exit, in the kernel and in the records), then exits; the new image holds on
/// `gone` (its stdin) until EOF, W's exit: every step inside the trace, in order.
struct Pipes {
    ready: [i32; 2],
    gone: [i32; 2],
}

fn pipe(cloexec: bool) -> Res<[i32; 2]> {
    let mut fds = [0i32; 2];
    if unsafe { libc::pipe2(fds.as_mut_ptr(), if cloexec { libc::O_CLOEXEC } else { 0 }) } != 0 {
        return Err(os("pipe2"));
    }
    Ok(fds)
}

/// V, on its own stack in P's mm: raw syscalls only (glibc's fork would run P's atfork
/// handlers and rewrite P's thread data in the shared memory).
extern "C" fn vchild(arg: *mut libc::c_void) -> libc::c_int {
    let p = unsafe { &*(arg as *const Pipes) };
    // SIGCHLD alone: a plain fork, the same on every architecture (no SYS_fork on arm64).
    let w = unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_long, 0, 0, 0, 0) };
    if w == 0 {
        unsafe {
            libc::syscall(libc::SYS_close, p.ready[1]);
            libc::syscall(libc::SYS_close, p.gone[0]);
            let mut b = 0u8;
            // A byte, EOF, or an error other than EINTR ends the watch.
            while libc::syscall(libc::SYS_read, p.ready[0], &mut b as *mut u8, 1) < 0 && crate::out::errno() == libc::EINTR {}
        }
        marker(Phase::Exit);
        unsafe { libc::syscall(libc::SYS_exit_group, 0) };
    }
    marker(Phase::Exit);
    unsafe { libc::syscall(libc::SYS_exit_group, if w < 0 { 1 } else { 0 }) };
    0
}

/// Write N; P vforks V, V forks W and exits; P prints its done line and execs
/// `/proc/self/exe noop -n 0 --hold` (role `parent`) on W's pipes.
pub fn vfork_fork(c: &Ctx) -> Res<Done> {
    let args: Vec<CString> = ["lazyvma-workload", "noop", "-n", "0", "--role", "parent", "--hold"].into_iter().map(|a| CString::new(a).unwrap()).collect();
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(core::ptr::null());
    let mut stack = vec![1u8; STACK];
    let p = Pipes { ready: pipe(true)?, gone: pipe(true)? };
    let pages = setup(c, true)?;
    marker(Phase::Fork);
    let top = unsafe { stack.as_mut_ptr().add(STACK) }.cast::<libc::c_void>();
    let v = unsafe { libc::clone(vchild, top, libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD, &p as *const Pipes as *mut libc::c_void) };
    if v < 0 {
        return Err(os("clone(CLONE_VM | CLONE_VFORK)"));
    }
    // CLONE_VFORK: V has left by now; a failed fork in V is its exit status.
    procs::wait(v)?;
    say!("done scenario=vfork-fork n={} pages={pages} pid={}", c.n, crate::out::pid());
    // The new image's stdout is W's `ready` pipe, its stdin the `gone` one (dup2 clears
    // close-on-exec on the copies; the originals close at the exec).
    unsafe {
        if libc::dup2(p.ready[1], 1) != 1 || libc::dup2(p.gone[0], 0) != 0 {
            return Err(os("dup2"));
        }
    }
    marker(Phase::Exec);
    unsafe { libc::execv(c"/proc/self/exe".as_ptr(), argv.as_ptr()) };
    Err(os("execv /proc/self/exe"))
}
