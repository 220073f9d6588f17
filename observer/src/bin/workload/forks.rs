//! Scenarios that fork: one child, a chain, fork+exec, and the ancestor-reuse case.
use crate::fail::{os, Res};
use crate::out::{hold, marker, Phase};
use crate::procs::{self, child};
use crate::single::setup;
use crate::{Ctx, Done};
use std::ffi::CString;

/// Roles by generation, for the ready lines.
const ROLES: [&str; 4] = ["parent", "child", "grandchild", "great-grandchild"];

/// Forks a child that runs `f` and exits; returns the child's pid in the parent.
fn spawn(f: impl FnOnce() -> Res<()>) -> Res<i32> {
    marker(Phase::Fork);
    match procs::fork()? {
        None => child(f),
        Some(pid) => Ok(pid),
    }
}

/// Spec §5 B: the child does not write; it exits first, then the parent.
pub fn fork(c: &Ctx, write: bool) -> Res<Done> {
    let pages = setup(c, write)?;
    let pid = spawn(|| {
        hold(c.hold, ROLES[1]);
        Ok(())
    })?;
    hold(c.hold, c.role);
    procs::wait(pid)?;
    Ok(Done::pages(pages))
}

/// Generation `gen` forks the next one until depth 3; each waits for its child, so exits
/// run leaf first (spec §5 D).
fn chain_from(c: &Ctx, gen: usize) -> Res<()> {
    if gen == 3 {
        hold(c.hold, ROLES[3]);
        return Ok(());
    }
    let pid = spawn(|| chain_from(c, gen + 1))?;
    hold(c.hold, if gen == 0 { c.role } else { ROLES[gen] });
    procs::wait(pid)
}

pub fn chain(c: &Ctx) -> Res<Done> {
    let pages = setup(c, true)?;
    chain_from(c, 0)?;
    Ok(Done::pages(pages))
}

/// Spec §5 C: the child execs `/proc/self/exe noop -n 0` at once, tearing down the inherited
/// mm. The argv is built before the fork so the child allocates nothing.
pub fn exec(c: &Ctx) -> Res<Done> {
    let mut args = vec!["lazyvma-workload", "noop", "-n", "0", "--role", ROLES[1]];
    if c.hold {
        args.push("--hold");
    }
    let args: Vec<CString> = args.into_iter().map(|a| CString::new(a).unwrap()).collect();
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(core::ptr::null());
    let exe = c"/proc/self/exe";
    let pages = setup(c, true)?;
    let pid = spawn(|| {
        marker(Phase::Exec);
        unsafe { libc::execv(exe.as_ptr(), argv.as_ptr()) };
        Err(os("execv /proc/self/exe"))
    })?;
    hold(c.hold, c.role);
    procs::wait(pid)?;
    Ok(Done::pages(pages))
}

/// Spec §1.4: P forks C, C forks G, C exits (its anon_vma B keeps G's chain: no active VMA,
/// one child), then G forks H, whose VMAs reuse B instead of allocating. P is the child
/// subreaper so it adopts and reaps G; a pipe holds G back until P has reaped C.
pub fn reuse(c: &Ctx) -> Res<Done> {
    let pages = setup(c, true)?;
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(os("prctl(PR_SET_CHILD_SUBREAPER)"));
    }
    let mut fds = [0i32; 2];
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(os("pipe"));
    }
    let [rd, wr] = fds;
    let cpid = spawn(|| {
        spawn(|| {
            unsafe { libc::close(wr) };
            let mut b = 0u8;
            loop {
                let n = unsafe { libc::read(rd, (&mut b as *mut u8).cast(), 1) };
                if n >= 0 || crate::out::errno() != libc::EINTR {
                    break;
                }
            }
            unsafe { libc::close(rd) };
            let hpid = spawn(|| {
                hold(c.hold, ROLES[3]);
                Ok(())
            })?;
            hold(c.hold, ROLES[2]);
            procs::wait(hpid)
        })?;
        Ok(()) // C exits as soon as G exists; no hold, its exit is the point
    })?;
    unsafe { libc::close(rd) };
    let waited = procs::wait(cpid);
    // Release G even if C failed, so that nothing is left blocked.
    unsafe {
        libc::write(wr, b"x".as_ptr().cast(), 1);
        libc::close(wr);
    }
    waited?;
    hold(c.hold, c.role);
    procs::wait_all()?;
    Ok(Done::pages(pages))
}
