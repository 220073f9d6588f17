//! `lazyvma trace -j` / `lazyvma replay -j` output → a report document: the observed table,
//! the model's eager/lazy sides when trace fed it (else `null`: "model not fed"), the
//! timeline, anon_vma root rwsem waits, `--by-cgroup` rows, `--stats` and the recording a
//! replay read. A key the trace did not write stays empty or `null`, never estimated.
use serde_json::{json, Value};
use std::collections::BTreeMap;

use super::lazy_rules::LazyRules;
use super::schema::{BpfProg, Cgroup, Doc, Flow, Flows, Histograms, Net, ObjectCounts, ObjectRow, Objects, Point, Recording, Side, Span, SCHEMA, VERSION};

/// The series `locks.wait_hist` becomes: anon_vma root rwsem waits, from `lock:contention_*`
/// (every waiter: rmap walks, fork, unlink), beside the rmap hook's own `rmap_lock_wait_ns`.
pub const LOCK_WAIT: &str = "anon_vma_lock_wait_ns";

/// Keys only `trace -j` writes.
pub fn is_trace(v: &Value) -> bool {
    ["observed", "by_function", "events"].iter().all(|k| v.get(k).is_some())
}

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |x, p| x.get(p)).filter(|x| !x.is_null())
}

fn u(v: &Value, path: &[&str]) -> Result<u64, String> {
    let x = at(v, path).ok_or_else(|| format!("no `{}`", path.join(".")))?;
    x.as_u64().ok_or_else(|| format!("`{}` is not a count", path.join(".")))
}

fn i(v: &Value, path: &[&str]) -> Result<i64, String> {
    let x = at(v, path).ok_or_else(|| format!("no `{}`", path.join(".")))?;
    x.as_i64().ok_or_else(|| format!("`{}` is not an integer", path.join(".")))
}

/// `{anon_vma: {alloc, free}, anon_vma_chain: {alloc, free}}` at `key`, or None when null.
fn flows(v: &Value, key: &str) -> Result<Option<Flows>, String> {
    if at(v, &[key]).is_none() {
        return Ok(None);
    }
    let f = |k: &str| Ok::<_, String>(Flow { alloc: u(v, &[key, k, "alloc"])?, free: u(v, &[key, k, "free"])? });
    Ok(Some(Flows { anon_vma: f("anon_vma")?, anon_vma_chain: f("anon_vma_chain")? }))
}

fn allocs(f: &Flows) -> ObjectCounts {
    ObjectCounts { anon_vma: f.anon_vma.alloc, anon_vma_chain: f.anon_vma_chain.alloc }
}

/// A trace's side: objects allocated during the trace (a traced command frees nearly all it
/// allocated by exit: the allocations are the figure), with the frees beside them.
fn side(f: &Flow, size: u64) -> Side {
    let n = f.alloc as i64;
    Side { objects: n, bytes: n * size as i64, allocs: Some(f.alloc), frees: Some(f.free) }
}

/// Bytes per `kind` and where they came from: `sizes.KIND` is `lazyvma_model::sizes::Size`
/// (`{object_size, slab_size, source}`, bytes = slab_size, as a snapshot prices them); a
/// trace JSON from before it has the bare object_size there, which was its bytes then.
fn size(v: &Value, kind: &str) -> Result<(u64, String), String> {
    match at(v, &["sizes", kind]) {
        None => return Err(format!("no `sizes.{kind}`")),
        Some(n) if n.is_number() => return Ok((u(v, &["sizes", kind])?, format!("/sys/kernel/slab/{kind}/object_size (trace)"))),
        Some(_) => {}
    }
    let source = at(v, &["sizes", kind, "source"]).and_then(Value::as_str).ok_or_else(|| format!("no `sizes.{kind}.source`"))?;
    Ok((u(v, &["sizes", kind, "slab_size"])?, source.to_string()))
}

