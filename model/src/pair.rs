//! Eager and lazy side by side: every event goes to both; per-step deltas come out.

use crate::counts::{Counts, Deltas};
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
        let (e0, l0) = self.counts();
        self.eager.apply(ev)?;
        self.lazy.apply_near(ev, self.eager.found)?;
        let (e1, l1) = self.counts();
        Ok((e1.since(&e0), l1.since(&l0)))
    }

    pub fn counts(&self) -> (Counts, Counts) {
        (self.eager.counts(), self.lazy.counts())
    }
}
