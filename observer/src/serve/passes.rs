//! Snapshot passes on a fixed period; each one replaces every object gauge at once.
use super::metrics::Metrics;
use crate::snapshot;
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
    pub interval: Duration,
    pub metrics: Arc<Metrics>,
    generation: i64,
}

impl Passes {
    pub fn new(btf: Option<PathBuf>, interval: Duration, metrics: Arc<Metrics>) -> Passes {
        Passes { btf, interval, metrics, generation: 0 }
    }

    /// One whole-system pass; the gauges change only if it succeeds.
    pub fn pass(&mut self) -> anyhow::Result<()> {
        let t0 = Instant::now();
        let snap = snapshot::run(self.btf.as_deref(), None, false)?;
        let secs = t0.elapsed().as_secs_f64();
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        self.generation += 1;
        self.metrics.set_snapshot(&snap, self.generation, secs, now);
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
