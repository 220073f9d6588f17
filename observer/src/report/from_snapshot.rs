//! A snapshot made a report document, from its typed `Report`: `snapshot -j` writes it
//! beside the keys it always had (`snapshot::render::SnapshotDoc`).
use lazyvma_model::knobs::Knobs;
use std::collections::BTreeMap;

use super::cgroup::pair;
use super::schema::{Cgroup, Doc, Histograms, ObjectRow, Objects, Point, Side, Span, SCHEMA, VERSION};
use super::{hist, host, now_unix_ms};
use crate::snapshot::Report;
use lazyvma_model::sizes::Size;

fn row(size: &Size, eager: u64, lazy: u64) -> ObjectRow {
    let side = |n: u64| Side { objects: n as i64, bytes: (n * size.slab_size) as i64, allocs: None, frees: None };
    // The running kernel is today's (eager) kernel: what it shows is the eager column.
    ObjectRow {
        size: Some(size.slab_size),
        size_source: Some(size.source.clone()),
        observed: Some(side(eager)),
        eager: Some(side(eager)),
        lazy: Some(side(lazy)),
    }
}

fn histograms(r: &Report) -> Histograms {
    let mut out = Histograms::default();
    let mut chains = hist::new();
    for (&len, &n) in &r.chain_lens {
        chains.record_n(u64::from(len), n).expect("chain lengths are within the contract");
    }
    out.series.insert("vma_chain_len".into(), hist::encode(&chains, "count"));
    let mut pass = hist::new();
    pass.saturating_record((r.elapsed_ms * 1e6) as u64);
    out.series.insert("snapshot_pass_ns".into(), hist::encode(&pass, "ns"));
    out
}

/// The report document of a snapshot (without the snapshot's own `processes` shape).
pub fn document(r: &Report, cgroups: Vec<Cgroup>) -> Doc {
    let e = &r.estimate;
    let s = &r.sizes;
    let end = now_unix_ms();
    let host = host();
    let [none, lazy, tree, tree_parent] = e.states;
    let rules = BTreeMap::from([
        ("vma_state.none".to_string(), none),
        ("vma_state.lazy".to_string(), lazy),
        ("vma_state.tree".to_string(), tree),
        ("vma_state.tree_parent".to_string(), tree_parent),
    ]);
    let rmap = BTreeMap::from([
        ("vmas_with_anon_vma".to_string(), Some(lazy + tree + tree_parent)),
        // LAZY VMAs' folios map to the VMA itself: their rmap walks take no anon_vma root rwsem.
        ("lazy_lock_free_vmas".to_string(), Some(lazy)),
        ("walks".to_string(), None),
        ("lock_wait_events".to_string(), None),
    ]);
    Doc {
        schema: SCHEMA.into(),
        version: VERSION,
        source: "snapshot".into(),
        host: host.clone(),
        kernel: r.kernel.clone(),
        arch: crate::sys::uname().1,
        // The pass that took the topology: iter/task where the kernel predates iter/task_vma.
        backend: BTreeMap::from([("topology".to_string(), if r.stats.program.is_empty() { "iter/task_vma" } else { r.stats.program }.to_string())]),
        span: Span { start_unix_ms: Some(end.saturating_sub(r.elapsed_ms as u64)), end_unix_ms: Some(end), elapsed_ms: r.elapsed_ms },
        objects: Objects {
            vm_area_struct: row(&s.vm_area_struct, e.vmas, e.vmas),
            anon_vma_chain: row(&s.anon_vma_chain, e.eager.anon_vma_chain, e.lazy.anon_vma_chain),
            anon_vma: row(&s.anon_vma, e.eager.anon_vma, e.lazy.anon_vma),
        },
        rules,
        rmap,
        histograms: histograms(r),
        lost_events: 0,
        knobs: Knobs::default().pairs().into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        timeline: vec![Point { host, t_unix_ms: end, eager: Some(pair(&e.eager)), lazy: Some(pair(&e.lazy)), observed: None }],
        processes: vec![],
        cgroups,
        hosts: vec![],
        notes: vec![],
        rules_that_matter: None,
        // A snapshot replays no events: no rule fired.
        lazy_rules: None,
        bpf_stats: BTreeMap::new(),
        recording: None,
        trace: None,
    }
}
