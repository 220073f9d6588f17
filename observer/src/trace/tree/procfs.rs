//! What /proc says of processes: a pid's tgid, every live process's parent, whether one
//! is gone. Shared by `trace` and `serve` for their scopes.
use crate::sys;
use anyhow::Context;

/// The tgid of a `-p` pid (a thread id names its process).
pub fn tgid_of(pid: i32) -> anyhow::Result<u32> {
    let status = sys::proc_text(format!("/proc/{pid}/status")).map_err(|_| anyhow::anyhow!("no such process: {pid}"))?;
    status.lines().find_map(|l| l.strip_prefix("Tgid:")).and_then(|v| v.trim().parse().ok()).with_context(|| format!("reading the tgid of pid {pid}"))
}

/// (pid, ppid) of every live process but lazyvma. Zombies are left out: their
/// `sched_process_exit` has run, so one scanned into a scope would never exit in the trace
/// (an exit before its FEED_TRACED entry is not sent).
pub fn ppids() -> Vec<(u32, u32)> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return vec![] };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        // lazyvma is nobody's traced descendant (`-p 1`).
        .filter(|pid| *pid != std::process::id())
        .filter_map(|pid| {
            let (state, ppid) = state_ppid(pid)?;
            (!exited(state)).then_some((pid, ppid))
        })
        .collect()
}

/// Gone or a zombie: its mm has been torn down.
pub fn gone(tgid: u32) -> bool {
    state_ppid(tgid).is_none_or(|(state, _)| exited(state))
}

/// `/proc/PID/stat`'s state and ppid (the fields after the command's closing parenthesis).
fn state_ppid(pid: u32) -> Option<(char, u32)> {
    let st = sys::proc_text(format!("/proc/{pid}/stat")).ok()?;
    let mut rest = st.rsplit_once(')')?.1.split_ascii_whitespace();
    let state = rest.next()?.chars().next()?;
    Some((state, rest.next()?.parse().ok()?))
}

/// Zombie or dead.
fn exited(state: char) -> bool {
    state == 'Z' || state == 'X'
}