fn row(kind: &str, (size, source): (u64, String), observed: &Flows, eager: &Option<Flows>, lazy: &Option<Flows>) -> ObjectRow {
    let pick = |f: &Flows| {
        if kind == "anon_vma" {
            f.anon_vma
        } else {
            f.anon_vma_chain
        }
    };
    ObjectRow {
        size: Some(size),
        size_source: Some(source),
        observed: Some(side(&pick(observed), size)),
        eager: eager.as_ref().map(|f| side(&pick(f), size)),
        lazy: lazy.as_ref().map(|f| side(&pick(f), size)),
    }
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

/// Every count of `obj` (one level deep) as `prefix.KEY`.
fn counts(rules: &mut BTreeMap<String, u64>, prefix: &str, obj: Option<&Value>) {
    for (k, x) in obj.and_then(Value::as_object).into_iter().flatten() {
        if let Some(n) = x.as_u64() {
            rules.insert(format!("{prefix}.{k}"), n);
        }
    }
}

fn saved_kb(eager: Option<ObjectCounts>, lazy: Option<ObjectCounts>, sizes: ObjectCounts) -> f64 {
    let bytes = |p: ObjectCounts| (p.anon_vma * sizes.anon_vma + p.anon_vma_chain * sizes.anon_vma_chain) as f64;
    match (eager, lazy) {
        (Some(e), Some(l)) => (bytes(e) - bytes(l)) / 1024.0,
        _ => 0.0,
    }
}

fn cgroups(v: &Value, sizes: ObjectCounts) -> Result<Vec<Cgroup>, String> {
    let rows = at(v, &["by_cgroup"]).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    rows.iter()
        .enumerate()
        .map(|(n, r)| {
            let e = |what: String| format!("by_cgroup[{n}]: {what}");
            let observed = Flows {
                anon_vma: Flow { alloc: u(r, &["anon_vma", "alloc"]).map_err(e)?, free: u(r, &["anon_vma", "free"]).map_err(e)? },
                anon_vma_chain: Flow { alloc: u(r, &["anon_vma_chain", "alloc"]).map_err(e)?, free: u(r, &["anon_vma_chain", "free"]).map_err(e)? },
            };
            let eager = flows(r, "eager").map_err(e)?.as_ref().map(allocs);
            let lazy = flows(r, "lazy").map_err(e)?.as_ref().map(allocs);
            Ok(Cgroup {
                host: None,
                id: u(r, &["id"]).map_err(e)?,
                path: at(r, &["path"]).and_then(Value::as_str).ok_or_else(|| e("no `path`".into()))?.into(),
                processes: u(r, &["processes"]).map_err(e)?,
                eager,
                lazy,
                saved_kb: saved_kb(eager, lazy, sizes),
                observed: Some(observed),
            })
        })
        .collect()
}

/// A model column of a timeline point (`eager_live` / `lazy_live`), when present.
fn live_pair(p: &Value, key: &str) -> Result<Option<ObjectCounts>, String> {
    if at(p, &[key]).is_none() {
        return Ok(None);
    }
    Ok(Some(ObjectCounts { anon_vma: u(p, &[key, "anon_vma"])?, anon_vma_chain: u(p, &[key, "anon_vma_chain"])? }))
}

fn timeline(v: &Value, host: &str, start: u64) -> Result<Vec<Point>, String> {
    let pts = at(v, &["timeline"]).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    pts.iter()
        .enumerate()
        .map(|(n, p)| {
            let e = |what: String| format!("timeline[{n}]: {what}");
            Ok(Point {
                host: host.into(),
                t_unix_ms: start + u(p, &["t_ms"]).map_err(e)?,
                eager: live_pair(p, "eager_live").map_err(e)?,
                lazy: live_pair(p, "lazy_live").map_err(e)?,
                observed: Some(Net {
                    anon_vma: i(p, &["observed_live", "anon_vma"]).map_err(e)?,
                    anon_vma_chain: i(p, &["observed_live", "anon_vma_chain"]).map_err(e)?,
                }),
            })
        })
        .collect()
}

fn histograms(v: &Value) -> Result<Histograms, String> {
    let mut out = Histograms::default();
    if let Some(h) = at(v, &["locks", "wait_hist"]) {
        out.series.insert(LOCK_WAIT.into(), serde_json::from_value(h.clone()).map_err(|e| format!("`locks.wait_hist`: {e}"))?);
    }
    Ok(out)
}

fn knobs(v: &Value) -> BTreeMap<String, String> {
    let k = at(v, &["knobs"]).or_else(|| at(v, &["model", "knobs"]));
    k.and_then(Value::as_object).into_iter().flatten().map(|(k, x)| (k.clone(), x.as_str().map_or_else(|| x.to_string(), str::to_string))).collect()
}

pub fn convert(v: &Value) -> Result<Value, String> {
    let mut rules = BTreeMap::new();
    let mut notes = vec![];
    flatten(&mut rules, "function", v.get("by_function"));
    flatten(&mut rules, "reason", v.get("by_reason"));
    for k in ["malformed", "stack_errors"] {
        rules.insert(format!("events.{k}"), u(v, &["events", k])?);
    }
    let locks = at(v, &["locks"]).filter(|l| l["available"] != false);
    if let Some(l) = locks {
        counts(&mut rules, "locks", Some(l));
    } else if let Some(why) = at(v, &["locks", "reason"]).and_then(Value::as_str) {
        notes.push(format!("anon_vma root rwsem waits not traced: {why}"));
    }
    let backend = v
        .get("backend")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, b)| (k.clone(), b.as_str().unwrap_or("?").to_string())).collect())
        .unwrap_or_default();
    let elapsed_ms = u(v, &["elapsed_ms"])?;
    let start = at(v, &["start_unix_ms"]).and_then(Value::as_u64);
    let end = match start {
        Some(s) => Some(s.checked_add(elapsed_ms).ok_or("`start_unix_ms` + `elapsed_ms` is past the end of time")?),
        None => None,
    };
    if start.is_none() {
        notes.push("the trace JSON has no wall-clock start: timeline times are ms since the trace started".into());
    }
    let host = at(v, &["host"]).and_then(Value::as_str).unwrap_or("unknown (not recorded)").to_string();
    let (av_size, avc_size) = (size(v, "anon_vma")?, size(v, "anon_vma_chain")?);
    let sizes = ObjectCounts { anon_vma: av_size.0, anon_vma_chain: avc_size.0 };
    let observed = flows(v, "observed")?.ok_or("no `observed`")?;
    let (eager, lazy) = (flows(v, "eager")?, flows(v, "lazy")?);
    if eager.is_none() && lazy.is_none() {
        notes.push("model not fed: observed slab allocations/frees during the trace; no eager/lazy model".into());
    }
    // Lock records have their own lost counter (ring buffer full for them too).
    let lock_lost = locks.and_then(|l| at(l, &["lost"])).and_then(Value::as_u64).unwrap_or(0);
    let lost_events = match at(v, &["lost_events"]) {
        Some(x) => x.as_u64().ok_or("`lost_events` is not a count")? + lock_lost,
        None => {
            notes.push("lost events unknown (recording cut short before its trailer): 0 here means unknown".into());
            lock_lost
        }
    };
    let rmap_walks = at(v, &["rmap", "walks"]).and_then(Value::as_u64);
    let lock_waits = locks.and_then(|l| at(l, &["contentions"])).and_then(Value::as_u64);
    let recording: Option<Recording> = at(v, &["recording"]).map(|r| serde_json::from_value(r.clone()).map_err(|e| format!("`recording`: {e}"))).transpose()?;
    if recording.as_ref().is_some_and(|r| !r.complete) {
        notes.push("replayed from a recording cut short: counts end at its last complete chunk".into());
    }
    let bpf_stats: BTreeMap<String, BpfProg> =
        at(v, &["bpf_stats"]).map(|s| serde_json::from_value(s.clone()).map_err(|e| format!("`bpf_stats`: {e}"))).transpose()?.unwrap_or_default();
    // A trace that fed the model carries its knob sweep (`lazyvma_model::sweep`).
    let rules_that_matter = match v.get("rules_that_matter") {
        Some(s) if !s.is_null() => Some(serde_json::from_value(s.clone()).map_err(|e| format!("rules_that_matter: {e}"))?),
        _ => None,
    };
    let lazy_rules: Option<LazyRules> = match at(v, &["lazy_rules"]) {
        Some(r) => Some(serde_json::from_value(r.clone()).map_err(|e| format!("`lazy_rules`: {e}"))?),
        None => None,
    };
    if lazy_rules.is_none() && eager.is_some() {
        notes.push("lazy rule counts: not in this trace JSON (written by a lazyvma without them)".into());
    }
    let doc = Doc {
        schema: SCHEMA.into(),
        version: VERSION,
        source: if recording.is_some() { "replay" } else { "trace" }.into(),
        kernel: v.get("kernel").and_then(Value::as_str).unwrap_or("unknown").into(),
        arch: at(v, &["arch"]).and_then(Value::as_str).unwrap_or("unknown").into(),
        backend,
        span: Span { start_unix_ms: start, end_unix_ms: end, elapsed_ms: elapsed_ms as f64 },
        objects: Objects {
            vm_area_struct: ObjectRow::default(),
            anon_vma_chain: row("anon_vma_chain", avc_size, &observed, &eager, &lazy),
            anon_vma: row("anon_vma", av_size, &observed, &eager, &lazy),
        },
        rules,
        rmap: BTreeMap::from([("walks".into(), rmap_walks), ("lock_wait_events".into(), lock_waits)]),
        histograms: histograms(v)?,
        lost_events,
        knobs: knobs(v),
        timeline: timeline(v, &host, start.unwrap_or(0))?,
        processes: vec![],
        cgroups: cgroups(v, sizes)?,
        hosts: vec![],
        notes,
        bpf_stats,
        recording,
        trace: Some(json!({ "scope": v.get("scope"), "ended_by": v.get("ended_by"), "command": v.get("command"), "model": v.get("model") })),
        host,
        rules_that_matter,
        lazy_rules,
    };
    serde_json::to_value(doc).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest trace JSON `convert` takes, with the model's columns as given.
    fn trace(eager: Value, lazy: Value) -> Value {
        let af = |a: u64, f: u64| json!({ "alloc": a, "free": f });
        json!({
            "kernel": "6.18.44", "arch": "x86_64", "host": "h", "start_unix_ms": 1000, "elapsed_ms": 50,
            "sizes": { "anon_vma": 96, "anon_vma_chain": 64 },
            "observed": { "anon_vma": af(6, 6), "anon_vma_chain": af(12, 12) },
            "by_function": {}, "by_reason": {}, "events": { "malformed": 0, "stack_errors": 0 },
            "lost_events": null, "eager": eager, "lazy": lazy,
            "timeline": [{ "t_ms": 10, "observed_live": { "anon_vma": -1, "anon_vma_chain": 2 }, "eager_live": { "anon_vma": 3, "anon_vma_chain": 5 }, "lazy_live": null }],
            "by_cgroup": [{ "path": "/a", "id": 7, "processes": 2, "anon_vma": af(6, 6), "anon_vma_chain": af(12, 12),
                            "eager": { "anon_vma": af(6, 6), "anon_vma_chain": af(12, 12) }, "lazy": { "anon_vma": af(2, 2), "anon_vma_chain": af(4, 4) } }],
        })
    }

    /// Today's `sizes`: bytes are the slab slot with its source, as a snapshot's rows say;
    /// the test above keeps an older trace JSON's bare object_size readable.
    #[test]
    fn sizes_are_slab_slots_with_their_source() {
        let af = |a: u64, f: u64| json!({ "alloc": a, "free": f });
        let mut t = trace(json!({ "anon_vma": af(6, 6), "anon_vma_chain": af(12, 12) }), Value::Null);
        t["sizes"] = serde_json::to_value(lazyvma_model::sizes::Sizes::spec_x86_64()).unwrap();
        let d: Doc = serde_json::from_value(convert(&t).unwrap()).unwrap();
        let av = &d.objects.anon_vma;
        assert_eq!((av.size, av.observed.as_ref().map(|s| s.bytes)), (Some(104), Some(6 * 104)));
        assert_eq!(av.size_source.as_deref(), Some("spec §4.3 (x86_64 slab slot; no slab or BTF readable)"));
        assert_eq!(d.objects.anon_vma_chain.size, Some(64));
        t["sizes"]["anon_vma"] = json!({ "slab_size": 104 });
        assert_eq!(convert(&t).unwrap_err(), "no `sizes.anon_vma.source`");
    }

    #[test]
    fn model_columns_fill_the_eager_and_lazy_sides_when_fed() {
        let af = |a: u64, f: u64| json!({ "alloc": a, "free": f });
        let fed = json!({ "anon_vma": af(6, 6), "anon_vma_chain": af(12, 12) });
        let lazy = json!({ "anon_vma": af(3, 3), "anon_vma_chain": af(9, 9) });
        let d: Doc = serde_json::from_value(convert(&trace(fed, lazy)).unwrap()).unwrap();
        assert_eq!(d.objects.anon_vma.eager, Some(Side { objects: 6, bytes: 576, allocs: Some(6), frees: Some(6) }));
        assert_eq!(d.objects.anon_vma_chain.lazy, Some(Side { objects: 9, bytes: 576, allocs: Some(9), frees: Some(9) }));
        assert!(!d.notes.iter().any(|n| n.starts_with("model not fed")), "{:?}", d.notes);
        // (6 − 2) × 96 + (12 − 4) × 64 = 896 bytes.
        assert_eq!((d.cgroups[0].id, d.cgroups[0].saved_kb), (7, 0.875));
        let p = &d.timeline[0];
        assert_eq!(
            (p.t_unix_ms, p.eager, p.lazy, p.observed),
            (1010, Some(ObjectCounts { anon_vma: 3, anon_vma_chain: 5 }), None, Some(Net { anon_vma: -1, anon_vma_chain: 2 }))
        );
        // A replay cut short: lost events unknown, said so rather than shown as a clean 0.
        assert!(d.notes.iter().any(|n| n.starts_with("lost events unknown")), "{:?}", d.notes);
    }

    #[test]
    fn lazy_rule_counts_pass_through_and_their_absence_is_said() {
        let af = |a: u64, f: u64| json!({ "alloc": a, "free": f });
        let fed = json!({ "anon_vma": af(6, 6), "anon_vma_chain": af(12, 12) });
        let d: Doc = serde_json::from_value(convert(&trace(fed.clone(), fed.clone())).unwrap()).unwrap();
        assert!(d.lazy_rules.is_none());
        assert!(d.notes.iter().any(|n| n.starts_with("lazy rule counts: not in this trace JSON")), "{:?}", d.notes);
        let mut c = lazyvma_model::lazy::RuleCounts::default();
        c.fire(lazyvma_model::lazy::Rule::L2);
        let mut t = trace(fed.clone(), fed);
        t["lazy_rules"] = crate::report::lazy_rules::json(&c);
        let d: Doc = serde_json::from_value(convert(&t).unwrap()).unwrap();
        assert_eq!(d.lazy_rules.as_ref().map(|r| (r["L2"].fired, r["L2"].status.as_str(), r["L1"].fired)), Some((1, "stated", 0)));
        t["lazy_rules"]["L2"]["fired"] = json!(-1);
        assert!(convert(&t).unwrap_err().starts_with("`lazy_rules`: "));
    }

    #[test]
    fn without_the_model_the_sides_are_null_and_said_so() {
        let d: Doc = serde_json::from_value(convert(&trace(Value::Null, Value::Null)).unwrap()).unwrap();
        assert_eq!((d.objects.anon_vma.eager.clone(), d.objects.anon_vma.lazy.clone()), (None, None));
        assert_eq!(d.objects.anon_vma.observed.as_ref().map(|s| s.objects), Some(6));
        assert!(d.notes.iter().any(|n| n.starts_with("model not fed")), "{:?}", d.notes);
        assert!(d.lazy_rules.is_none() && !d.notes.iter().any(|n| n.starts_with("lazy rule counts")), "{:?}", d.notes);
        assert_eq!(d.source, "trace");
    }
}
