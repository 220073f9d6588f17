//! Text (the cover letter's own table layout) and JSON for a snapshot [`Report`].
use lazyvma_model::snapshot::{LazyState, LiveObjects, ProcessEstimate};
use lazyvma_model::topology::VmaTopo;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

use super::{savings, Report, Sizes};

pub const NOTE_UPPER_BOUND: &str = "a snapshot cannot see a parent whose children already exited: lazy has no downgrade, \
so such a VMA would stay TREE; for those the lazy figures are an upper bound on savings (`lazyvma trace` measures it)";
pub const NOTE_VMA: &str = "vm_area_struct: the same count in both; lazy folio pins on VMAs may defer some frees";

fn kb(objects: u64, bytes: u64) -> f64 {
    (objects * bytes) as f64 / 1024.0
}

fn change(before: f64, after: f64) -> String {
    if before == 0.0 {
        return "n/a".into();
    }
    format!("{:+.1}%", (after - before) / before * 100.0)
}

/// Objects held and their KB at the slab slot.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Held {
    pub anon_vma: u64,
    pub anon_vma_chain: u64,
    pub anon_vma_kb: f64,
    pub anon_vma_chain_kb: f64,
}

fn held(c: &LiveObjects, s: &Sizes) -> Held {
    Held {
        anon_vma: c.anon_vma,
        anon_vma_chain: c.anon_vma_chain,
        anon_vma_kb: kb(c.anon_vma, s.anon_vma.slab_size),
        anon_vma_chain_kb: kb(c.anon_vma_chain, s.anon_vma_chain.slab_size),
    }
}

/// The iter/task pass stopped before the end of the process's VMA list: its counts are a part.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Incomplete {
    pub vmas_seen: u64,
    pub map_count: u64,
    pub why: &'static str,
}

/// `--vmas`: one VMA of a listed process and its lazy state.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Vma<'a> {
    #[serde(flatten)]
    pub vma: &'a VmaTopo,
    pub lazy_state: LazyState,
}

/// A process's VMA count, or with `--vmas` the VMAs themselves.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Vmas<'a> {
    Count(u64),
    Listed(Vec<Vma<'a>>),
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Process<'a> {
    pub pid: u32,
    pub comm: &'a str,
    pub vmas: Vmas<'a>,
    pub eager: Held,
    pub lazy: Held,
    pub saved_kb: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incomplete: Option<Incomplete>,
}

