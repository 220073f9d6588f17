//! Text (the cover letter's own table layout) and JSON for a snapshot [`Report`].
use lazyvma_model::snapshot::{LiveObjects, ProcessEstimate};
use serde_json::{json, Value};
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

fn counts_json(c: &LiveObjects, s: &Sizes) -> Value {
    json!({
        "anon_vma": c.anon_vma,
        "anon_vma_chain": c.anon_vma_chain,
        "anon_vma_kb": kb(c.anon_vma, s.anon_vma.slab_size),
        "anon_vma_chain_kb": kb(c.anon_vma_chain, s.anon_vma_chain.slab_size),
    })
}

fn process_json(p: &ProcessEstimate, r: &Report) -> Value {
    let s = &r.sizes;
    let mut v = json!({
        "pid": p.pid, "comm": p.comm, "vmas": p.vmas,
        "eager": counts_json(&p.eager, s), "lazy": counts_json(&p.lazy, s),
        "saved_kb": savings(p, s) as f64 / 1024.0,
    });
    // The iter/task pass stopped before the end of its VMA list: its counts are a part.
    if let Some(c) = r.stats.cut.iter().find(|c| c.pid == p.pid) {
        v["incomplete"] = json!({ "vmas_seen": c.vmas_seen, "map_count": c.map_count, "why": c.why });
    }
    if let Some(vmas) = r.vmas.get(&p.pid) {
        v["vmas"] = vmas
            .iter()
            .map(|(t, state)| {
                json!({
                    "start": t.start, "end": t.end, "pgoff": t.pgoff, "flags": t.flags,
                    "anon_vma": t.anon_vma, "chain": t.chain, "chain_len": t.chain_len, "lazy_state": state,
                })
            })
            .collect();
    }
    v
}

pub fn json(r: &Report, top: Option<usize>) -> Value {
    let e = &r.estimate;
    let s = &r.sizes;
    let procs: Vec<Value> = r.shown.iter().take(top.unwrap_or(usize::MAX)).map(|p| process_json(p, r)).collect();
    json!({
        "kernel": r.kernel,
        "processes": procs,
        "total": {
            "eager": counts_json(&e.eager, s),
            "lazy": counts_json(&e.lazy, s),
            "vm_area_struct": e.vmas,
            "vm_area_struct_kb": kb(e.vmas, s.vm_area_struct.slab_size),
        },
        "vma_states": {"none": e.states[0], "lazy": e.states[1], "tree": e.states[2], "tree_parent": e.states[3]},
        "truncated_vmas": e.truncated_vmas,
        "incomplete_processes": r.stats.cut.len(),
        "sizes": s,
        "slab": r.slab,
        "pass": r.stats,
        "knobs": "default",
        "notes": [NOTE_UPPER_BOUND, NOTE_VMA],
        "elapsed_ms": r.elapsed_ms,
        "phases_ms": r.phases_ms.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
    })
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
