//! The traced process tree: which tgids count, who forked whom, and each process's current
//! phase (the workload's `madvise(0, 0, 1000 + id)` markers). A forked child starts in its
//! parent's current phase.
use std::collections::{HashMap, HashSet};

/// CLONE_THREAD from <linux/sched.h>: the new task joins its parent's tgid.
pub const CLONE_THREAD: u64 = 0x0001_0000;

/// Tids `task_newtask` announced with CLONE_THREAD, until their `sched_process_fork`: a
/// thread's fork record makes no new process. The one place both the trace's tree and
/// serve's scope tell a new process from a new thread.
#[derive(Default)]
pub struct Threads(HashSet<u32>);

impl Threads {
    /// `task_newtask` of task `pid`.
    pub fn newtask(&mut self, pid: u32, clone_flags: u64) {
        if clone_flags & CLONE_THREAD != 0 {
            self.0.insert(pid);
        }
    }

    /// The fork record of task `child`: whether it made a process (not a thread).
    pub fn is_process(&mut self, child: u32) -> bool {
        !self.0.remove(&child)
    }
}

/// A process of the tree: the row `trace -j`'s `processes` prints.
pub use crate::report::trace_doc::ProcRow as Proc;

pub enum Scope {
    /// Every process: entries are created on first sight, without parents.
    System,
    /// The given roots and their descendants.
    Tree,
}

pub struct Tree {
    scope: Scope,
    pub procs: Vec<Proc>,
    by_tgid: HashMap<u32, usize>,
    /// New tasks announced by task_newtask with CLONE_THREAD, until their fork event.
    threads: Threads,
    /// The command's process before its exec: still lazyvma's forked image.
    launcher: Option<u32>,
    /// The command's process (its exec's frees are lazyvma's image: not counted).
    command: Option<usize>,
    /// Entries found in /proc whose fork record has not come (`fork`).
    scanned: HashSet<usize>,
}

impl Tree {
    pub fn system() -> Tree {
        Tree {
            scope: Scope::System,
            procs: vec![],
            by_tgid: HashMap::new(),
            threads: Threads::default(),
            launcher: None,
            command: None,
            scanned: HashSet::new(),
        }
    }

    pub fn roots(tgids: &[u32]) -> Tree {
        let mut t = Tree { scope: Scope::Tree, ..Tree::system() };
        for &tgid in tgids {
            t.add(tgid, None, None);
        }
        t
    }

    /// `-p`: the given processes, then their descendants alive now (from /proc), each after
    /// its parent; later forks join through `fork`.
    pub fn with_descendants(roots: &[u32], ppid_of: &[(u32, u32)]) -> Tree {
        let mut t = Tree::roots(roots);
        let mut i = 0;
        while i < t.procs.len() {
            let (parent, tgid) = (t.procs[i].proc, t.procs[i].tgid);
            let mut kids: Vec<u32> = ppid_of.iter().filter(|(_, pp)| *pp == tgid).map(|(p, _)| *p).collect();
            kids.sort_unstable();
            for k in kids {
                if !t.by_tgid.contains_key(&k) {
                    let p = t.add(k, Some(parent), None);
                    t.scanned.insert(p);
                }
            }
            i += 1;
        }
        t
    }

    /// `with_descendants` of the processes now, but `me` (lazyvma is never in its own
    /// scope), each new tgid handed to `traced` (the feed's FEED_TRACED) until a scan finds
    /// none: a child forked between a scan and its parent's entry there was not followed in
    /// the kernel, the next scan finds it. Gives up adding after `rounds` scans.
    pub fn scan(
        roots: &[u32],
        me: u32,
        ppids: impl Fn() -> Vec<(u32, u32)>,
        mut traced: impl FnMut(&[u32]) -> anyhow::Result<()>,
        rounds: usize,
    ) -> anyhow::Result<Tree> {
        let roots: Vec<u32> = roots.iter().copied().filter(|&r| r != me).collect();
        let mut known: HashSet<u32> = HashSet::new();
        let mut t = Tree::roots(&roots);
        for _ in 0..rounds.max(1) {
            let mut pairs = ppids();
            pairs.retain(|&(p, _)| p != me);
            t = Tree::with_descendants(&roots, &pairs);
            let new: Vec<u32> = t.procs.iter().map(|p| p.tgid).filter(|g| !known.contains(g)).collect();
            if new.is_empty() {
                break;
            }
            traced(&new)?;
            known.extend(new);
        }
        Ok(t)
    }

