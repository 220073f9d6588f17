//! `lazyvma trace -j` output (no schema yet) → a report document. Trace counts slab
//! allocations and frees on the unpatched kernel; it runs no model yet, so the eager and
//! lazy sides stay `null` and the table's "before" is what was observed.
//!
//! What trace should emit natively later: `host`, `arch`, `span` with wall-clock start and
//! end, `histograms` (rmap lock wait) under the contract, `knobs` once the model runs, and
//! per-process `processes`/`cgroups` rows with eager and lazy pairs.
use serde_json::{json, Value};
use std::collections::BTreeMap;

use super::schema::{Doc, Histograms, ObjectRow, Objects, Side, Span, SCHEMA, VERSION};

/// Keys only `trace -j` writes.
pub fn is_trace(v: &Value) -> bool {
    ["observed", "by_function", "events"].iter().all(|k| v.get(k).is_some())
}

fn u(v: &Value, path: &[&str]) -> Result<u64, String> {
    let mut x = v;
    for p in path {
        x = x.get(p).ok_or_else(|| format!("no `{}`", path.join(".")))?;
    }
    x.as_u64().ok_or_else(|| format!("`{}` is not a count", path.join(".")))
}

fn observed(v: &Value, kind: &str) -> Result<ObjectRow, String> {
    let size = u(v, &["sizes", kind])?;
    let (allocs, frees) = (u(v, &["observed", kind, "alloc"])?, u(v, &["observed", kind, "free"])?);
    // A traced command frees nearly all it allocated by exit: the allocations are the figure.
    let n = allocs as i64;
    Ok(ObjectRow {
        size: Some(size),
        size_source: Some(format!("/sys/kernel/slab/{kind}/object_size (trace)")),
        observed: Some(Side { objects: n, bytes: n * size as i64, allocs: Some(allocs), frees: Some(frees) }),
        eager: None,
        lazy: None,
    })
}

/// `prefix.NAME.KIND.alloc|free` for every row of a trace table.
fn flatten(rules: &mut BTreeMap<String, u64>, prefix: &str, table: Option<&Value>) {
    for (name, counts) in table.and_then(Value::as_object).into_iter().flatten() {
        for (kind, af) in counts.as_object().into_iter().flatten() {
            for dir in ["alloc", "free"] {
                if let Some(n) = af.get(dir).and_then(Value::as_u64) {
                    rules.insert(format!("{prefix}.{name}.{kind}.{dir}"), n);
                }
            }
        }
    }
}

pub fn convert(v: &Value) -> Result<Value, String> {
    let mut rules = BTreeMap::new();
    flatten(&mut rules, "function", v.get("by_function"));
    flatten(&mut rules, "reason", v.get("by_reason"));
    for k in ["malformed", "stack_errors"] {
        rules.insert(format!("events.{k}"), u(v, &["events", k])?);
    }
    let backend = v
        .get("backend")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, b)| (k.clone(), b.as_str().unwrap_or("?").to_string())).collect())
        .unwrap_or_default();
    let elapsed_ms = u(v, &["elapsed_ms"])? as f64;
    // A trace that fed the model carries its knob sweep (`lazyvma_model::sweep`).
    let rules_that_matter = match v.get("rules_that_matter") {
        Some(s) => Some(serde_json::from_value(s.clone()).map_err(|e| format!("rules_that_matter: {e}"))?),
        None => None,
    };
    let doc = Doc {
        schema: SCHEMA.into(),
        version: VERSION,
        source: "trace".into(),
        host: "unknown (trace JSON has no host)".into(),
        kernel: v.get("kernel").and_then(Value::as_str).unwrap_or("unknown").into(),
        arch: "unknown".into(),
        backend,
        span: Span { start_unix_ms: None, end_unix_ms: None, elapsed_ms },
        objects: Objects {
            vm_area_struct: ObjectRow::default(),
            anon_vma_chain: observed(v, "anon_vma_chain")?,
            anon_vma: observed(v, "anon_vma")?,
        },
        rules,
        rmap: BTreeMap::from([("walks".into(), None), ("lock_wait_events".into(), None)]),
        histograms: Histograms::default(),
        lost_events: u(v, &["lost_events"])?,
        knobs: BTreeMap::new(),
        timeline: vec![],
        processes: vec![],
        cgroups: vec![],
        hosts: vec![],
        notes: vec![
            "converted from `lazyvma trace -j`: observed slab allocations/frees during the trace; no eager/lazy model yet".into(),
        ],
        rules_that_matter,
    };
    let mut out = serde_json::to_value(doc).map_err(|e| e.to_string())?;
    out["trace"] = json!({ "scope": v.get("scope"), "ended_by": v.get("ended_by"), "command": v.get("command") });
    Ok(out)
}
