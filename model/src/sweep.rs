//! "Rules that matter" (issue 5): one event stream re-run under every value of every lazy
//! knob, the others at their base value, to show which of the series' open rules change
//! the savings on this workload.
//!
//! Eager does not read the knobs, so its counts are the baseline of every row; each run
//! still replays it (a `Pair` feeds both models one event at a time) and the sweep fails
//! if any run's eager counts differ from the first. A value equal to the base is not
//! re-run: its row is the base run's.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::counts::{Counter, Counts};
use crate::engine::ModelError;
use crate::event::{Event, Pid};
use crate::kernel::Kernel;
use crate::knobs::{Knobs, KNOBS};
use crate::lazy::History;
use crate::pair::Pair;
use crate::seed::{Prepared, Seed, SeedError};
use crate::topology::Topology;

/// Allocations, frees and the most ever live of one object kind over the stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub alloc: u64,
    pub free: u64,
    pub peak: u64,
}

impl From<Counter> for Tally {
    fn from(c: Counter) -> Tally {
        Tally { alloc: c.alloc, free: c.free, peak: c.peak }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Objects {
    pub anon_vma: Tally,
    pub anon_vma_chain: Tally,
    /// Lazy folios can keep merged-away or unmapped VMAs' structs alive (`lazy_folio_pins_vma`).
    pub vm_area_struct: Tally,
}

impl From<&Counts> for Objects {
    fn from(c: &Counts) -> Objects {
        Objects { anon_vma: c.anon_vma.into(), anon_vma_chain: c.anon_vma_chain.into(), vm_area_struct: c.vm_area_struct.into() }
    }
}

/// Eager minus lazy (negative: the lazy rule costs more than today's kernel).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    pub anon_vma_allocs: i64,
    pub anon_vma_chain_allocs: i64,
    pub anon_vma_peak: i64,
    pub anon_vma_chain_peak: i64,
    pub vm_area_struct_peak: i64,
}

/// One knob value's run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    /// This is the value the other rows hold the knob at.
    pub base: bool,
    pub lazy: Objects,
    pub saved: Saved,
}

impl Row {
    pub fn new(base: bool, eager: &Objects, lazy: Objects) -> Row {
        let d = |e: u64, l: u64| e as i64 - l as i64;
        let saved = Saved {
            anon_vma_allocs: d(eager.anon_vma.alloc, lazy.anon_vma.alloc),
            anon_vma_chain_allocs: d(eager.anon_vma_chain.alloc, lazy.anon_vma_chain.alloc),
            anon_vma_peak: d(eager.anon_vma.peak, lazy.anon_vma.peak),
            anon_vma_chain_peak: d(eager.anon_vma_chain.peak, lazy.anon_vma_chain.peak),
            vm_area_struct_peak: d(eager.vm_area_struct.peak, lazy.vm_area_struct.peak),
        };
        Row { base, lazy, saved }
    }
}

/// The sweep: `sweep[knob][value]`, eager's baseline, and the base run's lazy-VMA histories.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sweep {
    pub eager: Objects,
    pub sweep: BTreeMap<String, BTreeMap<String, Row>>,
    pub lazy_vma_history: History,
    /// `sweep[knob][value]` rows that could not start (a seeded trace: the seed refuses
    /// some knob values), with why. Empty for a sweep from an empty model.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub not_run: BTreeMap<String, BTreeMap<String, String>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SweepError {
    #[error("event {index} ({event}): {source}")]
    Event { index: usize, event: String, source: ModelError },
    #[error("the eager model counted differently with {knob}={value}: eager must not depend on lazy knobs")]
    EagerDiffers { knob: String, value: String },
    #[error("the base knobs' start: {0}")]
    Start(String),
    #[error("stopped after {done} of {runs} runs")]
    Stopped { done: usize, runs: usize },
}

/// Where a sweep is, for a progress line; the caller's answer `false` stops it
/// ([`SweepError::Stopped`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Runs finished, of `runs` (the base run, then one per value other than the base's).
    pub done: usize,
    pub runs: usize,
    /// Events applied in the current run, of `events`.
    pub event: usize,
    pub events: usize,
}

impl Progress {
    pub fn fraction(&self) -> f64 {
        let total = (self.runs * self.events).max(1);
        (self.done * self.events + self.event) as f64 / total as f64
    }
}

/// How often within a run the caller is asked (a run over millions of events takes seconds).
const TICK_EVENTS: usize = 1 << 15;

/// The caller's view of a sweep: told where it is, it says whether to go on.
pub type Tick<'a> = &'a mut dyn FnMut(Progress) -> bool;

