//! `serve -p PID,.. / --cgroup PATH`: which processes the counters and gauges cover. The
//! members at start (the pids, the cgroup's processes then) and every process they fork
//! later; a process that joins the cgroup afterwards is not followed. Members that have
//! exited leave at the second snapshot pass that finds them gone, so the set stays bounded
//! by the live processes and an exit's last frees, still in the ring buffer, are counted.
use std::collections::HashSet;
use std::sync::Mutex;

pub struct Scope {
    /// `None`: the whole system.
    members: Option<Mutex<Members>>,
}

#[derive(Default)]
struct Members {
    tgids: HashSet<u32>,
    /// Gone at the previous pass.
    gone: HashSet<u32>,
}

/// `lazyvma_scope` labels: kind (system, pids, cgroup), and the cgroup and pids given.
pub fn labels(cgroup: Option<&std::path::Path>, pids: &[u32]) -> Vec<(String, String)> {
    let kind = match (cgroup, pids.is_empty()) {
        (Some(_), _) => "cgroup",
        (None, false) => "pids",
        (None, true) => "system",
    };
    let mut labels = vec![("kind".to_string(), kind.to_string())];
    if let Some(c) = cgroup {
        labels.push(("cgroup".into(), c.display().to_string()));
    }
    if !pids.is_empty() {
        labels.push(("pids".into(), pids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")));
    }
    labels
}

impl Scope {
    pub fn system() -> Scope {
        Scope { members: None }
    }

    pub fn of(tgids: Vec<u32>) -> Scope {
        Scope { members: Some(Mutex::new(Members { tgids: tgids.into_iter().collect(), gone: HashSet::new() })) }
    }

    fn lock(&self) -> Option<std::sync::MutexGuard<'_, Members>> {
        self.members.as_ref().map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn scoped(&self) -> bool {
        self.members.is_some()
    }

    pub fn contains(&self, tgid: u32) -> bool {
        self.lock().is_none_or(|m| m.tgids.contains(&tgid))
    }

    /// `sched_process_fork` in `parent` that made process `child` (`Threads` told it from a
    /// thread).
    pub fn fork(&self, parent: u32, child: u32) {
        if let Some(mut m) = self.lock() {
            if m.tgids.contains(&parent) {
                m.tgids.insert(child);
            }
        }
    }

    /// Processes found to be members (serve --snapshot-only's pass, which no fork reaches).
    pub fn join(&self, tgids: &[u32]) {
        if let Some(mut m) = self.lock() {
            m.tgids.extend(tgids);
        }
    }

    /// For a snapshot pass: the members now (`None`: everyone). Drops those gone at this
    /// pass and the previous one.
    pub fn pids(&self) -> Option<Vec<u32>> {
        let mut m = self.lock()?;
        let gone: HashSet<u32> = m.tgids.iter().copied().filter(|p| !std::path::Path::new(&format!("/proc/{p}")).exists()).collect();
        let twice: Vec<u32> = gone.intersection(&m.gone).copied().collect();
        for p in twice {
            m.tgids.remove(&p);
        }
        m.gone = gone;
        let mut v: Vec<u32> = m.tgids.iter().copied().filter(|p| !m.gone.contains(p)).collect();
        v.sort_unstable();
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::tree::pids::{Threads, CLONE_THREAD};

    #[test]
    fn forks_of_members_join_threads_do_not() {
        let s = Scope::of(vec![10]);
        let mut threads = Threads::default();
        threads.newtask(12, CLONE_THREAD);
        for (parent, child) in [(10, 11), (10, 12), (99, 100)] {
            if threads.is_process(child) {
                s.fork(parent, child);
            }
        }
        assert!(s.contains(10) && s.contains(11));
        assert!(!s.contains(12) && !s.contains(100));
        assert!(Scope::system().contains(12345));
        assert_eq!(Scope::system().pids(), None);
        assert_eq!(labels(None, &[]), [("kind".to_string(), "system".to_string())]);
        assert_eq!(labels(None, &[1, 2])[1], ("pids".to_string(), "1,2".to_string()));
    }
}
