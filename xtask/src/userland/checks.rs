//! The run's results as the guest left them, and the checks `cargo xtask userland` makes on them.
use crate::trace_rows::{counts, expected};
use anyhow::{Context, Result};
use serde_json::Value;
use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

pub struct Run {
    pub dir: PathBuf,
    /// unit → (state, MainPID).
    pub services: BTreeMap<String, (String, u32)>,
    pub trace: Value,
    pub snap_a: Value,
    pub snap_b: Value,
    /// Guest uptime (s) at each step of run.sh.
    pub times: Vec<(String, f64)>,
}

pub struct Verdict {
    pub ok: bool,
    pub what: String,
}

fn json(dir: &Path, name: &str) -> Result<Value> {
    let p = dir.join(name);
    let text = fs::read_to_string(&p).with_context(|| format!("the guest left no {}", p.display()))?;
    let err = fs::read_to_string(dir.join(name.replace(".json", ".err"))).unwrap_or_default();
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not JSON (stderr: {})", p.display(), err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("")))
}

impl Run {
    pub fn load(dir: &Path, units: &[&str]) -> Result<Run> {
        let mut services: BTreeMap<String, (String, u32)> = units.iter().map(|u| (u.to_string(), ("not reported".to_string(), 0))).collect();
        for l in fs::read_to_string(dir.join("services.txt")).unwrap_or_default().lines() {
            let w: Vec<&str> = l.split_whitespace().collect();
            if let [u, state, rest @ ..] = &w[..] {
                services.insert(u.to_string(), (state.to_string(), rest.first().and_then(|p| p.parse().ok()).unwrap_or(0)));
            }
        }
        let times = fs::read_to_string(dir.join("times.txt"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(' ')?;
                Some((k.to_string(), v.trim().parse().ok()?))
            })
            .collect();
        Ok(Run {
            dir: dir.to_path_buf(),
            services,
            trace: json(dir, "trace.json")?,
            snap_a: json(dir, "snapshot-A.json")?,
            snap_b: json(dir, "snapshot-B.json")?,
            times,
        })
    }

    pub fn time(&self, step: &str) -> Option<f64> {
        self.times.iter().find(|t| t.0 == step).map(|t| t.1)
    }

    pub fn checks(&self) -> Vec<Verdict> {
        let x = exactness(&self.trace);
        vec![self.services_active(), self.nothing_lost(), self.seeded(), self.model_exact(&x), self.b_agrees(&x), self.slab_and_objects()]
    }

    fn services_active(&self) -> Verdict {
        let bad: Vec<String> = self.services.iter().filter(|(_, s)| s.0 != "active").map(|(u, s)| format!("{u} ({})", s.0)).collect();
        let n = self.services.len();
        match bad.is_empty() {
            true => Verdict { ok: true, what: format!("all {n} services reached active") },
            false => Verdict { ok: false, what: format!("{} of {n} services not active: {}", bad.len(), bad.join(", ")) },
        }
    }

    fn nothing_lost(&self) -> Verdict {
        let lost = self.trace["lost_events"].as_u64().unwrap_or(u64::MAX);
        let ev = &self.trace["events"];
        Verdict { ok: lost == 0, what: format!("trace lost {lost} records (sent {}, received {}; default settings)", ev["sent"], ev["received"]) }
    }

