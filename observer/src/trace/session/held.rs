//! Records read while the seeding pass runs: held in order, fed once the pass is in.
use crate::trace::{feed::seed::Running, Tracer};

/// Records read while the seeding pass runs, in order; once it is in, fed a slice per
/// loop turn (`feed`), the ring buffer drained between slices, until none is left.
#[derive(Default)]
pub struct Held {
    bytes: Vec<u8>,
    ends: Vec<usize>,
    /// Records fed so far.
    next: usize,
}

impl Held {
    pub fn push(&mut self, b: &[u8]) {
        self.bytes.extend_from_slice(b);
        self.ends.push(self.bytes.len());
    }

    /// Feed up to `n` held records; true once none is left.
    pub fn feed(&mut self, tracer: &mut Tracer, n: usize, sight: &mut impl FnMut(&Tracer)) -> bool {
        let stop = (self.next + n).min(self.ends.len());
        for k in self.next..stop {
            let from = if k == 0 { 0 } else { self.ends[k - 1] };
            tracer.record(&self.bytes[from..self.ends[k]]);
            sight(tracer);
        }
        self.next = stop;
        self.next == self.ends.len()
    }
}

/// The seeding pass (while `Some`), and the records held meanwhile.
pub type Seeding = Option<(Option<Running>, Held)>;

/// Held records fed per loop turn: a few ms of the model's work.
pub const HELD_SLICE: usize = 4096;

/// The pass is in: its seed goes to the feed (and the recording, before any record, where a
/// replay installs it); the held records follow (`Held::feed`).
pub fn seeded(tracer: &mut Tracer, seeding: &mut Seeding) -> anyhow::Result<()> {
    let Some((running, _)) = seeding.as_mut() else { return Ok(()) };
    let Some(pending) = running.take().map(|r| r.join()) else { return Ok(()) };
    if let Some(w) = tracer.tap.as_mut() {
        w.seed(&pending.record());
    }
    if let Some(f) = tracer.feed.as_mut() {
        f.seed = Some(pending);
    }
    Ok(())
}
