//! One turn of the trace's loop: read the ring buffer (held while the seed runs), feed a
//! slice of held records, retire exited processes' kernel counts, print a live row, and
//! say whether the trace has ended. A replay's turn is `replay::Recorded::poll`.
use super::{
    held::{seeded, HELD_SLICE},
    sight, Options, Records, Ring, Scope, Session,
};
use crate::trace::{out::render, tree::procfs::gone, Tracer};
use std::time::{Duration, Instant};

impl Session {
    /// One turn; `Some(why)` once the trace has ended (the command exited, every traced
    /// process is gone, a signal, or -d elapsed; a replay's records are all in).
    pub fn poll(&mut self) -> anyhow::Result<Option<&'static str>> {
        match &mut self.records {
            Records::Ring(r) => r.poll(&mut self.tracer, &self.opts),
            Records::Recording(r) => r.poll(&mut self.tracer),
        }
    }
}

impl Ring {
    fn poll(&mut self, tracer: &mut Tracer, opts: &Options) -> anyhow::Result<Option<&'static str>> {
        let now = Instant::now();
        let mut wait = self.next_row.saturating_duration_since(now).min(Duration::from_millis(50));
        if matches!(self.seeding, Some((None, _))) {
            // Held records to feed: only what is in the ring now.
            wait = Duration::ZERO;
        }
        let (seeding, by_cgroup) = (&mut self.seeding, &mut self.by_cgroup);
        self.loaded.poll(wait, |b| match seeding.as_mut() {
            Some((_, h)) => h.push(b),
            None => {
                tracer.record(b);
                sight(by_cgroup, tracer);
            }
        });
        if seeding.as_ref().is_some_and(|(r, _)| r.as_ref().is_some_and(|r| r.done())) {
            seeded(tracer, seeding)?;
        }
        if let Some((None, held)) = seeding.as_mut() {
            if held.feed(tracer, HELD_SLICE, &mut |t| sight(by_cgroup, t)) {
                *seeding = None;
                self.next_row = self.next_row.max(Instant::now());
            }
        }
        if self.seeding.is_none() && tracer.kernel_counts.retire_due() {
            tracer.sync_seen();
        }
        // The first live row comes once the processes running are seeded.
        if self.seeding.is_none() && Instant::now() >= self.next_row {
            self.live_row(tracer, opts)?;
        }
        if let Some(h) = &self.held {
            if let Some(s) = h.try_wait() {
                self.status = Some(s);
                return Ok(Some("command exit"));
            }
        }
        if matches!(self.scope, Scope::Pids | Scope::Cgroup) && tracer.tree.procs.iter().all(|p| gone(p.tgid)) {
            return Ok(Some("all traced processes exited"));
        }
        if crate::interrupt::count() > 0 {
            return Ok(Some("signal"));
        }
        if opts.duration.is_some_and(|d| self.start.elapsed() >= d) {
            return Ok(Some("duration"));
        }
        Ok(None)
    }

    fn live_row(&mut self, tracer: &mut Tracer, opts: &Options) -> anyhow::Result<()> {
        let (_, lost) = self.loaded.counters()?;
        if !std::mem::replace(&mut self.header, true) {
            render::live_header(&mut self.live)?;
        }
        let t_ms = self.start.elapsed().as_millis();
        // The row holds what every CPU counted so far, not only what left its front.
        if tracer.kernel_front.is_some() {
            crate::trace::ingest::front::flush();
        }
        tracer.sync_seen();
        render::live_row(tracer, t_ms, lost, &mut self.live)?;
        tracer.interval = Default::default();
        tracer.locks.interval = None;
        self.next_row += opts.interval;
        if let Some(w) = tracer.tap.as_mut() {
            w.flush(&tracer.syms)?;
        }
        tracer.row_point(t_ms as u64);
        Ok(())
    }
}