    /// Every process the trace found running is seeded, or named with a reason that is a
    /// race (it was doing something the snapshot could not pin down: running, mid-syscall,
    /// mid-fault, a record between the pass's markers) or its end (gone before the pass was
    /// placed). Any other reason (a seed refusal, a lost marker, a failed pass) fails.
    fn seeded(&self) -> Verdict {
        let m = &self.trace["model"];
        let seeded = m["seeded"].as_array().map_or(0, Vec::len);
        let not: BTreeMap<String, String> =
            m["not_seeded"].as_object().map(|o| o.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect()).unwrap_or_default();
        let (mut named, mut failed) = (Vec::new(), BTreeMap::<String, usize>::new());
        for (pid, why) in &not {
            match accepted(why) {
                true => named.push(format!("{pid}: {why}")),
                false => *failed.entry(if why.is_empty() { "(no reason)".into() } else { why.clone() }).or_default() += 1,
            }
        }
        let failed: Vec<String> = failed.iter().map(|(why, n)| format!("{n}x \"{why}\"")).collect();
        Verdict {
            ok: failed.is_empty() && seeded > 0,
            what: format!(
                "seeded {seeded} of {} processes running at the start; racing or gone, named: {}; not seeded otherwise: {}",
                seeded + not.len(),
                if named.is_empty() { "none".into() } else { named.join("; ") },
                if failed.is_empty() { "none".into() } else { failed.join(", ") }
            ),
        }
    }

    /// Exact or flagged, per process over the whole start-up: observed == eager + a lost
    /// prepare race's spares + what was observed before the process's seed, or a row of
    /// the process says why not (`not_modelled`); a process with slab rows and no model is
    /// named in `not_modelled_why`. A mismatch nothing flags fails, and so does a flag
    /// with no reason.
    fn model_exact(&self, e: &Exactness) -> Verdict {
        let m = &self.trace["model"];
        let incomplete: Vec<String> = m["incomplete"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(String::from)).collect();
        // complete: false must say why.
        let unexplained = m["complete"] != true && incomplete.is_empty();
        let top = |h: &BTreeMap<String, usize>| h.iter().map(|(w, n)| format!("{n}x \"{w}\"")).collect::<Vec<_>>().join(", ");
        Verdict {
            ok: e.wrong.is_empty() && e.modelled > 0 && !unexplained,
            what: format!(
                "model exact or flagged per process: {} of {} modelled processes exact ({} of them flagged, exact anyway), {} differ and are flagged{}; {} with slab rows and no model, each named{}; complete: {}{}{}",
                e.exact,
                e.modelled,
                e.exact_flagged,
                e.flagged.values().sum::<usize>(),
                if e.flagged.is_empty() { String::new() } else { format!(" ({})", top(&e.flagged)) },
                e.unmodelled.values().sum::<usize>(),
                if e.unmodelled.is_empty() { String::new() } else { format!(" ({})", top(&e.unmodelled)) },
                m["complete"],
                if incomplete.is_empty() { String::new() } else { format!(" ({})", incomplete.join("; ")) },
                if e.wrong.is_empty() { String::new() } else { format!("; NOT FLAGGED: {}", e.wrong.iter().take(8).cloned().collect::<Vec<_>>().join("; ")) }
            ),
        }
    }

