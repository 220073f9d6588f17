//! Reading one report file: JSON, schema and version, histograms under their contract.
//! A `lazyvma trace -j` file (no `schema` key yet) is read as a `TraceDoc` and made a
//! report document on the way in.
use serde_json::Value;
use std::path::Path;

use super::hist;
use super::schema::{Doc, SCHEMA, VERSION};
use super::trace_doc::{self, TraceDoc};

/// Every problem with an input file, always naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {problem}")]
pub struct LoadError {
    pub file: String,
    pub problem: String,
}

fn fail(path: &Path, problem: impl Into<String>) -> LoadError {
    LoadError { file: path.display().to_string(), problem: problem.into() }
}

pub fn load(path: &Path) -> Result<Doc, LoadError> {
    let text = crate::safe_out::read(path).map_err(|e| fail(path, format!("cannot read: {e}")))?;
    let value: Value = serde_json::from_slice(&text).map_err(|e| {
        if e.is_eof() {
            fail(path, format!("truncated JSON (ends at line {} column {})", e.line(), e.column()))
        } else {
            fail(path, format!("not JSON: {e}"))
        }
    })?;
    from_value(path, value)
}

pub fn from_value(path: &Path, value: Value) -> Result<Doc, LoadError> {
    let Some(obj) = value.as_object() else { return Err(fail(path, "not a lazyvma report: the JSON is not an object")) };
    let doc = if obj.get("schema").is_none() && trace_doc::is_trace(&value) {
        let trace: TraceDoc = serde_json::from_value(value).map_err(|e| fail(path, format!("trace JSON: {e}")))?;
        trace.report().map_err(|e| fail(path, format!("trace JSON: {e}")))?
    } else {
        document(path, value)?
    };
    for (name, h) in &doc.histograms.series {
        hist::decode(name, h, doc.histograms.contract).map_err(|e| fail(path, e.to_string()))?;
    }
    sane(&doc).map_err(|e| fail(path, e))?;
    Ok(doc)
}

/// A report document: its schema and version, then its keys.
fn document(path: &Path, value: Value) -> Result<Doc, LoadError> {
    match value.get("schema") {
        None => return Err(fail(path, format!("not a lazyvma report: no `schema` key (expected \"{SCHEMA}\")"))),
        Some(s) if s != SCHEMA => return Err(fail(path, format!("schema is {s}, not \"{SCHEMA}\""))),
        Some(_) => {}
    }
    match value.get("version").and_then(Value::as_u64) {
        Some(VERSION) => {}
        Some(v) if v > VERSION => {
            return Err(fail(path, format!("report schema version {v} is newer than this lazyvma reads (version {VERSION}): upgrade lazyvma")))
        }
        Some(v) => return Err(fail(path, format!("unknown report schema version {v} (this lazyvma reads version {VERSION})"))),
        None => return Err(fail(path, format!("no usable `version` (got {})", value.get("version").unwrap_or(&Value::Null)))),
    }
    serde_json::from_value(value).map_err(|e| fail(path, format!("malformed report: {e}")))
}

/// The sources lazyvma writes and the units its histograms use.
const SOURCES: [&str; 4] = ["snapshot", "trace", "replay", "merge"];
const UNITS: [&str; 2] = ["ns", "count"];

/// What serde's types let through but no lazyvma writes: a count below zero, a source or
/// unit of no known meaning. Refused, so a merge never adds them to real hosts.
fn sane(doc: &Doc) -> Result<(), String> {
    let known = |what: &str, v: &str, set: &[&str]| {
        if set.contains(&v) {
            Ok(())
        } else {
            Err(format!("unknown {what} `{}` (known: {})", crate::escape::ctl(v), set.join(", ")))
        }
    };
    known("source", &doc.source, &SOURCES)?;
    for h in &doc.hosts {
        known("source", &h.source, &SOURCES)?;
    }
    for (name, h) in &doc.histograms.series {
        known(&format!("unit of histogram `{}`", crate::escape::ctl(name)), &h.unit, &UNITS)?;
    }
    // A knob this lazyvma does not model would be compared and merged as if it did.
    let mut knobs: Vec<(&String, Vec<&String>)> = doc.knobs.iter().map(|(k, v)| (k, vec![v])).collect();
    if let Some(s) = &doc.rules_that_matter {
        knobs.extend(s.sweep.iter().map(|(k, values)| (k, values.keys().collect())));
        knobs.extend(s.not_run.iter().map(|(k, values)| (k, values.keys().collect())));
    }
    for (name, given) in knobs {
        let Some((_, values)) = lazyvma_model::knobs::KNOBS.iter().find(|(n, _)| n == name) else {
            let names: Vec<&str> = lazyvma_model::knobs::KNOBS.iter().map(|(n, _)| *n).collect();
            return Err(format!("unknown knob `{}` (known: {})", crate::escape::ctl(name), names.join(", ")));
        };
        for value in given {
            known(&format!("value of knob `{name}`"), value, values)?;
        }
    }
    fn rows(o: &super::schema::Objects) -> Vec<(&'static str, &'static str, Option<super::schema::Side>)> {
        o.rows()
            .into_iter()
            .flat_map(|(name, r)| [("observed", &r.observed), ("eager", &r.eager), ("lazy", &r.lazy)].map(|(side, s)| (name, side, s.clone())))
            .collect()
    }
    // A span that ends before it starts: the merged one's length would be negative (a
    // subtraction that wrapped, found by the fuzzer).
    for span in std::iter::once(&doc.span).chain(doc.hosts.iter().map(|h| &h.span)) {
        if let (Some(s), Some(e)) = (span.start_unix_ms, span.end_unix_ms) {
            if e < s {
                return Err(format!("span ends (end_unix_ms {e}) before it starts (start_unix_ms {s})"));
            }
        }
    }
    let mut all = rows(&doc.objects);
    for h in &doc.hosts {
        all.extend(rows(&h.objects));
    }
    for (name, side, s) in all {
        if let Some(s) = s {
            if s.objects < 0 || s.bytes < 0 {
                return Err(format!("{name} {side}: negative count ({} objects, {} bytes)", s.objects, s.bytes));
            }
        }
    }
    Ok(())
}
