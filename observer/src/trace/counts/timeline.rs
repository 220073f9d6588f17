//! Live objects over time: one point per live row of a trace, and one at the end. A trace
//! with `-o` takes its points where the recording cuts a records chunk (at each live row,
//! and when a chunk is full), at the chunk's ms stamp, so its replay, one point per records
//! chunk, draws the same timeline. Live = allocations − frees so far in the traced
//! scope: objects that existed before the trace are not in it, so it can go below zero.
//! The model's columns count what a seed (-p, --cgroup) gave it too: live objects, never negative.
use crate::report::trace_doc::TimePoint;
use crate::trace::counts::slab::SlabCounts;

/// anon_vma / anon_vma_chain live counts (signed: see the module comment): the report's.
pub use crate::report::schema::Net;

fn net_of(c: &SlabCounts) -> Net {
    let net = |a: &crate::trace::counts::slab::AllocFree| a.alloc as i64 - a.free as i64;
    Net { anon_vma: net(&c.anon_vma), anon_vma_chain: net(&c.anon_vma_chain) }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Point {
    /// ms since the trace started.
    pub t_ms: u64,
    pub observed_live: Net,
    /// The fed model's eager and lazy live counts (None: the model is not fed).
    pub model_live: Option<(Net, Net)>,
}

impl Point {
    fn of(t_ms: u64, t: &crate::trace::Tracer) -> Point {
        // The model's live objects include what a seed (-p) gave it: never below zero.
        let model = |f: &crate::trace::feed::Feed| {
            let l = crate::trace::out::model_view::live_now(f);
            (Net { anon_vma: l[0], anon_vma_chain: l[1] }, Net { anon_vma: l[2], anon_vma_chain: l[3] })
        };
        Point { t_ms, observed_live: net_of(&t.tally.total), model_live: t.feed.as_ref().map(model) }
    }
}

#[derive(Default)]
pub struct Timeline {
    pub points: Vec<Point>,
}

impl Timeline {
    /// The points and a last one at `end_ms` with the final counts (unless the last point
    /// already says exactly that), so the series ends where the report's totals do.
    pub fn doc(&self, last: Point) -> Vec<TimePoint> {
        let mut points = self.points.clone();
        let end_ms = last.t_ms;
        if points.last().is_none_or(|p| p.observed_live != last.observed_live || p.model_live != last.model_live || p.t_ms < end_ms) {
            points.push(Point { t_ms: last.t_ms.max(points.last().map_or(0, |p| p.t_ms)), ..last });
        }
        points
            .iter()
            .map(|p| TimePoint { t_ms: p.t_ms, observed_live: p.observed_live, eager_live: p.model_live.map(|m| m.0), lazy_live: p.model_live.map(|m| m.1) })
            .collect()
    }
}

impl crate::trace::Tracer {
    pub fn push_point(&mut self, t_ms: u64) {
        let p = Point::of(t_ms, self);
        self.timeline.points.push(p);
    }

    /// The timeline as the report shows it, ending at `end_ms` with the final counts.
    pub fn timeline_json(&self, end_ms: u64) -> Vec<TimePoint> {
        self.timeline.doc(Point::of(end_ms, self))
    }

    /// A live row's point: with a recording, the records chunk the row just flushed (what a
    /// replay sees; none if nothing came since the last chunk), else the row's own time.
    pub fn row_point(&mut self, t_ms: u64) {
        match self.tap.as_mut().map(|w| w.flushed.take()) {
            Some(Some(ms)) => self.push_point(ms),
            Some(None) => {}
            None => self.push_point(t_ms),
        }
    }

    /// A records chunk the recording cut when full: a point, as its replay will have.
    pub fn tap_point(&mut self) {
        if let Some(ms) = self.tap.as_mut().and_then(|w| w.flushed.take()) {
            self.push_point(ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::counts::slab::AllocFree;

    fn point(t_ms: u64, av: (u64, u64), avc: (u64, u64)) -> Point {
        let c = SlabCounts { anon_vma: AllocFree { alloc: av.0, free: av.1 }, anon_vma_chain: AllocFree { alloc: avc.0, free: avc.1 }, ..Default::default() };
        Point { t_ms, observed_live: net_of(&c), model_live: None }
    }

    #[test]
    fn the_last_point_is_the_final_count() {
        let mut t = Timeline::default();
        t.points.push(point(1000, (3, 0), (5, 1)));
        let j = t.doc(point(1500, (3, 4), (5, 5)));
        assert_eq!(j.len(), 2);
        assert_eq!(j[0].observed_live, Net { anon_vma: 3, anon_vma_chain: 4 });
        assert_eq!((j[1].t_ms, j[1].observed_live), (1500, Net { anon_vma: -1, anon_vma_chain: 0 }));
        assert_eq!(j[1].eager_live, None, "no model fed");
        // Nothing after the last row: no second point for the same instant.
        let mut t = Timeline::default();
        t.points.push(point(2000, (1, 0), (1, 0)));
        assert_eq!(t.doc(point(2000, (1, 0), (1, 0))).len(), 1);
        // A replay's end (the trailer's elapsed) before a chunk stamp keeps time monotonic.
        let j = t.doc(point(1900, (1, 1), (1, 0)));
        assert_eq!(j[1].t_ms, 2000);
    }
}