    /// State B (but lazyvma's own snapshot process) == the model's live objects at the
    /// trace's end (its last eager_live: the seed plus everything fed since), within what
    /// the rows the model could not match account for (flagged and unmodelled processes'
    /// net) and lazyvma's own objects at A (what moves in the seconds between the trace's
    /// end and B). A + the trace's observed net is printed beside it: processes forked while
    /// the programs attached (run.sh's tail | grep) are in the seed but their allocations
    /// are not in the net, so that sum falls short by theirs.
    ///
    /// A process the trace ends with alive but B does not list exited in between (after
    /// the end marker, or a service's worker recycled in the second before B): its live
    /// objects at the end (its rows' model net; a seeded one's objects at A besides, which
    /// also widen the bound, as A is not its seed) are taken off the model's side.
    fn b_agrees(&self, x: &Exactness) -> Verdict {
        let get = |v: &Value, k: &str| v[k].as_i64().unwrap_or(0);
        let (a, b) = (&self.snap_a["total"]["eager"], &self.snap_b["total"]["eager"]);
        let last = self.trace["timeline"].as_array().and_then(|t| t.last()).cloned().unwrap_or(Value::Null);
        let (net, model) = (&last["observed_live"], &last["eager_live"]);
        let own = |snap: &Value, k: &str| {
            snap["processes"].as_array().into_iter().flatten().filter(|p| p["comm"] == "lazyvma").map(|p| get(&p["eager"], k)).sum::<i64>()
        };
        let gone = gone_before_b(&self.trace, &self.snap_a, &self.snap_b);
        let mut parts = Vec::new();
        let mut ok = !model.is_null();
        for (i, k) in ["anon_vma", "anon_vma_chain"].into_iter().enumerate() {
            let b_k = get(b, k) - own(&self.snap_b, k);
            let model_k = get(model, k) - gone.live[i];
            let d = model_k - b_k;
            let bound = x.off[i] + own(&self.snap_a, k) + gone.seeded_at_a[i];
            // With a process forked in the trace gone before B, the model may hold more
            // than B by what that process held beyond its own net: B must not hold more.
            ok &= if gone.forked.is_empty() { d.abs() <= bound } else { d >= -bound };
            parts.push(format!(
                "{k}: model {model_k} vs B {b_k} (diff {d}, bound {bound}); A + observed net {} + {} = {}",
                get(a, k) - own(&self.snap_a, k),
                get(net, k),
                get(a, k) - own(&self.snap_a, k) + get(net, k)
            ));
        }
        let gone_text = match gone.tgids.is_empty() {
            true => "none".to_string(),
            false => format!(
                "{} (tgid {}; their {} AV, {} AVC taken off the model's side{})",
                gone.tgids.len(),
                gone.tgids.iter().map(i64::to_string).collect::<Vec<_>>().join(", "),
                gone.live[0],
                gone.live[1],
                match gone.forked.is_empty() {
                    true => String::new(),
                    false => format!(
                        "; {} forked during the trace ({}): a fork's objects are its parent's rows, so what it held at the end is known only from below and B is checked from one side: model ≥ B − bound",
                        gone.forked.len(),
                        gone.forked.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
                    ),
                }
            ),
        };
        if !ok {
            // What the next engineer needs when it fails in CI and the guest is gone.
            parts.push(b_facts(&self.trace, &self.snap_b));
        }
        Verdict {
            ok,
            what: format!(
                "B == the model's live objects at the trace's end (lazyvma's own snapshot process left out; exited between the end and B: {gone_text}): {}",
                parts.join("; ")
            ),
        }
    }

    /// Both levels, side by side: the slab holds more than VMAs reach (objects freed after
    /// an RCU grace period, anon_vmas kept by their children's chains, per-CPU slabs counted whole).
    fn slab_and_objects(&self) -> Verdict {
        let mut ok = true;
        let mut parts = Vec::new();
        for (state, snap) in [("A", &self.snap_a), ("B", &self.snap_b)] {
            for cache in ["vm_area_struct", "anon_vma_chain", "anon_vma"] {
                let slab = slab_active(&self.dir.join(format!("slabinfo-{state}.txt")), cache);
                let reach = snap["objects"][cache]["observed"]["objects"].as_i64();
                ok &= slab.is_some() && reach.is_some();
                parts.push(format!("{state} {cache} {}/{}", slab.map_or("n/a".into(), |s| s.0.to_string()), reach.map_or("n/a".into(), |r| r.to_string())));
            }
        }
        Verdict { ok, what: format!("slab active objects / objects reachable from VMAs: {}", parts.join(", ")) }
    }
}

/// Processes alive at the trace's end that B does not list.
#[derive(Default)]
struct Gone {
    tgids: Vec<i64>,
    /// (AV, AVC) the model held for them at the end: their rows' eager net, plus their
    /// objects at A when seeded.
    live: [i64; 2],
    /// The seeded ones' objects at A: an estimate of their seed, so a bound too.
    seeded_at_a: [i64; 2],
    /// Those forked during the trace: what each held at the end is only bounded below
    /// (`live` counts their own net, floored at 0), so B is checked from one side.
    forked: Vec<i64>,
}

