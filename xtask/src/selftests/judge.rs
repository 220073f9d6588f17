//! One `lazyvma trace -j` report judged per (process, phase) row: exact (the model fed by
//! the trace allocated and freed what the slab saw), flagged (not exact, and the report
//! says why: `complete: false` with its reasons, or the row's own `not_modelled`), or
//! wrong (not exact while the report claims to be: the one thing the suite fails on).
use crate::trace_rows::{counts, expected};
use serde_json::Value;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub rows: usize,
    pub exact: usize,
    pub flagged: usize,
    pub wrong: usize,
    pub complete: bool,
    /// The model's reasons for `complete: false`, as the report gives them.
    pub reasons: Vec<String>,
    pub lost: u64,
}

pub fn judge(report: &Value) -> Result<Verdict, String> {
    let model = &report["model"];
    let complete = model["complete"].as_bool().ok_or("the report has no model.complete (was the model fed?)")?;
    let rows = report["phases"].as_array().ok_or("the report has no phases")?;
    let mut v = Verdict {
        rows: rows.len(),
        complete,
        reasons: model["incomplete"].as_array().into_iter().flatten().filter_map(|r| r.as_str().map(str::to_string)).collect(),
        lost: report["lost_events"].as_u64().unwrap_or(0),
        ..Verdict::default()
    };
    for r in rows {
        if expected(r).is_some_and(|e| e == counts(r)) {
            v.exact += 1;
        } else if !complete || r.get("not_modelled").is_some_and(|w| w.is_string()) {
            v.flagged += 1;
        } else {
            v.wrong += 1;
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(obs: [u64; 2], eager: [u64; 2]) -> Value {
        let c = |[av, avc]: [u64; 2]| json!({"anon_vma": {"alloc": av, "free": av}, "anon_vma_chain": {"alloc": avc, "free": avc}});
        let mut r = c(obs);
        r["eager"] = c(eager);
        r
    }

    #[test]
    fn a_wrong_row_is_flagged_only_by_a_reason() {
        let rep = |complete: bool| {
            json!({"model": {"complete": complete, "incomplete": ["2 unmodelled: mremap grow in place"]},
            "phases": [row([3, 4], [3, 4]), row([3, 5], [3, 4])], "lost_events": 0})
        };
        let v = judge(&rep(false)).unwrap();
        assert_eq!((v.rows, v.exact, v.flagged, v.wrong), (2, 1, 1, 0));
        assert_eq!(v.reasons, ["2 unmodelled: mremap grow in place"]);
        let v = judge(&rep(true)).unwrap();
        assert_eq!((v.exact, v.flagged, v.wrong), (1, 0, 1));
        let mut named = rep(true);
        named["phases"][1]["not_modelled"] = json!("running before the trace");
        assert_eq!(judge(&named).unwrap().flagged, 1);
        let mut spares = rep(true);
        spares["phases"][1]["prepare_race_spares"] = json!({"anon_vma_chain": {"alloc": 1, "free": 1}});
        assert_eq!(judge(&spares).unwrap().exact, 2);
        assert!(judge(&json!({"phases": []})).is_err());
    }
}