/// Runs in a sweep from `base`: the base run and every other value of every knob.
pub fn runs(base: &Knobs) -> usize {
    let held = base.pairs();
    1 + KNOBS.iter().map(|(n, values)| values.iter().filter(|v| !held.contains(&(*n, **v))).count()).sum::<usize>()
}

struct Run {
    eager: Objects,
    lazy: Objects,
    history: History,
}

/// Alloc and free since `start` (what the events did, not a seed); peak is the most ever
/// live, seeded objects included.
fn since(end: &Counts, start: &Counts) -> Objects {
    let t = |e: Counter, s: Counter| Tally { alloc: e.alloc - s.alloc, free: e.free - s.free, peak: e.peak };
    Objects {
        anon_vma: t(end.anon_vma, start.anon_vma),
        anon_vma_chain: t(end.anon_vma_chain, start.anon_vma_chain),
        vm_area_struct: t(end.vm_area_struct, start.vm_area_struct),
    }
}

fn run(mut p: Pair, events: &[Event], done: usize, runs: usize, tick: Tick) -> Result<Run, SweepError> {
    let (e0, l0) = p.counts();
    for (index, ev) in events.iter().enumerate() {
        if index % TICK_EVENTS == 0 && !tick(Progress { done, runs, event: index, events: events.len() }) {
            return Err(SweepError::Stopped { done, runs });
        }
        p.apply(ev).map_err(|source| SweepError::Event { index, event: format!("{ev:?}"), source })?;
    }
    let (e, l) = p.counts();
    Ok(Run { eager: since(&e, &e0), lazy: since(&l, &l0), history: p.lazy().history() })
}

/// Every value of every knob in `KNOBS`, the others held at `base`, from an empty model.
pub fn sweep(events: &[Event], kernel: Kernel, base: &Knobs) -> Result<Sweep, SweepError> {
    sweep_with(events, kernel, base, &mut |_| true)
}

/// [`sweep`], telling `tick` where it is (and stopping when it says so).
pub fn sweep_with(events: &[Event], kernel: Kernel, base: &Knobs, tick: Tick) -> Result<Sweep, SweepError> {
    sweep_from(|k| Ok::<_, core::convert::Infallible>(Pair::new(kernel, k)), events, base, tick)
}

/// [`sweep`] for a model seeded from a snapshot (`trace -p`): each knob value's run
/// starts from its own seed of `topo`'s processes `pids` (topology pid, model pid), since
/// the lazy state a seed gives depends on the knobs. A value the seed refuses is in
/// `not_run`; the base knobs' refusal is an error.
pub fn sweep_seeded(topo: &Topology, pids: &[(Pid, Pid)], events: &[Event], kernel: Kernel, base: &Knobs) -> Result<Sweep, SweepError> {
    sweep_seeded_with(topo, pids, events, kernel, base, &mut |_| true)
}

/// [`sweep_seeded`], telling `tick` where it is (and stopping when it says so).
pub fn sweep_seeded_with(topo: &Topology, pids: &[(Pid, Pid)], events: &[Event], kernel: Kernel, base: &Knobs, tick: Tick) -> Result<Sweep, SweepError> {
    // What the seed reads off the pass whatever the knobs, once (1 M VMAs: seconds a run).
    let e = match (Seed { kernel, knobs: *base, skip_bad: false }).prepare(topo, pids) {
        Ok(prep) => return sweep_prepared_with(&prep, events, kernel, base, tick),
        Err(e) => e,
    };
    // A knob the seed refuses is named before what the pass itself lacks.
    let refused = |knobs| {
        let why = match (Seed { kernel, knobs, skip_bad: false }).check_knobs() {
            Err(k) => seed_refused(&k),
            Ok(()) => seed_refused(&e),
        };
        Err::<Pair, _>(why)
    };
    sweep_from(refused, events, base, tick)
}

/// [`sweep_seeded_with`] from the seed's own [`Prepared`] (`trace -p` keeps it, not the
/// pass: what the seed left out of the model is not held to the end).
pub fn sweep_prepared_with(prep: &Prepared, events: &[Event], kernel: Kernel, base: &Knobs, tick: Tick) -> Result<Sweep, SweepError> {
    let seed = |knobs| Seed { kernel, knobs, skip_bad: false }.run_prepared(prep).map(|(p, _)| p).map_err(|e| seed_refused(&e));
    sweep_from(seed, events, base, tick)
}

fn seed_refused(e: &SeedError) -> String {
    format!("the seed cannot start under it: {e}")
}