    /// The command's tree; until it execs, the root runs lazyvma's image (see `is_launcher`).
    pub fn command(tgid: u32) -> Tree {
        let mut t = Tree::roots(&[tgid]);
        t.launcher = Some(tgid);
        t.command = Some(0);
        t
    }

    /// `proc` is the command's process (`Tree::command`).
    pub fn is_command(&self, proc: usize) -> bool {
        self.command == Some(proc)
    }

    fn add(&mut self, tgid: u32, parent: Option<usize>, phase: Option<u32>) -> usize {
        let proc = self.procs.len();
        self.procs.push(Proc { proc, tgid, parent, phase, execs: 0, exited: false });
        // A recycled tgid now names the new process.
        if let Some(old) = self.by_tgid.insert(tgid, proc) {
            self.scanned.remove(&old);
        }
        proc
    }

    /// The traced process `tgid` is, if any.
    pub fn traced(&mut self, tgid: u32) -> Option<usize> {
        match (self.by_tgid.get(&tgid), &self.scope) {
            (Some(p), _) => Some(*p),
            (None, Scope::System) => Some(self.add(tgid, None, None)),
            (None, Scope::Tree) => None,
        }
    }

    /// Whether a process of the tree had `tgid` (no process is made for it).
    pub fn known(&self, tgid: u32) -> bool {
        self.by_tgid.contains_key(&tgid)
    }

    /// Whether the process `tgid` names now has exited (its last thread's exit was read).
    pub fn exited(&self, tgid: u32) -> bool {
        self.by_tgid.get(&tgid).is_some_and(|p| self.procs[*p].exited)
    }

    pub fn get(&self, proc: usize) -> &Proc {
        &self.procs[proc]
    }

    pub fn newtask(&mut self, pid: u32, clone_flags: u64) {
        self.threads.newtask(pid, clone_flags);
    }

    /// `sched_process_fork` in the parent `tgid`: the child joins the tree if the parent is in it.
    pub fn fork(&mut self, tgid: u32, child: u32) {
        if !self.threads.is_process(child) {
            return;
        }
        let Some(parent) = self.traced(tgid) else { return };
        // Already found in /proc by `with_descendants` (it forked after attach, before the
        // scan; maybe reparented since, so /proc named another parent): a live tgid is one
        // process, and this record is its fork.
        if let Some(&known) = self.by_tgid.get(&child) {
            if !self.procs[known].exited && self.scanned.remove(&known) {
                self.procs[known].parent = Some(parent);
                return;
            }
        }
        let phase = self.procs[parent].phase;
        self.add(child, Some(parent), phase);
    }

    pub fn exec(&mut self, tgid: u32) {
        if self.launcher == Some(tgid) {
            self.launcher = None;
        }
        if let Some(p) = self.by_tgid.get(&tgid) {
            self.procs[*p].execs += 1;
        }
    }

    /// `group_dead`: 1 when the last thread leaves, 2 when the kernel does not say (then the
    /// group leader's exit stands for the process).
    pub fn exit(&mut self, tgid: u32, pid: u32, group_dead: u32) {
        let last = group_dead == 1 || (group_dead == 2 && pid == tgid);
        if let (true, Some(p)) = (last, self.by_tgid.get(&tgid)) {
            self.procs[*p].exited = true;
        }
    }

