//! Ring-buffer records → counters, for the scope (whole system by default), for as long as
//! serve runs. Unlike `trace::Tracer` it keeps no per-process or per-phase rows (they would
//! grow without bound in a daemon): only the live-object map, bounded by the objects alive.
use super::{metrics::Metrics, scope::Scope};
use crate::trace::{
    reason,
    slab::{Kind, Live, Sizes},
    symbols::Symbols,
};
use lazyvma_model::trace_abi::{
    agg_key, decode_any, Record, TraceEvent, EV_ALLOC, EV_EXEC, EV_EXIT, EV_FORK, EV_FREE, EV_MARKER, EV_NEWTASK, FN_COUNT, FUNCTIONS, WHY_FUNCTION,
};
use std::{collections::HashSet, sync::Arc};

/// `Live`'s owner mark: allocated by a process in the scope.
const IN_SCOPE: usize = 1;

pub struct Counter {
    metrics: Arc<Metrics>,
    syms: Symbols,
    sizes: Sizes,
    live: Live,
    scope: Arc<Scope>,
    /// Tids announced as threads, until their fork event (scoped only).
    threads: HashSet<u32>,
    /// The kernel's slab counts already added (`SLAB_COUNTS`, per slot).
    counted: Vec<u64>,
}

impl Counter {
    pub fn new(metrics: Arc<Metrics>, syms: Symbols, sizes: Sizes, scope: Arc<Scope>) -> Counter {
        Counter { metrics, syms, sizes, live: Live::default(), scope, threads: HashSet::new(), counted: Vec::new() }
    }

    pub fn record(&mut self, bytes: &[u8]) {
        self.metrics.events.received.inc();
        match decode_any(bytes) {
            Some(Record::Trace(ev)) => self.handle(&ev, WHY_FUNCTION),
            Some(Record::Slab(ev, why)) => self.handle(&ev, why),
            _ => {
                self.metrics.events.malformed.inc();
            }
        }
    }

    /// The kernel's slab counts (already scoped there): what grew since the last call.
    pub fn aggregated(&mut self, counts: &[u64]) {
        self.counted.resize(counts.len(), 0);
        for (slot, (&now, was)) in counts.iter().zip(self.counted.iter_mut()).enumerate() {
            let n = now.saturating_sub(*was);
            *was = now.max(*was);
            if n == 0 {
                continue;
            }
            let (func, alloc, kind, why) = agg_key(slot as u32);
            let Some(function) = FUNCTIONS.get(func as usize) else { continue };
            let kind = if kind == 0 { Kind::AnonVma } else { Kind::AnonVmaChain };
            let reason = reason::of(why, func, alloc, &[], &self.syms);
            self.metrics.count_slab_n(kind, alloc, function, reason, n);
        }
    }

    fn handle(&mut self, ev: &TraceEvent, why: u32) {
        match ev.kind {
            EV_ALLOC | EV_FREE if ev.arg as usize >= FN_COUNT => {
                self.metrics.events.malformed.inc();
            }
            EV_ALLOC => {
                let kind = Live::alloc_kind(&self.sizes, ev.bytes_req);
                let ours = self.scope.contains(ev.tgid);
                self.live.alloc(ev.ptr, kind, usize::from(ours) * IN_SCOPE);
                if ours {
                    self.count(ev, kind, true, why);
                }
            }
            EV_FREE => {
                // An object of the scope freed from elsewhere (ksmd, a /proc reader) counts too.
                let (kind, owner) = self.live.free(ev.ptr, ev.arg);
                if owner == Some(IN_SCOPE) || self.scope.contains(ev.tgid) {
                    self.count(ev, kind, false, why);
                }
            }
            EV_NEWTASK if self.scope.scoped() => Scope::newtask(ev.arg, ev.ptr, &mut self.threads),
            EV_FORK if self.scope.scoped() => self.scope.fork(ev.tgid, ev.arg, &mut self.threads),
            // The scope needs forks only; the whole system needs no tree at all.
            EV_NEWTASK | EV_FORK | EV_EXEC | EV_EXIT | EV_MARKER => {}
            _ => {
                self.metrics.events.malformed.inc();
            }
        }
    }

    fn count(&mut self, ev: &TraceEvent, kind: Kind, alloc: bool, ctx: u32) {
        if ev.stack_bytes < 0 {
            self.metrics.events.stack_errors.inc();
        }
        let n = (ev.stack_bytes.max(0) as usize / 8).min(ev.frames.len());
        let why = reason::of(ctx, ev.arg, alloc, &ev.frames[..n], &self.syms);
        self.metrics.count_slab(kind, alloc, FUNCTIONS[ev.arg as usize], why);
    }
}
