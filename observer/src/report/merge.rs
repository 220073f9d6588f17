//! Many report documents → one fleet document: counts summed, histograms added bucket by
//! bucket (percentiles are read off the sum), one row per input kept in `hosts`.
use std::collections::{BTreeMap, BTreeSet};

use super::hist;
use super::lazy_rules::LazyRules;
use super::schema::{Doc, HostRow, ObjectRow, Objects, Side, Span, SCHEMA, VERSION};

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("nothing to merge")]
    Empty,
    #[error("{a} and {b} use different histogram contracts: (low {}, high {}, sigfig {}) vs (low {}, high {}, sigfig {})",
        .ca.low, .ca.high, .ca.sigfig, .cb.low, .cb.high, .cb.sigfig)]
    Contract { a: String, b: String, ca: super::schema::Contract, cb: super::schema::Contract },
    #[error("{a} and {b} are different schema versions ({va} vs {vb})")]
    Version { a: String, b: String, va: u64, vb: u64 },
    #[error("{a} and {b} modelled lazy with different knobs ({knob}: {va} vs {vb}): their lazy columns cannot be added")]
    Knobs { a: String, b: String, knob: String, va: String, vb: String },
    #[error("{a} is a {ka} report and {b} a {kb} report: their object counts mean different things (held now vs allocated over time)")]
    Kind { a: String, b: String, ka: String, kb: String },
    #[error("{a} and {b} disagree on the lazy rules ({problem}): their counts cannot be added")]
    Rules { a: String, b: String, problem: String },
    #[error("{file}: {problem}")]
    Hist { file: String, problem: String },
    #[error("{file}: the sum of {what} overflows: refused rather than wrapped")]
    Overflow { file: String, what: String },
}

/// A sum that would wrap is an error naming the file that made it overflow.
fn sum<T: num::Add>(file: &str, what: &str, a: T, b: T) -> Result<T, MergeError> {
    a.checked(b).ok_or_else(|| MergeError::Overflow { file: file.into(), what: what.into() })
}

mod num {
    pub trait Add: Sized {
        fn checked(self, b: Self) -> Option<Self>;
    }
    impl Add for i64 {
        fn checked(self, b: i64) -> Option<i64> {
            self.checked_add(b)
        }
    }
    impl Add for u64 {
        fn checked(self, b: u64) -> Option<u64> {
            self.checked_add(b)
        }
    }
}

fn add_side(file: &str, what: &str, a: &Option<Side>, b: &Option<Side>) -> Result<Option<Side>, MergeError> {
    let (Some(a), Some(b)) = (a.as_ref(), b.as_ref()) else { return Ok(None) };
    let opt = |x: Option<u64>, y: Option<u64>| -> Result<Option<u64>, MergeError> {
        Ok(match (x, y) {
            (Some(x), Some(y)) => Some(sum(file, what, x, y)?),
            _ => None,
        })
    };
    Ok(Some(Side {
        objects: sum(file, what, a.objects, b.objects)?,
        bytes: sum(file, what, a.bytes, b.bytes)?,
        allocs: opt(a.allocs, b.allocs)?,
        frees: opt(a.frees, b.frees)?,
    }))
}

/// A side missing from any input is missing from the sum: a partial total would read as whole.
fn add_row(file: &str, name: &str, a: &ObjectRow, b: &ObjectRow) -> Result<ObjectRow, MergeError> {
    let same = a.size == b.size;
    Ok(ObjectRow {
        size: if same { a.size } else { None },
        size_source: if same && a.size_source == b.size_source { a.size_source.clone() } else { None },
        observed: add_side(file, &format!("{name} observed"), &a.observed, &b.observed)?,
        eager: add_side(file, &format!("{name} eager"), &a.eager, &b.eager)?,
        lazy: add_side(file, &format!("{name} lazy"), &a.lazy, &b.lazy)?,
    })
}

fn add_objects(file: &str, a: &Objects, b: &Objects) -> Result<Objects, MergeError> {
    Ok(Objects {
        vm_area_struct: add_row(file, "vm_area_struct", &a.vm_area_struct, &b.vm_area_struct)?,
        anon_vma_chain: add_row(file, "anon_vma_chain", &a.anon_vma_chain, &b.anon_vma_chain)?,
        anon_vma: add_row(file, "anon_vma", &a.anon_vma, &b.anon_vma)?,
    })
}

fn host_rows(file: &str, d: &Doc) -> Vec<HostRow> {
    if !d.hosts.is_empty() {
        return d.hosts.clone();
    }
    vec![HostRow {
        host: d.host.clone(),
        file: file.into(),
        source: d.source.clone(),
        kernel: d.kernel.clone(),
        arch: d.arch.clone(),
        backend: d.backend.clone(),
        span: d.span.clone(),
        objects: d.objects.clone(),
        lost_events: d.lost_events,
    }]
}