fn gone_before_b(trace: &Value, snap_a: &Value, snap_b: &Value) -> Gone {
    let pids = |snap: &Value| -> BTreeMap<i64, [i64; 2]> {
        snap["processes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| Some((p["pid"].as_i64()?, [p["eager"]["anon_vma"].as_i64().unwrap_or(0), p["eager"]["anon_vma_chain"].as_i64().unwrap_or(0)])))
            .collect()
    };
    let (at_a, in_b) = (pids(snap_a), pids(snap_b));
    let seeded: Vec<i64> = trace["model"]["seeded"].as_array().into_iter().flatten().filter_map(Value::as_i64).collect();
    let mut g = Gone::default();
    for p in trace["processes"].as_array().into_iter().flatten() {
        let (Some(proc), Some(tgid)) = (p["proc"].as_i64(), p["tgid"].as_i64()) else { continue };
        if p["exited"] != false || in_b.contains_key(&tgid) {
            continue;
        }
        g.tgids.push(tgid);
        let mut net = [0i64; 2];
        for row in trace["phases"].as_array().into_iter().flatten().filter(|r| r["proc"].as_i64() == Some(proc)) {
            let m = counts(&row["eager"]);
            net[0] += m[0] - m[1];
            net[1] += m[2] - m[3];
        }
        if !seeded.contains(&tgid) {
            // Forked during the trace: what its fork allocated for it is in its parent's
            // rows, so it held at least its own net (and at least nothing) at the end, and
            // possibly more.
            g.forked.push(tgid);
            net = net.map(|n| n.max(0));
        }
        g.live[0] += net[0];
        g.live[1] += net[1];
        if seeded.contains(&tgid) {
            let a = at_a.get(&tgid).copied().unwrap_or_default();
            for (i, a) in a.iter().enumerate().take(2) {
                g.live[i] += a;
                g.seeded_at_a[i] += a;
            }
        }
    }
    g
}

/// When B disagrees: what of B itself could explain it (the model holds no per-process
/// live count in the trace's JSON, and a slab event belongs to the task that ran it, the
/// forking parent for its child's objects, so rows are no per-process stand-in). A process
/// the pass cut or could not finish is missing from B's totals; one B lists and the trace
/// never saw started after its end.
fn b_facts(trace: &Value, snap_b: &Value) -> String {
    let known: std::collections::BTreeSet<i64> = trace["processes"].as_array().into_iter().flatten().filter_map(|p| p["tgid"].as_i64()).collect();
    let new: Vec<String> = snap_b["processes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["comm"] != "lazyvma" && p["pid"].as_i64().is_some_and(|t| !known.contains(&t)))
        .map(|p| format!("{} {} ({} AV)", p["pid"], p["comm"].as_str().unwrap_or("?"), p["eager"]["anon_vma"]))
        .collect();
    format!(
        "B's pass: incomplete_processes {}, truncated_vmas {}, cut {}, lost {}; in B, not in the trace: {}",
        snap_b["incomplete_processes"],
        snap_b["truncated_vmas"],
        snap_b["pass"]["cut"],
        snap_b["lost_events"],
        if new.is_empty() { "none".to_string() } else { new.join(", ") }
    )
}

/// A seed's reason that is a race or an end, not a failure of the seed.
fn accepted(why: &str) -> bool {
    [
        "running when the snapshot",
        "in syscall",
        "outside a syscall",
        "in a VMA syscall across",
        "raced the snapshot",
        "exited before the snapshot",
        "not in the snapshot",
    ]
    .iter()
    .any(|w| why.contains(w))
}

/// Per process (the trace's `proc`) over all its rows: exact, flagged, or neither.
#[derive(Default)]
struct Exactness {
    pub modelled: usize,
    pub exact: usize,
    /// Exact though a row is flagged.
    pub exact_flagged: usize,
    /// Mismatches by the (first) reason flagging them.
    pub flagged: BTreeMap<String, usize>,
    /// Processes with slab rows and no model, by reason.
    pub unmodelled: BTreeMap<String, usize>,
    /// Neither exact nor flagged with a reason.
    pub wrong: Vec<String>,
    /// |observed net - model net| (AV, AVC) over the processes not exact (flagged, unmodelled).
    pub off: [i64; 2],
}

/// Per process: observed, eager, flagged, why not modelled, tgid.
type ProcRow = ([i64; 4], [i64; 4], bool, Option<String>, i64);

fn exactness(trace: &Value) -> Exactness {
    let mut procs: BTreeMap<i64, ProcRow> = BTreeMap::new();
    for p in trace["phases"].as_array().into_iter().flatten() {
        let e = procs.entry(p["proc"].as_i64().unwrap_or(-1)).or_default();
        e.4 = p["tgid"].as_i64().unwrap_or(-1);
        add(&mut e.0, counts(p));
        if let Some(model) = expected(p) {
            e.2 = true;
            add(&mut e.1, model);
        }
        if let Some(why) = p.get("not_modelled") {
            e.3.get_or_insert_with(|| why.as_str().unwrap_or("").to_string());
        }
    }
    let why_not: BTreeMap<i64, String> = trace["model"]["not_modelled_why"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| (w["proc"].as_i64().unwrap_or(-1), w["why"].as_str().unwrap_or("").to_string()))
        .collect();
    let mut x = Exactness::default();
    for (proc, (obs, model, modelled, flag, tgid)) in procs {
        let flag = flag.filter(|w| !w.is_empty());
        for i in 0..2 {
            x.off[i] += ((obs[2 * i] - obs[2 * i + 1]) - (model[2 * i] - model[2 * i + 1])).abs();
        }
        if !modelled {
            // Named in not_modelled_why, or its rows flagged (a teardown it ran for another).
            match why_not.get(&proc).filter(|w| !w.is_empty()).or(flag.as_ref()) {
                Some(why) => *x.unmodelled.entry(why.clone()).or_default() += 1,
                None if obs == [0; 4] => {}
                None => x.wrong.push(format!("tgid {tgid} observed {obs:?}, no model and no reason")),
            }
            continue;
        }
        x.modelled += 1;
        match (obs == model, flag) {
            (true, f) => {
                x.exact += 1;
                x.exact_flagged += f.is_some() as usize;
            }
            (false, Some(why)) => *x.flagged.entry(why).or_default() += 1,
            (false, None) => x.wrong.push(format!("tgid {tgid} observed {obs:?} model {model:?}")),
        }
    }
    x
}

/// `to` += `v`, element by element.
fn add(to: &mut [i64; 4], v: [i64; 4]) {
    for (t, x) in to.iter_mut().zip(v) {
        *t += x;
    }
}

/// (active_objs, objsize) of `cache` in a /proc/slabinfo copy.
pub fn slab_active(file: &Path, cache: &str) -> Option<(u64, u64)> {
    let text = fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        (w.first() == Some(&cache)).then(|| Some((w.get(1)?.parse().ok()?, w.get(3)?.parse().ok()?)))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(proc: i64, tgid: i64, av: [i64; 2], avc: [i64; 2]) -> Value {
        let c = json!({ "anon_vma": { "alloc": av[0], "free": av[1] }, "anon_vma_chain": { "alloc": avc[0], "free": avc[1] } });
        json!({ "proc": proc, "tgid": tgid, "phase": null, "anon_vma": c["anon_vma"], "anon_vma_chain": c["anon_vma_chain"], "eager": c })
    }

    fn snap(procs: &[(i64, &str, i64, i64)]) -> Value {
        let p: Vec<Value> =
            procs.iter().map(|&(pid, comm, av, avc)| json!({ "pid": pid, "comm": comm, "eager": { "anon_vma": av, "anon_vma_chain": avc } })).collect();
        let (av, avc) = procs.iter().fold((0, 0), |s, p| (s.0 + p.2, s.1 + p.3));
        json!({ "processes": p, "total": { "eager": { "anon_vma": av, "anon_vma_chain": avc } } })
    }

    /// A seeded process (tgid 1, 5 AV at A and seed) forks a worker (tgid 20) that builds
    /// 97 AV / 192 AVC and exits after the trace's end, before B: B holds the seeded
    /// process's objects alone, and the worker's are taken off the model's side, exactly.
    #[test]
    fn a_process_gone_between_the_end_and_b_is_not_a_mismatch() {
        let trace = json!({
            "model": { "seeded": [1], "complete": true },
            "processes": [
                { "proc": 0, "tgid": 1, "exited": false },
                { "proc": 1, "tgid": 20, "exited": false },
                { "proc": 2, "tgid": 21, "exited": true },
            ],
            "phases": [row(1, 20, [100, 3], [200, 8]), row(2, 21, [4, 4], [8, 8])],
            "timeline": [{ "t_ms": 1, "observed_live": { "anon_vma": 97, "anon_vma_chain": 192 }, "eager_live": { "anon_vma": 102, "anon_vma_chain": 200 } }],
        });
        let run = |b: Value| {
            let r =
                Run { dir: PathBuf::new(), services: BTreeMap::new(), trace: trace.clone(), snap_a: snap(&[(1, "systemd", 5, 8)]), snap_b: b, times: vec![] };
            let x = exactness(&r.trace);
            r.b_agrees(&x)
        };
        let v = run(snap(&[(1, "systemd", 5, 8)]));
        assert!(v.ok, "{}", v.what);
        assert!(v.what.contains("exited between the end and B: 1 (tgid 20; their 97 AV, 192 AVC"), "{}", v.what);
        assert!(v.what.contains("anon_vma: model 5 vs B 5 (diff 0, bound 0)"), "{}", v.what);
        // Worker 20 forked during the trace: held at least its net (97 AV) at the end,
        // maybe more (its fork's objects are tgid 1's rows). The model holding more than B
        // passes; B holding more does not.
        assert!(v.what.contains("1 forked during the trace (20)"), "{}", v.what);
        let more = Run {
            dir: PathBuf::new(),
            services: BTreeMap::new(),
            trace: trace.clone(),
            snap_a: snap(&[(1, "systemd", 5, 8)]),
            snap_b: snap(&[(1, "systemd", 4, 6)]),
            times: vec![],
        };
        assert!(more.b_agrees(&exactness(&more.trace)).ok);
        let fewer = Run { snap_b: snap(&[(1, "systemd", 7, 8)]), ..more };
        assert!(!fewer.b_agrees(&exactness(&fewer.trace)).ok);
        // A worker's rows can be negative (it freed its fork's objects): floored at 0.
        let mut t = trace.clone();
        t["phases"][0] = row(1, 20, [3, 40], [0, 100]);
        let neg = Run {
            dir: PathBuf::new(),
            services: BTreeMap::new(),
            trace: t,
            snap_a: snap(&[(1, "systemd", 5, 8)]),
            snap_b: snap(&[(1, "systemd", 5, 8)]),
            times: vec![],
        };
        let v2 = neg.b_agrees(&exactness(&neg.trace));
        assert!(v2.what.contains("their 0 AV, 0 AVC"), "{}", v2.what);
        // Alive in B, but holding a different count than the model: a mismatch, with B's facts.
        let v = run(snap(&[(1, "systemd", 5, 8), (20, "worker", 90, 192)]));
        assert!(!v.ok, "{}", v.what);
        assert!(v.what.contains("in B, not in the trace: none"), "{}", v.what);
        // The seeded process gone: its objects at A taken off, and a bound of as much.
        let v = run(snap(&[(20, "worker", 97, 192)]));
        assert!(v.ok && v.what.contains("bound 5)"), "{}", v.what);
    }
}
