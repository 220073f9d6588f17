//! The trace thread: polls the ring buffer into counters until told to stop, then detaches,
//! drains and accounts for every record the programs sent.
use super::{events::Counter, metrics::Metrics};
use crate::trace::ingest::bpf::Loaded;
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

/// Longest wait for records: also how late a stop request is seen.
const POLL: Duration = Duration::from_millis(100);

pub fn run(mut loaded: Loaded, mut counter: Counter, metrics: Arc<Metrics>, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let mut seen = (0, 0);
    while !stop.load(Ordering::SeqCst) {
        loaded.poll(POLL, |b| counter.record(b));
        sync(&loaded, &metrics, &mut seen)?;
        counter.aggregated(&loaded.slab_counts()?);
    }
    loaded.detach();
    loaded.drain(&mut |b: &[u8]| counter.record(b));
    sync(&loaded, &metrics, &mut seen)?;
    counter.aggregated(&loaded.slab_counts()?);
    Ok(())
}

/// The kernel-side totals (sent, lost) become counter increments.
fn sync(loaded: &Loaded, metrics: &Metrics, seen: &mut (u64, u64)) -> anyhow::Result<()> {
    let (sent, lost) = loaded.counters()?;
    metrics.events.sent.inc_by(sent.saturating_sub(seen.0));
    metrics.events.lost.inc_by(lost.saturating_sub(seen.1));
    *seen = (sent.max(seen.0), lost.max(seen.1));
    Ok(())
}