fn check(inputs: &[(String, Doc)]) -> Result<(), MergeError> {
    let (fa, a) = &inputs[0];
    for (fb, b) in &inputs[1..] {
        if a.version != b.version {
            return Err(MergeError::Version { a: fa.clone(), b: fb.clone(), va: a.version, vb: b.version });
        }
        if a.kind() != b.kind() {
            return Err(MergeError::Kind { a: fa.clone(), b: fb.clone(), ka: a.kind().into(), kb: b.kind().into() });
        }
        if a.histograms.contract != b.histograms.contract {
            let (ca, cb) = (a.histograms.contract, b.histograms.contract);
            return Err(MergeError::Contract { a: fa.clone(), b: fb.clone(), ca, cb });
        }
    }
    // Knobs matter only between inputs that have a lazy side.
    let modelled: Vec<&(String, Doc)> = inputs.iter().filter(|(_, d)| !d.knobs.is_empty()).collect();
    if let Some((fa, a)) = modelled.first() {
        for (fb, b) in &modelled[1..] {
            let names: BTreeSet<&String> = a.knobs.keys().chain(b.knobs.keys()).collect();
            for k in names {
                let (va, vb) = (a.knobs.get(k), b.knobs.get(k));
                if va != vb {
                    let show = |v: Option<&String>| v.cloned().unwrap_or_else(|| "unset".into());
                    return Err(MergeError::Knobs { a: fa.clone(), b: fb.clone(), knob: k.clone(), va: show(va), vb: show(vb) });
                }
            }
        }
    }
    Ok(())
}

fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    Some(a?.min(b?))
}

fn max_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    Some(a?.max(b?))
}

/// `inputs`: (file name, document), already loaded and checked one by one.
pub fn merge(inputs: &[(String, Doc)]) -> Result<Doc, MergeError> {
    if inputs.is_empty() {
        return Err(MergeError::Empty);
    }
    check(inputs)?;
    let first = &inputs[0].1;
    let mut out = Doc {
        schema: SCHEMA.into(),
        version: VERSION,
        source: "merge".into(),
        host: String::new(),
        kernel: String::new(),
        arch: String::new(),
        backend: BTreeMap::new(),
        span: first.span.clone(),
        objects: first.objects.clone(),
        rules: BTreeMap::new(),
        rmap: BTreeMap::new(),
        histograms: super::schema::Histograms { contract: first.histograms.contract, series: BTreeMap::new() },
        lost_events: 0,
        knobs: inputs.iter().map(|(_, d)| &d.knobs).find(|k| !k.is_empty()).cloned().unwrap_or_default(),
        timeline: vec![],
        processes: vec![],
        cgroups: vec![],
        hosts: vec![],
        notes: vec![],
        rules_that_matter: None,
        lazy_rules: None,
        // Per-host facts: each input's own report keeps them.
        bpf_stats: BTreeMap::new(),
        recording: None,
        trace: None,
    };
    let mut hists: BTreeMap<String, (String, hdrhistogram::Histogram<u64>)> = BTreeMap::new();
    let (mut kernels, mut arches, mut rmap_keys) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for (i, (file, d)) in inputs.iter().enumerate() {
        if i > 0 {
            out.objects = add_objects(file, &out.objects, &d.objects)?;
            out.span = Span {
                start_unix_ms: min_opt(out.span.start_unix_ms, d.span.start_unix_ms),
                end_unix_ms: max_opt(out.span.end_unix_ms, d.span.end_unix_ms),
                elapsed_ms: 0.0,
            };
        }
        for (k, n) in &d.rules {
            let e = out.rules.entry(k.clone()).or_insert(0);
            *e = sum(file, &format!("rule {k}"), *e, *n)?;
        }
        rmap_keys.extend(d.rmap.keys().cloned());
        for (name, h) in &d.histograms.series {
            let decoded = hist::decode(name, h, d.histograms.contract).map_err(|e| MergeError::Hist { file: file.clone(), problem: e.to_string() })?;
            match hists.get_mut(name) {
                Some((_, total)) => {
                    if sum(file, &format!("histogram {name}"), total.len(), decoded.len())? > hist::MAX_SAMPLES {
                        return Err(MergeError::Hist {
                            file: file.clone(),
                            problem: format!("histogram `{name}`: over {} samples in the sum", hist::MAX_SAMPLES),
                        });
                    }
                    total.add(&decoded).map_err(|e| MergeError::Hist { file: file.clone(), problem: format!("{name}: {e:?}") })?
                }
                None => {
                    hists.insert(name.clone(), (h.unit.clone(), decoded));
                }
            }
        }
        out.lost_events = sum(file, "lost_events", out.lost_events, d.lost_events)?;
        kernels.insert(d.kernel.clone());
        arches.insert(d.arch.clone());
        let rows = host_rows(file, d);
        let host = |h: &Option<String>| h.clone().or_else(|| Some(d.host.clone()));
        out.timeline.extend(d.timeline.iter().cloned());
        out.processes.extend(d.processes.iter().cloned().map(|mut p| {
            p.host = host(&p.host);
            p
        }));
        out.cgroups.extend(d.cgroups.iter().cloned().map(|mut c| {
            c.host = host(&c.host);
            c
        }));
        for n in &d.notes {
            if !out.notes.contains(n) {
                out.notes.push(n.clone());
            }
        }
        out.hosts.extend(rows);
    }
    // A fact missing (null or absent) on any input is unknown for the fleet.
    for k in rmap_keys {
        let mut total = Some(0u64);
        for (file, d) in inputs {
            total = match (total, d.rmap.get(&k).copied().flatten()) {
                (Some(t), Some(v)) => Some(sum(file, &format!("rmap {k}"), t, v)?),
                _ => None,
            };
        }
        out.rmap.insert(k, total);
    }
    out.rules_that_matter = rules_that_matter(inputs, &mut out.notes)?;
    out.lazy_rules = lazy_rules(inputs, &mut out.notes)?;
    for (name, (unit, h)) in hists {
        let encoded = hist::encode_checked(&h, &unit).map_err(|e| MergeError::Hist { file: "merge".into(), problem: format!("histogram `{name}`: {e}") })?;
        out.histograms.series.insert(name, encoded);
    }
    if let (Some(s), Some(e)) = (out.span.start_unix_ms, out.span.end_unix_ms) {
        out.span.elapsed_ms = (e - s) as f64;
    } else {
        out.span.elapsed_ms = inputs.iter().map(|(_, d)| d.span.elapsed_ms).fold(0.0, f64::max);
    }
    let names: BTreeSet<&str> = out.hosts.iter().map(|h| h.host.as_str()).collect();
    out.host = format!("fleet of {} host{}", names.len(), if names.len() == 1 { "" } else { "s" });
    out.kernel = kernels.into_iter().collect::<Vec<_>>().join(", ");
    out.arch = arches.into_iter().collect::<Vec<_>>().join(", ");
    for h in &out.hosts {
        for (hook, b) in &h.backend {
            let e = out.backend.entry(hook.clone()).or_insert_with(|| b.clone());
            if e != b {
                *e = "mixed (see hosts)".into();
            }
        }
    }
    out.timeline.sort_by_key(|p| p.t_unix_ms);
    Ok(out)
}

