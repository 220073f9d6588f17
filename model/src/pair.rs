//! Eager and lazy side by side: every event goes to both; per-step deltas come out.

use crate::counts::{Counter, Counts, Delta, Deltas};
use crate::engine::vma::Mm;
use crate::engine::{Half, Machine, ModelError, Procs, EAGER, LAZY};
use crate::event::Event;
use crate::kernel::Kernel;
use crate::knobs::Knobs;

pub struct Pair {
    eager: Machine,
    lazy: Machine,
    /// Both models' mms in one table: an event picks a cold process, and one lookup
    /// brings both mm headers (the bench's per-event cache misses).
    procs: Procs,
}

impl Pair {
    pub fn new(kernel: Kernel, knobs: Knobs) -> Pair {
        Pair { eager: Machine::eager(kernel), lazy: Machine::lazy(kernel, knobs), procs: Procs::default() }
    }

    /// The eager model (today's kernel) and its mms.
    pub fn eager(&self) -> Half<'_> {
        self.eager.half(&self.procs)
    }
    /// The lazy model and its mms.
    pub fn lazy(&self) -> Half<'_> {
        self.lazy.half(&self.procs)
    }

    /// Apply one event to both models; returns what it allocated and freed in each.
    pub fn apply(&mut self, ev: &Event) -> Result<(Deltas, Deltas), ModelError> {
        let (e0, l0) = (Marks::of(&self.eager), Marks::of(&self.lazy));
        self.apply_both(ev)?;
        Ok((Marks::of(&self.eager).since(&e0), Marks::of(&self.lazy).since(&l0)))
    }

    fn apply_both(&mut self, ev: &Event) -> Result<(), ModelError> {
        let pid = match *ev {
            Event::Spawn { pid } => {
                if self.procs.contains_key(&pid) {
                    return Err(ModelError::ProcessExists(pid));
                }
                self.procs.insert(pid, [Mm::default(), Mm::default()]);
                return Ok(());
            }
            Event::Fork { parent, child } => {
                if self.procs.contains_key(&child) {
                    return Err(ModelError::ProcessExists(child));
                }
                let p = self.procs.get_mut(&parent).ok_or(ModelError::NoProcess(parent))?;
                let c = [self.eager.fork(&mut p[EAGER]), self.lazy.fork(&mut p[LAZY])];
                self.procs.insert(child, c);
                return Ok(());
            }
            Event::Exit { pid } => {
                let [e, l] = self.procs.remove(&pid).ok_or(ModelError::NoProcess(pid))?;
                self.eager.exit(e);
                self.lazy.exit(l);
                self.after_teardown();
                return Ok(());
            }
            Event::KsmCleanup => {
                self.eager.ksm_cleanup(&self.procs);
                self.lazy.ksm_cleanup(&self.procs);
                return Ok(());
            }
            Event::SetKernel(k) => {
                self.eager.core.kernel = k;
                self.lazy.core.kernel = k;
                return Ok(());
            }
            Event::Phase(_) => return Ok(()),
            Event::Map { pid, .. }
            | Event::MapPgoff { pid, .. }
            | Event::Fault { pid, .. }
            | Event::Exec { pid, .. }
            | Event::Mprotect { pid, .. }
            | Event::Madvise { pid, .. }
            | Event::Munmap { pid, .. }
            | Event::Mremap { pid, .. }
            | Event::MremapResize { pid, .. }
            | Event::Mlock { pid, .. }
            | Event::KsmMerge { pid, .. }
            | Event::ThpCollapse { pid, .. }
            | Event::RmapWalk { pid, .. } => pid,
        };
        let p = self.procs.get_mut(&pid).ok_or(ModelError::NoProcess(pid))?;
        // Eager searches first; lazy probes where eager found it (`Core::hints`).
        p[EAGER].touch();
        let torn = self.eager.apply_mm(pid, &mut p[EAGER], ev, usize::MAX)?;
        self.lazy.core.hints.copy_from(&self.eager.core.bounds);
        // Lazy looks for a fault's or walk's VMA first where eager found it.
        let torn = self.lazy.apply_mm(pid, &mut p[LAZY], ev, self.eager.found)? | torn;
        if torn {
            self.after_teardown();
        }
        Ok(())
    }

    fn after_teardown(&mut self) {
        self.eager.after_teardown(&mut self.procs);
        self.lazy.after_teardown(&mut self.procs);
    }

    pub fn counts(&self) -> (Counts, Counts) {
        (self.eager.counts(), self.lazy.counts())
    }
}

// Seeding (`crate::seed`): a Pair built from a topology instead of an event stream.
impl Pair {
    /// Both models and the mm table, to fill directly.
    pub(crate) fn parts_mut(&mut self) -> (&mut Machine, &mut Machine, &mut Procs) {
        (&mut self.eager, &mut self.lazy, &mut self.procs)
    }
    /// The eager model and the mm table, to read directly.
    pub(crate) fn eager_parts(&self) -> (&Machine, &Procs) {
        (&self.eager, &self.procs)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::vma::ADDR_LIMIT;
    use crate::event::{vm, PAGE_SIZE};

    #[test]
    fn a_kernel_pgoff_keeps_unrelated_neighbours_apart() {
        let mut p = Pair::new(Kernel::V6_18, Knobs::default());
        p.apply(&Event::Spawn { pid: 1 }).unwrap();
        let rw = vm::READ | vm::WRITE;
        p.apply(&Event::Map { pid: 1, start: 0x10000, pages: 1, flags: rw }).unwrap();
        // A file page right after it: adjacent, same flags, but another pgoff space.
        p.apply(&Event::MapPgoff { pid: 1, start: 0x11000, pages: 1, flags: rw, pgoff: 1 << 43 }).unwrap();
        assert_eq!(p.eager().mapped_vmas(), 2);
        // Contiguous pgoffs merge, as anon Map's start >> 12 does.
        p.apply(&Event::MapPgoff { pid: 1, start: 0x12000, pages: 1, flags: rw, pgoff: (1 << 43) + 1 }).unwrap();
        assert_eq!(p.eager().mapped_vmas(), 2);
        // The model keeps 45 bits of pgoff (history lives above): more is refused, not cut.
        let e = p.apply(&Event::MapPgoff { pid: 1, start: 0x20000, pages: 2, flags: rw, pgoff: (1 << 45) - 1 }).unwrap_err();
        assert!(e.to_string().contains("above 2^45"), "{e}");
    }

    #[test]
    fn ranges_above_the_57_bit_user_space_are_refused_and_change_nothing() {
        let mut p = Pair::new(Kernel::V6_18, Knobs::default());
        p.apply(&Event::Spawn { pid: 1 }).unwrap();
        let map = |start, pages| Event::Map { pid: 1, start, pages, flags: vm::READ | vm::WRITE };
        p.apply(&map(ADDR_LIMIT - PAGE_SIZE, 1)).unwrap();
        let before = p.counts();
        let e = p.apply(&map(ADDR_LIMIT - PAGE_SIZE, 2)).unwrap_err();
        assert!(e.to_string().contains("above the 57-bit user address space"), "{e}");
        assert_eq!(p.counts(), before);
        assert_eq!(p.eager().mapped_vmas(), 1);
    }
}
