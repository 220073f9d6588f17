//! Ring-buffer records → counters, whole system, for as long as serve runs. Unlike
//! `trace::Tracer` it keeps no per-process or per-phase rows (they would grow without
//! bound in a daemon): only the live-object map, which is bounded by the objects alive.
use super::metrics::Metrics;
use crate::trace::{
    reason,
    slab::{Kind, Live, Sizes},
    symbols::Symbols,
};
use lazyvma_model::trace_abi::{decode, TraceEvent, EV_ALLOC, EV_EXEC, EV_EXIT, EV_FORK, EV_FREE, EV_MARKER, EV_NEWTASK, FN_COUNT, FUNCTIONS};
use std::sync::Arc;

pub struct Counter {
    metrics: Arc<Metrics>,
    syms: Symbols,
    sizes: Sizes,
    live: Live,
}

impl Counter {
    pub fn new(metrics: Arc<Metrics>, syms: Symbols, sizes: Sizes) -> Counter {
        Counter { metrics, syms, sizes, live: Live::default() }
    }

    pub fn record(&mut self, bytes: &[u8]) {
        self.metrics.events.received.inc();
        match decode(bytes) {
            Some(ev) => self.handle(&ev),
            None => {
                self.metrics.events.malformed.inc();
            }
        }
    }

    fn handle(&mut self, ev: &TraceEvent) {
        match ev.kind {
            EV_ALLOC | EV_FREE if ev.arg as usize >= FN_COUNT => {
                self.metrics.events.malformed.inc();
            }
            EV_ALLOC => {
                let kind = Live::alloc_kind(self.sizes, ev.bytes_req);
                self.live.alloc(ev.ptr, kind, 0);
                self.count(ev, kind, true);
            }
            EV_FREE => {
                let (kind, _) = self.live.free(ev.ptr, ev.arg);
                self.count(ev, kind, false);
            }
            // Process-tree events: serve counts the whole system, it needs no tree.
            EV_NEWTASK | EV_FORK | EV_EXEC | EV_EXIT | EV_MARKER => {}
            _ => {
                self.metrics.events.malformed.inc();
            }
        }
    }

    fn count(&mut self, ev: &TraceEvent, kind: Kind, alloc: bool) {
        if ev.stack_bytes < 0 {
            self.metrics.events.stack_errors.inc();
        }
        let n = (ev.stack_bytes.max(0) as usize / 8).min(ev.frames.len());
        let why = reason::classify(ev.arg, alloc, &ev.frames[..n], &self.syms);
        self.metrics.count_slab(kind, alloc, FUNCTIONS[ev.arg as usize], why);
    }
}