/// The sweep with each run's model from `start(knobs)`.
pub fn sweep_from<E: core::fmt::Display>(start: impl Fn(Knobs) -> Result<Pair, E>, events: &[Event], base: &Knobs, tick: Tick) -> Result<Sweep, SweepError> {
    let runs = runs(base);
    let mut done = 0;
    let first = run(start(*base).map_err(|e| SweepError::Start(e.to_string()))?, events, done, runs, tick)?;
    done += 1;
    let (eager, base_lazy) = (first.eager, first.lazy);
    let held = base.pairs();
    let mut out = Sweep { eager, sweep: BTreeMap::new(), lazy_vma_history: first.history, not_run: BTreeMap::new() };
    for (name, values) in KNOBS {
        let mut rows = BTreeMap::new();
        for &value in *values {
            let is_base = held.contains(&(name, value));
            let lazy = if is_base {
                base_lazy
            } else {
                let mut k = *base;
                k.set(&format!("{name}={value}")).expect("KNOBS lists only valid settings");
                let p = match start(k) {
                    Ok(p) => p,
                    Err(e) => {
                        done += 1;
                        out.not_run.entry(name.to_string()).or_default().insert(value.to_string(), e.to_string());
                        continue;
                    }
                };
                let r = run(p, events, done, runs, tick)?;
                done += 1;
                if r.eager != first.eager {
                    return Err(SweepError::EagerDiffers { knob: name.to_string(), value: value.to_string() });
                }
                r.lazy
            };
            rows.insert(value.to_string(), Row::new(is_base, &eager, lazy));
        }
        out.sweep.insert(name.to_string(), rows);
    }
    Ok(out)
}

impl Sweep {
    /// Add another host's sweep (same base knobs, checked by the caller): counts and
    /// savings add; a peak adds as the sum of each host's own peak.
    pub fn add(&mut self, o: &Sweep) {
        let t = |a: &mut Tally, b: &Tally| {
            a.alloc += b.alloc;
            a.free += b.free;
            a.peak += b.peak;
        };
        let objs = |a: &mut Objects, b: &Objects| {
            t(&mut a.anon_vma, &b.anon_vma);
            t(&mut a.anon_vma_chain, &b.anon_vma_chain);
            t(&mut a.vm_area_struct, &b.vm_area_struct);
        };
        objs(&mut self.eager, &o.eager);
        for (knob, values) in &o.sweep {
            let mine = self.sweep.entry(knob.clone()).or_default();
            for (v, r) in values {
                let m = mine.entry(v.clone()).or_insert(Row { base: r.base, ..Row::default() });
                objs(&mut m.lazy, &r.lazy);
                m.saved.anon_vma_allocs += r.saved.anon_vma_allocs;
                m.saved.anon_vma_chain_allocs += r.saved.anon_vma_chain_allocs;
                m.saved.anon_vma_peak += r.saved.anon_vma_peak;
                m.saved.anon_vma_chain_peak += r.saved.anon_vma_chain_peak;
                m.saved.vm_area_struct_peak += r.saved.vm_area_struct_peak;
            }
        }
        self.lazy_vma_history.add(&o.lazy_vma_history);
        for (knob, values) in &o.not_run {
            self.not_run.entry(knob.clone()).or_default().extend(values.iter().map(|(v, why)| (v.clone(), why.clone())));
        }
    }

    /// Knobs in `KNOBS` order (the spec's), then any this build does not know.
    pub fn knobs(&self) -> Vec<(&str, &BTreeMap<String, Row>)> {
        let mut v: Vec<(&str, &BTreeMap<String, Row>)> = KNOBS.iter().filter_map(|(n, _)| self.sweep.get_key_value(*n).map(|(k, r)| (k.as_str(), r))).collect();
        v.extend(self.sweep.iter().filter(|(k, _)| !KNOBS.iter().any(|(n, _)| n == k)).map(|(k, r)| (k.as_str(), r)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events() -> Vec<Event> {
        vec![
            Event::Spawn { pid: 1 },
            Event::Map { pid: 1, start: 0x1000_0000, pages: 4, flags: crate::event::vm::READ | crate::event::vm::WRITE },
            Event::Fork { parent: 1, child: 2 },
        ]
    }

    #[test]
    fn every_run_is_told_and_a_no_stops_the_sweep() {
        let base = Knobs::default();
        assert_eq!(runs(&base), 1 + KNOBS.iter().map(|(_, v)| v.len() - 1).sum::<usize>());
        let mut seen = vec![];
        let s = sweep_with(&events(), Kernel::V6_18, &base, &mut |p| {
            seen.push(p.done);
            true
        })
        .unwrap();
        assert_eq!(seen, (0..runs(&base)).collect::<Vec<_>>());
        assert_eq!(s, sweep(&events(), Kernel::V6_18, &base).unwrap());
        let mut asked = 0;
        let e = sweep_with(&events(), Kernel::V6_18, &base, &mut |p| {
            asked += 1;
            p.done < 3
        });
        assert_eq!(e.unwrap_err(), SweepError::Stopped { done: 3, runs: runs(&base) });
        assert_eq!(asked, 4);
    }
}