/// Sweeps and histories add up when every input has one (`check` refused differing
/// knobs); a fleet sum missing some hosts would read as whole, so then there is none.
fn rules_that_matter(inputs: &[(String, Doc)], notes: &mut Vec<String>) -> Result<Option<lazyvma_model::sweep::Sweep>, MergeError> {
    let have: Vec<(&String, &lazyvma_model::sweep::Sweep)> = inputs.iter().filter_map(|(f, d)| d.rules_that_matter.as_ref().map(|s| (f, s))).collect();
    let Some(&(fa, first)) = have.first() else { return Ok(None) };
    // The rows' `base` marks are the knobs each sweep held: they must agree even where a
    // document's `knobs` is empty.
    let base = |s: &lazyvma_model::sweep::Sweep| -> BTreeMap<String, String> {
        s.sweep.iter().flat_map(|(k, vs)| vs.iter().filter(|(_, r)| r.base).map(move |(v, _)| (k.clone(), v.clone()))).collect()
    };
    let (ba, mut sum) = (base(first), first.clone());
    for &(fb, s) in &have[1..] {
        let bb = base(s);
        if let Some(k) = ba.keys().chain(bb.keys()).find(|k| ba.get(*k) != bb.get(*k)) {
            let show = |m: &BTreeMap<String, String>| m.get(k).cloned().unwrap_or_else(|| "unset".into());
            return Err(MergeError::Knobs { a: fa.clone(), b: fb.clone(), knob: k.clone(), va: show(&ba), vb: show(&bb) });
        }
        sum.add(s);
    }
    if have.len() < inputs.len() {
        notes.push(format!("rules_that_matter left out: only {} of {} inputs have a knob sweep", have.len(), inputs.len()));
        return Ok(None);
    }
    Ok(Some(sum))
}

/// `fired` summed per rule when every input has the counts (a partial fleet sum would
/// read as whole); inputs whose model versions tag a rule differently are refused.
fn lazy_rules(inputs: &[(String, Doc)], notes: &mut Vec<String>) -> Result<Option<LazyRules>, MergeError> {
    let have: Vec<(&String, &LazyRules)> = inputs.iter().filter_map(|(f, d)| d.lazy_rules.as_ref().map(|r| (f, r))).collect();
    let Some(&(fa, first)) = have.first() else { return Ok(None) };
    let mut sum = first.clone();
    for &(fb, r) in &have[1..] {
        super::lazy_rules::add(&mut sum, r).map_err(|problem| MergeError::Rules { a: fa.clone(), b: fb.clone(), problem })?;
    }
    if have.len() < inputs.len() {
        notes.push(format!("lazy_rules left out: only {} of {} inputs have lazy rule counts", have.len(), inputs.len()));
        return Ok(None);
    }
    Ok(Some(sum))
}

/// Hosts named by more than one input: their counts are added as if they were two machines.
pub fn repeated_hosts(d: &Doc) -> Vec<(String, usize)> {
    let mut n: BTreeMap<&str, usize> = BTreeMap::new();
    for h in &d.hosts {
        *n.entry(&h.host).or_insert(0) += 1;
    }
    n.into_iter().filter(|(_, c)| *c > 1).map(|(h, c)| (h.to_string(), c)).collect()
}