fn process<'a>(p: &'a ProcessEstimate, r: &'a Report) -> Process<'a> {
    let s = &r.sizes;
    let vmas = match r.vmas.get(&p.pid) {
        Some(vmas) => Vmas::Listed(vmas.iter().map(|(vma, lazy_state)| Vma { vma, lazy_state: *lazy_state }).collect()),
        None => Vmas::Count(p.vmas),
    };
    Process {
        pid: p.pid,
        comm: &p.comm,
        vmas,
        eager: held(&p.eager, s),
        lazy: held(&p.lazy, s),
        saved_kb: savings(p, s) as f64 / 1024.0,
        incomplete: r.stats.cut.iter().find(|c| c.pid == p.pid).map(|c| Incomplete { vmas_seen: c.vmas_seen, map_count: c.map_count, why: c.why }),
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Total {
    pub eager: Held,
    pub lazy: Held,
    pub vm_area_struct: u64,
    pub vm_area_struct_kb: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct VmaStates {
    pub none: u64,
    pub lazy: u64,
    pub tree: u64,
    pub tree_parent: u64,
}

/// `snapshot -j`'s own keys, beside the report document's (`SnapshotDoc`).
#[derive(Debug, Serialize)]
pub struct Snapshot<'a> {
    pub processes: Vec<Process<'a>>,
    pub total: Total,
    pub vma_states: VmaStates,
    pub truncated_vmas: u64,
    pub incomplete_processes: usize,
    pub sizes: &'a Sizes,
    pub slab: &'a [super::SlabCheck],
    pub pass: &'a super::decode::PassStats,
    pub notes: [&'static str; 2],
    pub elapsed_ms: f64,
    pub phases_ms: BTreeMap<&'static str, f64>,
}

/// `snapshot -j`: the report document (`docs/report-schema.md`, what `report` reads) with
/// the keys `snapshot -j` always had beside it; where both have a key (`processes`,
/// `notes`) the snapshot's own, a superset of the schema's, is written.
pub struct SnapshotDoc<'a> {
    pub snapshot: Snapshot<'a>,
    pub report: crate::report::schema::Doc,
}

impl SnapshotDoc<'_> {
    /// One object, keys sorted (as `Value`'s maps print them, and always did here).
    pub fn to_json(&self) -> serde_json::Result<serde_json::Value> {
        let mut v = serde_json::to_value(&self.snapshot)?;
        if let (serde_json::Value::Object(out), serde_json::Value::Object(doc)) = (&mut v, serde_json::to_value(&self.report)?) {
            out.extend(doc.into_iter().filter(|(k, _)| k != "processes" && k != "notes"));
        }
        Ok(v)
    }
}

/// The snapshot's own keys (`--top N`: the first N processes by savings).
pub fn doc(r: &Report, top: Option<usize>) -> Snapshot<'_> {
    let e = &r.estimate;
    let s = &r.sizes;
    Snapshot {
        processes: r.shown.iter().take(top.unwrap_or(usize::MAX)).map(|p| process(p, r)).collect(),
        total: Total { eager: held(&e.eager, s), lazy: held(&e.lazy, s), vm_area_struct: e.vmas, vm_area_struct_kb: kb(e.vmas, s.vm_area_struct.slab_size) },
        vma_states: VmaStates { none: e.states[0], lazy: e.states[1], tree: e.states[2], tree_parent: e.states[3] },
        truncated_vmas: e.truncated_vmas,
        incomplete_processes: r.stats.cut.len(),
        sizes: s,
        slab: &r.slab,
        pass: &r.stats,
        notes: [NOTE_UPPER_BOUND, NOTE_VMA],
        elapsed_ms: r.elapsed_ms,
        phases_ms: r.phases_ms.iter().copied().collect(),
    }
}

