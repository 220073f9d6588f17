//! Snapshot passes on a fixed period; each one replaces every object gauge at once.
use super::{
    metrics::{Gauges, Metrics},
    scope::Scope,
};
use crate::load::btf::Offsets;
use crate::snapshot::{self, Report};
use lazyvma_model::sizes::Sizes;
use lazyvma_model::snapshot::LiveObjects;
use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime},
};

pub struct Passes {
    pub btf: Option<PathBuf>,
    /// Resolved once at serve's start (`load::facts`): no pass parses the BTF for them.
    offsets: Option<Offsets>,
    /// Read once at serve's start: every pass prices with them.
    sizes: Sizes,
    pub interval: Duration,
    pub metrics: Arc<Metrics>,
    scope: Arc<Scope>,
    generation: i64,
    /// The scope's members now (`refreshed_by`).
    refresh: Option<Box<dyn FnMut() -> anyhow::Result<Vec<u32>> + Send>>,
}

/// The whole system's totals, or the sum over the scope's processes: their own anon_vmas
/// and chains, each VMA's lazy state read off the whole-system topology.
fn gauges(r: &Report) -> Gauges {
    let e = &r.estimate;
    // Processes the iter/task pass walked in part, in the scope: the count and their VMAs unseen.
    let cut = r.stats.cut.iter().filter(|c| !r.selected || r.shown.iter().any(|p| p.pid == c.pid));
    let (incomplete_processes, unseen_vmas) = cut.fold((0, 0), |(n, v), c| (n + 1, v + c.map_count.saturating_sub(c.vmas_seen)));
    if !r.selected {
        return Gauges {
            eager: e.eager,
            lazy: e.lazy,
            states: e.states,
            truncated_vmas: e.truncated_vmas,
            incomplete_processes,
            unseen_vmas,
            processes: e.processes.len() as u64,
        };
    }
    let sum = |f: fn(&lazyvma_model::snapshot::ProcessEstimate) -> LiveObjects| {
        r.shown
            .iter()
            .map(f)
            .fold(LiveObjects::default(), |a, c| LiveObjects { anon_vma: a.anon_vma + c.anon_vma, anon_vma_chain: a.anon_vma_chain + c.anon_vma_chain })
    };
    let mut g = Gauges {
        eager: sum(|p| p.eager),
        lazy: sum(|p| p.lazy),
        states: [0; 4],
        truncated_vmas: 0,
        incomplete_processes,
        unseen_vmas,
        processes: r.shown.len() as u64,
    };
    for i in r.shown.iter().filter_map(|p| r.index(p.pid)) {
        for (g, s) in g.states.iter_mut().zip(r.states[i]) {
            *g += s;
        }
        g.truncated_vmas += r.truncated[i];
    }
    g
}

impl Passes {
    pub fn new(btf: Option<PathBuf>, offsets: Option<Offsets>, sizes: Sizes, interval: Duration, metrics: Arc<Metrics>, scope: Arc<Scope>) -> Passes {
        Passes { btf, offsets, sizes, interval, metrics, scope, generation: 0, refresh: None }
    }

    /// Each pass first adds the scope's members as `refresh` finds them then (serve
    /// --snapshot-only: no trace follows the forks).
    pub fn refreshed_by(mut self, refresh: Box<dyn FnMut() -> anyhow::Result<Vec<u32>> + Send>) -> Passes {
        self.refresh = Some(refresh);
        self
    }

    /// One whole-system pass, restricted to the scope; the gauges change only if it succeeds.
    pub fn pass(&mut self) -> anyhow::Result<()> {
        let t0 = Instant::now();
        if let Some(refresh) = self.refresh.as_mut() {
            self.scope.join(&refresh()?);
        }
        let pids = self.scope.pids();
        // Streamed: no VMA is kept, the scope's states come per process.
        let snap = snapshot::run(self.btf.as_deref(), self.offsets.as_ref(), &self.sizes, pids.as_deref(), false, false)?;
        let secs = t0.elapsed().as_secs_f64();
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        self.generation += 1;
        self.metrics.set_snapshot(&gauges(&snap), &snap.sizes, self.generation, secs, now);
        Ok(())
    }

    /// Until `stop`: a pass every interval from the start of the previous one (at once if a
    /// pass overran). A failed pass is counted and reported; the next one is tried anyway.
    pub fn run(mut self, stop: Arc<AtomicBool>) {
        let mut next = Instant::now() + self.interval;
        while !stop.load(Ordering::SeqCst) {
            if Instant::now() < next {
                std::thread::sleep(next.saturating_duration_since(Instant::now()).min(Duration::from_millis(50)));
                continue;
            }
            next = Instant::now() + self.interval;
            if let Err(e) = self.pass() {
                self.metrics.pass_failures.inc();
                eprintln!("lazyvma: snapshot pass failed (gauges keep the last good pass): {e:#}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::decode::{Cut, PassStats};
    use lazyvma_model::snapshot::{Estimate, ProcessEstimate};

    fn report(selected: bool) -> Report {
        let p = |pid| ProcessEstimate { pid, comm: String::new(), vmas: 256, eager: LiveObjects::default(), lazy: LiveObjects::default() };
        let cut = |pid, vmas_seen, map_count| Cut { pid, tid: pid, vmas_seen, map_count, why: "steps" };
        let estimate = Estimate { processes: vec![p(10), p(20), p(30)], ..Default::default() };
        Report {
            shown: if selected { vec![p(10), p(30)] } else { estimate.processes.clone() },
            estimate,
            selected,
            sizes: Sizes::spec_x86_64(),
            slab: vec![],
            stats: PassStats { cut: vec![cut(10, 256, 2013), cut(20, 300, 400)], ..Default::default() },
            elapsed_ms: 0.0,
            phases_ms: [("btf", 0.0), ("load", 0.0), ("iterate_and_estimate", 0.0)],
            kernel: String::new(),
            vmas: Default::default(),
            chain_lens: Default::default(),
            topology: None,
            states: vec![[0; 4]; 3],
            truncated: vec![0; 3],
        }
    }

    /// 5.10's cut processes: every one for the whole system, the scope's own with -p/--cgroup.
    #[test]
    fn incomplete_processes_follow_the_scope() {
        let g = gauges(&report(false));
        assert_eq!((g.incomplete_processes, g.unseen_vmas), (2, 1757 + 100));
        let g = gauges(&report(true));
        assert_eq!((g.incomplete_processes, g.unseen_vmas, g.processes), (1, 1757, 2));
    }
}
