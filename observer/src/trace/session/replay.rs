//! A session whose records come from a `trace -o` recording (`lazyvma replay`): no root, no
//! BPF. The recording's header stands for what `start` found, its records for the ring
//! buffer, its trailer for the live end; the report is the live trace's (`finish`).
use super::{finish::End, Options, Records, Session};
use crate::{
    exit::ExitCode,
    record::{meta, reader::Recording},
    trace::{ingest::symbols::Symbols, Tracer},
};
use anyhow::Context;
use std::path::Path;

/// Records fed per turn: a signal is looked for between turns.
const BATCH: usize = 4096;

/// A recording being replayed: the records fed so far and the chunk stamps passed.
pub(super) struct Recorded {
    path: String,
    rec: Recording,
    next: usize,
    stamp: usize,
}

impl Session {
    /// The session of the recording at `path`: its tree, symbols, sizes and settings, the
    /// model re-seeded (-p / --cgroup) from its snapshot under `opts.knobs`.
    pub fn replay(file: &Path, opts: Options) -> anyhow::Result<Session> {
        let path = file.display().to_string();
        let data = crate::safe_out::read(file).with_context(|| format!("cannot read recording {path}"))?;
        let rec = crate::record::reader::read(&path, data)?;
        let h = &rec.header;
        let backend = h.backend.iter().map(|c| c.choice()).collect::<Result<Vec<_>, _>>().map_err(|e| anyhow::anyhow!("recording {path}: header: {e}"))?;
        let mut tracer = super::tracer(h, Symbols::from_entries(rec.symbols.clone()), h.sizes(), &opts);
        if let Some(f) = tracer.feed.as_mut() {
            // -p / --cgroup: re-seeded from the recorded pass, under this replay's knobs.
            match &rec.seed {
                Some(s) => f.seed = Some(crate::trace::feed::seed::Pending::replayed(s, opts.knobs)),
                None if matches!(h.scope.as_str(), "pids" | "cgroup") => f.coverage.incomplete.push(format!(
                    "the recording (format {}.{}) keeps no snapshot: the processes running at the start are not seeded in this replay",
                    rec.major, rec.minor
                )),
                None => {}
            }
        }
        let about = rec.header.clone();
        let recorded = Recorded { path, rec, next: 0, stamp: 0 };
        Ok(Session { opts, tracer, about, backend, records: Records::Recording(Box::new(recorded)) })
    }
}

impl Recorded {
    /// The next batch of records through the tracer, a timeline point after each records
    /// chunk (as the live trace took one where it cut the chunk); `Some` once all are in.
    /// A signal stops the replay with no report: nothing half-counted is printed or written
    /// as if it were the recording's.
    pub(super) fn poll(&mut self, t: &mut Tracer) -> anyhow::Result<Option<&'static str>> {
        let count = self.rec.record_count();
        if self.next < count && crate::interrupt::count() > 0 {
            let (path, n) = (&self.path, self.next);
            return Err(anyhow::anyhow!("replay of {path} stopped by a signal after {n} of {count} records: no report").context(ExitCode(130)));
        }
        let stop = (self.next + BATCH).min(count);
        for i in self.next..stop {
            t.record(self.rec.record(i).expect("below the record count"));
            while let Some(&(_, ms)) = self.rec.stamps.get(self.stamp).filter(|(end, _)| *end == i + 1) {
                t.push_point(ms);
                self.stamp += 1;
            }
        }
        self.next = stop;
        Ok((stop == count).then_some("end of recording"))
    }

    /// The recording's end: its trailer (none if it was cut short) and where it came from.
    pub(super) fn finish(self: Box<Self>, t: &mut Tracer) -> End {
        let Recorded { path, rec, .. } = *self;
        t.finish();
        match &rec.trailer {
            None => eprintln!(
                "lazyvma: recording cut short after chunk {}: {} bytes lost (no trailer: the end reason and lost-event counters are unknown)",
                rec.chunks, rec.lost_bytes
            ),
            Some(tr) if tr.records != rec.record_count() as u64 => {
                eprintln!("lazyvma: recording {path}: the trailer counts {} records but {} were read", tr.records, rec.record_count())
            }
            Some(_) => {}
        }
        let source = meta::Source {
            version: format!("{}.{}", rec.major, rec.minor),
            bytes: rec.bytes(),
            chunks: rec.chunks,
            records: rec.record_count(),
            complete: rec.complete(),
            lost_bytes: rec.lost_bytes,
            path,
        };
        End { trailer: rec.trailer, last_ms: rec.last_ms, source: Some(source), live: meta::Live::default() }
    }
}
