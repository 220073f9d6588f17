//! Eager and lazy side by side: every event goes to both; per-step deltas come out.

use crate::counts::{Counter, Counts, Delta, Deltas};
use crate::eager::{Machine, ModelError};
use crate::event::Event;
use crate::kernel::Kernel;
use crate::knobs::Knobs;

pub struct Pair {
    pub eager: Machine,
    pub lazy: Machine,
}

impl Pair {
    pub fn new(kernel: Kernel, knobs: Knobs) -> Pair {
        Pair { eager: Machine::eager(kernel), lazy: Machine::lazy(kernel, knobs) }
    }

    /// Apply one event to both models; returns what it allocated and freed in each.
    pub fn apply(&mut self, ev: &Event) -> Result<(Deltas, Deltas), ModelError> {
        let (e0, l0) = (Marks::of(&self.eager), Marks::of(&self.lazy));
        self.eager.apply(ev)?;
        self.lazy.apply_near(ev, self.eager.found)?;
        Ok((Marks::of(&self.eager).since(&e0), Marks::of(&self.lazy).since(&l0)))
    }

    pub fn counts(&self) -> (Counts, Counts) {
        (self.eager.counts(), self.lazy.counts())
    }
}

/// The allocation and free totals of one model: all a step's deltas need, at half the
/// copying of two `Counts` (this runs twice per model per event).
struct Marks([Delta; 3]);

impl Marks {
    #[inline]
    fn of(m: &Machine) -> Marks {
        let d = |c: &Counter| Delta { alloc: c.alloc, free: c.free };
        let c = &m.core;
        Marks([d(&c.avs.av), d(&c.avs.avc), d(&c.vma)])
    }
    #[inline]
    fn since(&self, before: &Marks) -> Deltas {
        let d = |i: usize| Delta { alloc: self.0[i].alloc - before.0[i].alloc, free: self.0[i].free - before.0[i].free };
        Deltas { anon_vma: d(0), anon_vma_chain: d(1), vm_area_struct: d(2) }
    }
}
