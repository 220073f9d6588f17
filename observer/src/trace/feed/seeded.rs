//! Seeding: processes running before the trace, modelled from the snapshot taken at its
//! start (`trace/feed/seed.rs` takes it and builds their models; this applies the result when
//! the end marker comes). Apart because only -p and --cgroup traces have it.
use super::{Feed, Proc};
use crate::trace::{counts::slab::At, tree::pids::Tree};

impl Feed {
    /// The trace seeds (or seeded) running processes from a snapshot.
    pub(super) fn seeding(&self) -> bool {
        self.seed.is_some() || self.seed_done
    }

    /// Why `proc`, never modelled, is not.
    pub(super) fn why_not(&self, tree: &Tree, proc: usize) -> String {
        let p = tree.get(proc);
        if let Some(why) = self.coverage.not_seeded.get(&p.tgid) {
            return format!("running before the trace and not seeded: {why}");
        }
        if self.unfollowed.contains(&proc) {
            return match p.execs {
                0 => "forked while the trace's programs were attaching (before the seed's TRACED marker), never exec'd after: what it did then was not all recorded".into(),
                _ => "forked while the trace's programs were attaching (before the seed's TRACED marker); its exec too began before them".into(),
            };
        }
        match p.parent {
            Some(parent) if !self.ever.contains(&parent) => {
                format!("forked by tgid {}, itself not modelled, and never exec'd", tree.get(parent).tgid)
            }
            // A vfork child of a modelled parent is modelled (`borrowed`).
            _ => "neither forked by a modelled process nor exec'd since the trace began".into(),
        }
    }

    pub(super) fn touched(&mut self, tgid: u32, what: &str) {
        if let Some(p) = self.seed.as_mut() {
            p.touched(tgid, what);
        }
    }

    /// A phase marker from `tgid`: lazyvma's own bracket the snapshot pass. `observed`: the
    /// slab tally's rows so far (what a seeded process did before its seed).
    pub fn seed_marker(&mut self, tree: &Tree, observed: &[crate::trace::counts::slab::PhaseRow], tgid: u32, id: u32) {
        let Some(p) = self.seed.as_mut().filter(|p| p.tgid == tgid) else { return };
        if id == crate::trace::feed::seed::TRACED || id == crate::trace::feed::seed::START {
            p.followed = true;
            p.inside |= id == crate::trace::feed::seed::START;
            return;
        }
        if id != crate::trace::feed::seed::END {
            return;
        }
        for (mm, item) in self.order.drain() {
            self.run(mm, item);
        }
        let p = self.seed.take().expect("pending");
        self.seed_done = true;
        self.coverage.seed_pass_us = p.pass_us;
        let ever = std::mem::take(&mut self.ever);
        let out = p.end(tree, self.kernel, &mut self.pair, |proc| ever.contains(&proc));
        self.ever = ever;
        self.seeded_live = out.live;
        self.partial.extend(out.partial);
        self.seed_start = out.start;
        for (proc, tgid) in out.seeded {
            self.procs.insert(proc, Proc::default());
            // An exec before the pass started no model (`exec`): the snapshot holds its image.
            self.unfollowed.remove(&proc);
            self.ever.insert(proc);
            self.coverage.modelled += 1;
            self.coverage.seeded.push(tgid);
            for r in observed.iter().filter(|r| r.proc == proc) {
                let i = self.row(At { proc, tgid, phase: r.phase });
                self.rows[i].before_seed = r.counts;
            }
        }
        self.coverage.not_seeded = out.reasons;
    }
}
