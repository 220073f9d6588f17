//! The end and the report. A live trace ends at one point: the end marker and a short
//! grace, the programs detached and drained, the kernel's final counts read, the
//! recording's trailer. A replay's end is its recording's (`replay::Recorded::finish`).
//! Both then report the same way.
use super::{held::seeded, sight, Options, Records, Ring, Session};
use crate::{
    record::{
        format::{MapStats, Trailer},
        meta,
    },
    trace::{counts::locks, ingest::stats, tree::command::Status, Tracer},
};
use std::time::{Duration, Instant};

/// How a session ended, for its report.
pub(super) struct End {
    /// None: a recording cut short (the end reason and lost-event counters unknown).
    pub trailer: Option<Trailer>,
    /// The elapsed time when the trailer does not say it (a cut recording's last chunk).
    pub last_ms: u64,
    /// A replay's recording.
    pub source: Option<meta::Source>,
    /// What only a live trace adds (`report` is the session's).
    pub live: meta::Live,
}

impl Session {
    /// The end (`ended_by`: what `poll` said) and the report.
    pub fn finish(self, ended_by: &'static str) -> anyhow::Result<()> {
        let Session { opts, mut tracer, about, backend, records } = self;
        let mut end = match records {
            Records::Ring(r) => r.finish(&mut tracer, &opts, ended_by)?,
            Records::Recording(r) => r.finish(&mut tracer),
        };
        meta::finish(&mut tracer, &about, end.trailer.as_ref());
        end.live.report = opts.report.clone();
        meta::print(&mut tracer, &about, &backend, end.trailer.as_ref(), end.last_ms, opts.json, end.source.as_ref(), &end.live)
    }
}

impl Ring {
    fn finish(self: Box<Self>, tracer: &mut Tracer, opts: &Options, ended_by: &'static str) -> anyhow::Result<End> {
        let Ring { mut loaded, held, mut seeding, mut by_cgroup, stats_on, markers, start, status, .. } = *self;
        // Ended while seeding: the pass ends soon, and what was held goes first.
        seeded(tracer, &mut seeding)?;
        if let Some((_, held)) = seeding.as_mut() {
            held.feed(tracer, usize::MAX, &mut |t| sight(&mut by_cgroup, t));
        }
        // Everything the exited processes did was committed before they were reaped.
        let elapsed_ms = start.elapsed().as_millis();
        let prog_stats = stats_on.map(|on| {
            let s = stats::read(loaded.ebpf_mut());
            drop(on);
            s
        });
        let lock_counters = locks::counters(loaded.ebpf_mut());
        // The end as one point: the programs detach one by one (each link's release waits for
        // the kernel, ~180 ms in all on 2 CPUs), and a process busy meanwhile would have part of
        // an operation counted and part not (seen: a brk trim's anon_vma_chain clone counted,
        // its unlink and syscall record gone). Nothing after the end marker counts; what was in
        // flight across it is flagged. A short grace lets such operations finish while every
        // program still sees them.
        if markers {
            crate::trace::feed::seed::marker(crate::trace::feed::seed::END_OF_TRACE);
            let until = Instant::now() + Duration::from_secs(2);
            let mut grace: Option<Instant> = None;
            while grace.is_none_or(|g| Instant::now() < g) && Instant::now() < until {
                loaded.poll(Duration::from_millis(20), |b| {
                    tracer.record(b);
                    sight(&mut by_cgroup, tracer);
                });
                if tracer.ended.is_some() && grace.is_none() {
                    grace = Some(Instant::now() + Duration::from_millis(100));
                }
            }
        }
        loaded.detach();
        loaded.drain(&mut |b: &[u8]| {
            tracer.record(b);
            sight(&mut by_cgroup, tracer);
        });
        // Detached and drained: the kernel's counts are final, and every marker is in.
        tracer.sync_end();
        sight(&mut by_cgroup, tracer);
        tracer.finish();
        let (sent, lost) = loaded.counters()?;
        let objects_full = loaded.objects_full();
        let tally_full = loaded.tally_full();
        drop(loaded);
        let status = status.or_else(|| held.as_ref().and_then(|h| h.try_wait()));
        let trailer = Trailer {
            ended_by: ended_by.into(),
            exit_status: match status {
                Some(Status::Exited(c)) => Some(c),
                _ => None,
            },
            signal: match status {
                Some(Status::Signaled(s)) => Some(s),
                _ => None,
            },
            elapsed_ms: elapsed_ms as u64,
            sent,
            lost,
            records: tracer.received,
            lock_counters,
            kernel_counts: tracer.kernel_tally.is_some().then_some(MapStats { full: tally_full, retired: tracer.kernel_counts.retired }),
        };
        say_map_limits(tracer, tally_full, objects_full);
        if let Some(w) = tracer.tap.take() {
            let w = w.finish(&tracer.syms, trailer.clone())?;
            if let Some(ms) = w.flushed {
                tracer.push_point(ms);
            }
            eprintln!("lazyvma: {}", w.summary());
        }
        let live = meta::Live {
            groups: by_cgroup.map(|b| meta::Groups { rows: b.rows(&tracer.tally, &tracer.sizes), cap: opts.cgroup_cap }),
            bpf_stats: prog_stats,
            report: None,
        };
        Ok(End { trailer: Some(trailer), last_ms: elapsed_ms as u64, source: None, live })
    }
}

/// What the kernel's maps could not hold, each with what it costs the counts.
fn say_map_limits(tracer: &Tracer, tally_full: u64, objects_full: u64) {
    if tally_full > 0 {
        eprintln!("lazyvma: the kernel's slab count map was full: {tally_full} slab events were sent instead (all counted)");
    }
    if tracer.kernel_counts.unattributed > 0 {
        eprintln!(
            "lazyvma: {} slab events the kernel counted for a process the trace never saw start (not in the per-process counts)",
            tracer.kernel_counts.unattributed
        );
    }
    if let Some(e) = &tracer.kernel_counts.retire_error {
        eprintln!("lazyvma: deleting an exited process's counts from the kernel's slab count map failed ({e}): the map kept them and could fill");
    }
    if tracer.kernel_counts.recycled_unsynced > 0 {
        eprintln!(
            "lazyvma: {} forks reused a tgid too soon after the last read of the kernel's counts: the old and new process's slab counts of one phase may be merged",
            tracer.kernel_counts.recycled_unsynced
        );
    }
    if objects_full > 0 {
        eprintln!("lazyvma: {objects_full} objects of the traced processes did not fit the kernel's set: a free of one of them from outside the scope (ksmd, another process's mmput) was not seen");
    }
}