pub fn text(r: &Report, top: Option<usize>) -> String {
    let e = &r.estimate;
    let s = &r.sizes;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "lazyvma snapshot: kernel {}, {} processes, {} VMAs, one {} pass in {:.1} ms ({})",
        r.kernel,
        e.processes.len(),
        e.vmas,
        r.stats.program,
        r.elapsed_ms,
        r.phases_ms.iter().map(|(k, v)| format!("{k} {v:.1}")).collect::<Vec<_>>().join(", ")
    );
    let _ = writeln!(o, "Whole system, now (EAGER) and under ANON_VMA_LAZY (default knobs):\n");
    let _ = writeln!(o, "Object | Before (KB) | After (KB) | Change");
    let rows = [
        ("vm_area_struct", e.vmas, e.vmas, s.vm_area_struct.slab_size),
        ("anon_vma_chain", e.eager.anon_vma_chain, e.lazy.anon_vma_chain, s.anon_vma_chain.slab_size),
        ("anon_vma", e.eager.anon_vma, e.lazy.anon_vma, s.anon_vma.slab_size),
    ];
    for (name, before, after, bytes) in rows {
        let (b, a) = (kb(before, bytes), kb(after, bytes));
        let _ = writeln!(o, "{name} | {b:.1} | {a:.1} | {}", change(b, a));
    }
    let _ = writeln!(o, "\nObject | Before (objects) | After (objects) | bytes each (from)");
    for ((name, before, after, _), size) in rows.iter().zip([&s.vm_area_struct, &s.anon_vma_chain, &s.anon_vma]) {
        let _ = writeln!(o, "{name} | {before} | {after} | {} ({})", size.slab_size, size.source);
    }
    let _ = writeln!(o, "\nVMAs by lazy state: none {}, lazy {}, tree {}, tree_parent {}", e.states[0], e.states[1], e.states[2], e.states[3]);
    let _ = writeln!(
        o,
        "Cross-check with /sys/kernel/slab (reads higher: it counts objects no VMA links, e.g. pinned by KSM or migration, and whole per-CPU slabs as in use):"
    );
    for c in &r.slab {
        let ours = match c.cache.as_str() {
            "anon_vma" => e.eager.anon_vma,
            "anon_vma_chain" => e.eager.anon_vma_chain,
            _ => e.vmas,
        };
        match (&c.merged_into, c.objects) {
            (Some(t), _) => {
                let _ = writeln!(
                    o,
                    "  {}: snapshot {ours}; slab cache merged into {t} (with {}), its count is not {}'s alone: not shown",
                    c.cache,
                    if c.merged_with.is_empty() { "other caches".into() } else { c.merged_with.join(", ") },
                    c.cache
                );
            }
            (None, Some(n)) => {
                let _ = writeln!(o, "  {}: snapshot {ours}; slab {n}", c.cache);
            }
            (None, None) => {
                let _ = writeln!(o, "  {}: snapshot {ours}; slab count unreadable", c.cache);
            }
        }
    }
    // A selection (-p, --cgroup) is listed whole unless --top says otherwise; `--top 0`:
    // the totals alone.
    let top = top.unwrap_or(if r.selected { usize::MAX } else { 10 });
    let title = if r.selected { "Selected processes" } else { "Top processes" };
    if top > 0 {
        let _ = writeln!(o, "\n{title} by savings:");
        let _ = writeln!(o, "PID | COMM | anon_vma before | after | anon_vma_chain before | after | saved (KB)");
    }
    for p in r.shown.iter().take(top) {
        let _ = writeln!(
            o,
            "{} | {} | {} | {} | {} | {} | {:.1}",
            p.pid,
            crate::escape::ctl(&p.comm),
            p.eager.anon_vma,
            p.lazy.anon_vma,
            p.eager.anon_vma_chain,
            p.lazy.anon_vma_chain,
            savings(p, s) as f64 / 1024.0
        );
    }
    let _ = writeln!(o, "\nNotes:\n- {NOTE_UPPER_BOUND}\n- {NOTE_VMA}");
    if e.truncated_vmas > 0 {
        let _ = writeln!(
            o,
            "- {} VMAs have chains longer than the {} entries read per VMA: their unseen anon_vmas are missing from the distinct counts",
            e.truncated_vmas,
            lazyvma_model::abi::CHAIN_EMIT_MAX
        );
    }
    if !r.stats.cut.is_empty() {
        let list: Vec<String> = r
            .stats
            .cut
            .iter()
            .map(|c| {
                format!(
                    "{} ({} of {} VMAs{})",
                    c.pid,
                    c.vmas_seen,
                    c.map_count,
                    match c.why {
                        "changed" => ", the list changed under the walk",
                        "buffer" => ", 32 KiB of records",
                        "passes" => ", still unfinished after the last pass",
                        _ => "",
                    }
                )
            })
            .collect();
        let _ = writeln!(
            o,
            "- INCOMPLETE: {} processes' VMA lists were not walked to the end (no iter/task_vma on this kernel: {} steps and 32 KiB of records per process and pass, {} passes at most): {}; their counts are partial",
            list.len(),
            lazyvma_model::abi::WALK_STEPS,
            lazyvma_model::abi::WALK_PASSES,
            list.join(", ")
        );
    }
    if r.stats.duplicate_vmas > 0 {
        let _ = writeln!(o, "- {} VMAs were reported by more than one task and counted once", r.stats.duplicate_vmas);
    }
    o
}
