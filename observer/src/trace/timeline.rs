//! Live objects over time: one point per live row of a trace, and one at the end. A trace
//! with `-o` takes its points where the recording cuts a records chunk (at each live row,
//! and when a chunk is full), at the chunk's ms stamp, so its replay, one point per records
//! chunk, draws the same timeline. Live = allocations − frees so far in the traced
//! scope: objects that existed before the trace are not in it, so it can go below zero.
use super::slab::Counts;
use serde_json::{json, Value};

/// anon_vma / anon_vma_chain live counts (signed: see the module comment).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Net {
    pub anon_vma: i64,
    pub anon_vma_chain: i64,
}

impl Net {
    pub fn of(c: &Counts) -> Net {
        let net = |a: &super::slab::AllocFree| a.alloc as i64 - a.free as i64;
        Net { anon_vma: net(&c.anon_vma), anon_vma_chain: net(&c.anon_vma_chain) }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Point {
    /// ms since the trace started.
    pub t_ms: u64,
    pub observed_live: Net,
}

#[derive(Default)]
pub struct Timeline {
    pub points: Vec<Point>,
}

impl Timeline {
    pub fn push(&mut self, t_ms: u64, total: &Counts) {
        self.points.push(Point { t_ms, observed_live: Net::of(total) });
    }

    /// The points and a last one at `end_ms` with the final counts (unless the last point
    /// already says exactly that), so the series ends where the report's totals do.
    pub fn json(&self, end_ms: u64, total: &Counts) -> Value {
        let mut points = self.points.clone();
        let last = Point { t_ms: end_ms, observed_live: Net::of(total) };
        if points.last().is_none_or(|p| p.observed_live != last.observed_live || p.t_ms < end_ms) {
            points.push(Point { t_ms: last.t_ms.max(points.last().map_or(0, |p| p.t_ms)), ..last });
        }
        points
            .iter()
            .map(|p| {
                json!({
                    "t_ms": p.t_ms,
                    "observed_live": { "anon_vma": p.observed_live.anon_vma, "anon_vma_chain": p.observed_live.anon_vma_chain },
                    // The model's columns; filled once trace feeds it.
                    "eager_live": null,
                    "lazy_live": null,
                })
            })
            .collect()
    }
}

impl super::Tracer {
    /// A live row's point: with a recording, the records chunk the row just flushed (what a
    /// replay sees; none if nothing came since the last chunk), else the row's own time.
    pub fn row_point(&mut self, t_ms: u64) {
        match self.tap.as_mut().map(|w| w.flushed.take()) {
            Some(Some(ms)) => self.timeline.push(ms, &self.tally.total),
            Some(None) => {}
            None => self.timeline.push(t_ms, &self.tally.total),
        }
    }

    /// A records chunk the recording cut when full: a point, as its replay will have.
    pub fn tap_point(&mut self) {
        if let Some(ms) = self.tap.as_mut().and_then(|w| w.flushed.take()) {
            self.timeline.push(ms, &self.tally.total);
        }
    }
}

/// A replay: every recorded record through the tracer, a point after each records chunk.
pub fn replay(t: &mut super::Tracer, rec: &crate::record::reader::Recording) {
    let mut stamps = rec.stamps.iter().peekable();
    for (i, r) in rec.records().enumerate() {
        t.record(r);
        while let Some(&(_, ms)) = stamps.next_if(|(end, _)| *end == i + 1) {
            t.timeline.push(ms, &t.tally.total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::slab::AllocFree;

    fn counts(av: (u64, u64), avc: (u64, u64)) -> Counts {
        Counts { anon_vma: AllocFree { alloc: av.0, free: av.1 }, anon_vma_chain: AllocFree { alloc: avc.0, free: avc.1 }, ..Default::default() }
    }

    #[test]
    fn the_last_point_is_the_final_count() {
        let mut t = Timeline::default();
        t.push(1000, &counts((3, 0), (5, 1)));
        let j = t.json(1500, &counts((3, 4), (5, 5)));
        let pts = j.as_array().unwrap();
        assert_eq!(pts.len(), 2);
        assert_eq!(pts[0]["observed_live"], json!({"anon_vma": 3, "anon_vma_chain": 4}));
        assert_eq!((pts[1]["t_ms"].as_u64(), &pts[1]["observed_live"]), (Some(1500), &json!({"anon_vma": -1, "anon_vma_chain": 0})));
        // Nothing after the last row: no second point for the same instant.
        let mut t = Timeline::default();
        t.push(2000, &counts((1, 0), (1, 0)));
        assert_eq!(t.json(2000, &counts((1, 0), (1, 0))).as_array().unwrap().len(), 1);
        // A replay's end (the trailer's elapsed) before a chunk stamp keeps time monotonic.
        let j = t.json(1900, &counts((1, 1), (1, 0)));
        assert_eq!(j[1]["t_ms"], 2000);
    }
}
