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
use crate::eager::ModelError;
use crate::event::Event;
use crate::kernel::Kernel;
use crate::knobs::{Knobs, KNOBS};
use crate::lazy::History;
use crate::pair::Pair;

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
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SweepError {
    #[error("event {index} ({event}): {source}")]
    Event { index: usize, event: String, source: ModelError },
    #[error("the eager model counted differently with {knob}={value}: eager must not depend on lazy knobs")]
    EagerDiffers { knob: String, value: String },
}

struct Run {
    eager: Counts,
    lazy: Counts,
    history: History,
}

fn run(events: &[Event], kernel: Kernel, knobs: Knobs) -> Result<Run, SweepError> {
    let mut p = Pair::new(kernel, knobs);
    for (index, ev) in events.iter().enumerate() {
        p.apply(ev).map_err(|source| SweepError::Event { index, event: format!("{ev:?}"), source })?;
    }
    let (eager, lazy) = p.counts();
    Ok(Run { eager, lazy, history: p.lazy().history() })
}

/// Every value of every knob in `KNOBS`, the others held at `base`.
pub fn sweep(events: &[Event], kernel: Kernel, base: &Knobs) -> Result<Sweep, SweepError> {
    let first = run(events, kernel, *base)?;
    let eager = Objects::from(&first.eager);
    let base_lazy = Objects::from(&first.lazy);
    let held = base.pairs();
    let mut out = Sweep { eager, sweep: BTreeMap::new(), lazy_vma_history: first.history };
    for (name, values) in KNOBS {
        let mut rows = BTreeMap::new();
        for &value in *values {
            let is_base = held.contains(&(name, value));
            let lazy = if is_base {
                base_lazy
            } else {
                let mut k = *base;
                k.set(&format!("{name}={value}")).expect("KNOBS lists only valid settings");
                let r = run(events, kernel, k)?;
                if r.eager != first.eager {
                    return Err(SweepError::EagerDiffers { knob: name.to_string(), value: value.to_string() });
                }
                Objects::from(&r.lazy)
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
    }

    /// Knobs in `KNOBS` order (the spec's), then any this build does not know.
    pub fn knobs(&self) -> Vec<(&str, &BTreeMap<String, Row>)> {
        let mut v: Vec<(&str, &BTreeMap<String, Row>)> =
            KNOBS.iter().filter_map(|(n, _)| self.sweep.get_key_value(*n).map(|(k, r)| (k.as_str(), r))).collect();
        v.extend(self.sweep.iter().filter(|(k, _)| !KNOBS.iter().any(|(n, _)| n == k)).map(|(k, r)| (k.as_str(), r)));
        v
    }
}