    pub fn marker(&mut self, tgid: u32, phase: u32) {
        if let Some(p) = self.traced(tgid) {
            self.procs[p].phase = Some(phase);
        }
    }

    /// True for the command's process before its exec: its frees of objects allocated
    /// before the trace began are lazyvma's own image being torn down, not the command's.
    pub fn is_launcher(&self, tgid: u32) -> bool {
        self.launcher == Some(tgid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_join_with_the_parents_phase_and_threads_do_not() {
        let mut t = Tree::command(100);
        assert!(t.is_launcher(100));
        t.exec(100);
        assert!(!t.is_launcher(100));
        t.marker(100, 3);
        t.newtask(101, 0x11);
        t.fork(100, 101);
        t.newtask(102, CLONE_THREAD | 0x100);
        t.fork(100, 102);
        assert_eq!(t.procs.len(), 2);
        assert_eq!(t.traced(101), Some(1));
        assert_eq!(t.get(1).parent, Some(0));
        assert_eq!(t.get(1).phase, Some(3));
        assert_eq!(t.traced(102), None);
        t.marker(101, 16);
        assert_eq!(t.get(0).phase, Some(3));
        // An untraced parent's fork is not followed.
        t.fork(555, 556);
        assert_eq!(t.traced(556), None);
        t.exit(101, 101, 0);
        assert!(!t.get(1).exited);
        t.exit(101, 101, 1);
        t.exit(100, 100, 2);
        assert!(t.get(0).exited && t.get(1).exited);
    }

    #[test]
    fn existing_descendants_follow_their_parents() {
        let t = Tree::with_descendants(&[10], &[(11, 10), (13, 12), (12, 11), (20, 1), (14, 10)]);
        let v: Vec<_> = t.procs.iter().map(|p| (p.tgid, p.parent)).collect();
        assert_eq!(v, vec![(10, None), (11, Some(0)), (14, Some(0)), (12, Some(1)), (13, Some(3))]);
    }

    #[test]
    fn a_scanned_process_s_fork_record_is_the_same_process_even_reparented() {
        // 12 was forked by 11 after attach, 11 exited and 12 was reparented to 10 before the scan.
        let mut t = Tree::with_descendants(&[10], &[(12, 10)]);
        t.fork(10, 11);
        t.fork(11, 12);
        t.exit(11, 11, 1);
        let v: Vec<_> = t.procs.iter().map(|p| (p.tgid, p.parent, p.exited)).collect();
        assert_eq!(v, [(10, None, false), (12, Some(2), false), (11, Some(0), true)]);
        // A second fork record of 12 (recycled after an exit) is a new process.
        t.exit(12, 12, 1);
        t.fork(10, 12);
        assert_eq!(t.procs.iter().filter(|p| p.tgid == 12).count(), 2);
    }

    #[test]
    fn the_scan_leaves_lazyvma_out_and_rescans_until_nothing_is_new() {
        let scans = std::cell::Cell::new(0);
        let ppids = || {
            scans.set(scans.get() + 1);
            // 13 appears in the second scan (forked before 11 was traced).
            let mut v = vec![(11, 10), (99, 10), (100, 99)];
            if scans.get() > 1 {
                v.push((13, 11));
            }
            v
        };
        let mut sent = vec![];
        let t = Tree::scan(
            &[10],
            99,
            ppids,
            |n| {
                sent.push(n.to_vec());
                Ok(())
            },
            5,
        )
        .unwrap();
        assert_eq!(sent, [vec![10, 11], vec![13]]);
        assert_eq!(t.procs.iter().map(|p| p.tgid).collect::<Vec<_>>(), [10, 11, 13]);
        assert_eq!(scans.get(), 3);
    }

    #[test]
    fn system_scope_takes_everyone() {
        let mut t = Tree::system();
        assert_eq!(t.traced(7), Some(0));
        assert_eq!(t.traced(7), Some(0));
    }
}
