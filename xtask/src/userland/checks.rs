//! The run's results as the guest left them, and the checks `cargo xtask test` makes on them.
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
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON (stderr: {})", p.display(), err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("")))
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
        Ok(Run { dir: dir.to_path_buf(), services, trace: json(dir, "trace.json")?, snap_a: json(dir, "snapshot-A.json")?, snap_b: json(dir, "snapshot-B.json")?, times })
    }

    pub fn time(&self, step: &str) -> Option<f64> {
        self.times.iter().find(|t| t.0 == step).map(|t| t.1)
    }

    pub fn checks(&self) -> Vec<Verdict> {
        vec![self.services_active(), self.nothing_lost(), self.seeded(), self.model_exact(), self.b_agrees(), self.slab_and_objects()]
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
        Verdict {
            ok: lost == 0,
            what: format!("trace lost {lost} records (sent {}, received {}; default settings)", ev["sent"], ev["received"]),
        }
    }

    /// Reasons that mean "racing": the process was doing something the snapshot could not
    /// pin down (running, mid-syscall, mid-exec/fork). Anything else is a seeding failure.
    fn seeded(&self) -> Verdict {
        let m = &self.trace["model"];
        let seeded = m["seeded"].as_array().map_or(0, Vec::len);
        let not: BTreeMap<String, String> =
            m["not_seeded"].as_object().map(|o| o.iter().map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_string))).collect()).unwrap_or_default();
        let racing = |why: &str| ["running", "in flight", "racing", "raced", "mid-"].iter().any(|w| why.contains(w));
        let (race, other): (Vec<_>, Vec<_>) = not.iter().partition(|(_, why)| racing(why));
        let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, why) in &other {
            *reasons.entry(why.as_str()).or_default() += 1;
        }
        let named: Vec<String> = race.iter().map(|(pid, why)| format!("{pid}: {why}")).collect();
        let failed: Vec<String> = reasons.iter().map(|(why, n)| format!("{n}x \"{why}\"")).collect();
        let not_modelled = m["not_modelled"].as_array().map_or(0, Vec::len);
        Verdict {
            ok: other.is_empty() && seeded > 0,
            what: format!(
                "seeded {seeded} processes; racing, named: {}; not seeded otherwise: {}; not_modelled: {not_modelled}",
                if named.is_empty() { "none".into() } else { named.join("; ") },
                if failed.is_empty() { "none".into() } else { failed.join(", ") }
            ),
        }
    }

    /// eager (+ a lost prepare race's spares) == observed per process over the whole start-up,
    /// for every process the model followed.
    fn model_exact(&self) -> Verdict {
        let (mut model, mut slab) = (BTreeMap::<i64, [i64; 4]>::new(), BTreeMap::<i64, [i64; 4]>::new());
        let mut tgid = BTreeMap::<i64, i64>::new();
        for p in self.trace["phases"].as_array().into_iter().flatten() {
            let proc = p["proc"].as_i64().unwrap_or(-1);
            tgid.insert(proc, p["tgid"].as_i64().unwrap_or(-1));
            add(slab.entry(proc).or_default(), p);
            if !p["eager"].is_null() {
                let m = model.entry(proc).or_default();
                add(m, &p["eager"]);
                add(m, &p["prepare_race_spares"]);
            }
        }
        let modelled = model.len();
        let differ: Vec<String> = slab
            .iter()
            .filter(|(proc, s)| model.get(proc).is_some_and(|m| m != *s))
            .map(|(proc, s)| format!("tgid {} observed {s:?} eager {:?}", tgid[proc], model[proc]))
            .collect();
        let unmodelled = slab.keys().filter(|p| !model.contains_key(p)).count();
        let m = &self.trace["model"];
        Verdict {
            ok: differ.is_empty() && modelled > 0 && m["complete"] == true,
            what: format!(
                "model eager == observed [+AV -AV +AVC -AVC] for {} of {modelled} modelled processes ({unmodelled} with slab rows and no model; complete: {}, model_errors: {}){}",
                modelled - differ.len(),
                m["complete"],
                m["model_errors"],
                if differ.is_empty() { String::new() } else { format!("; differ: {}", differ.iter().take(8).cloned().collect::<Vec<_>>().join("; ")) }
            ),
        }
    }

    /// The whole system: A's objects reachable from VMAs + the trace's net (its last
    /// `observed_live`) == B's, but for lazyvma's own trace process, alive at the trace's
    /// end and gone at B (bounded by the `lazyvma` processes' objects at A). Per process the
    /// slab events count at the process in whose context they ran (a fork's at the parent,
    /// an exec's frees at the child), so a per-process comparison needs the model's live
    /// objects per process, which `trace -j` does not report yet.
    fn b_agrees(&self) -> Verdict {
        let get = |v: &Value, k: &str| v[k].as_i64().unwrap_or(0);
        let (a, b) = (&self.snap_a["total"]["eager"], &self.snap_b["total"]["eager"]);
        let net = self.trace["timeline"].as_array().and_then(|t| t.last()).map(|p| p["observed_live"].clone()).unwrap_or(Value::Null);
        let own = self.snap_a["processes"].as_array().into_iter().flatten().filter(|p| p["comm"] == "lazyvma");
        let (mut own_av, mut own_avc) = (0, 0);
        for p in own {
            own_av += get(&p["eager"], "anon_vma");
            own_avc += get(&p["eager"], "anon_vma_chain");
        }
        let d = |k: &str| get(a, k) + get(&net, k) - get(b, k);
        let (dav, davc) = (d("anon_vma"), d("anon_vma_chain"));
        Verdict {
            ok: !net.is_null() && dav.abs() <= own_av && davc.abs() <= own_avc,
            what: format!(
                "A + trace net == B (objects reachable from VMAs): AV {} + {} vs {} (diff {dav}), AVC {} + {} vs {} (diff {davc}); lazyvma's own at A: {own_av} AV / {own_avc} AVC",
                get(a, "anon_vma"),
                get(&net, "anon_vma"),
                get(b, "anon_vma"),
                get(a, "anon_vma_chain"),
                get(&net, "anon_vma_chain"),
                get(b, "anon_vma_chain")
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

/// [+AV, -AV, +AVC, -AVC] of a `{anon_vma: {alloc, free}, anon_vma_chain: {..}}`.
fn add(to: &mut [i64; 4], v: &Value) {
    let g = |o: &str, k: &str| v[o][k].as_i64().unwrap_or(0);
    for (i, x) in [g("anon_vma", "alloc"), g("anon_vma", "free"), g("anon_vma_chain", "alloc"), g("anon_vma_chain", "free")].into_iter().enumerate() {
        to[i] += x;
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
