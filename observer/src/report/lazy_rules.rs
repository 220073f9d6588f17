//! The lazy model's rule counts (spec §3.2), each with its tag, in one shape for
//! `model -j`'s `rules`, `trace -j` / `replay -j`'s `lazy_rules` and the report's
//! `lazy_rules` section: rule name → {fired, status, what}.
use lazyvma_model::lazy::{Rule, RuleCounts, Status};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LazyRule {
    pub fired: u64,
    /// `stated` (quoted from the series), `inferred` (deduced from it) or `open` (a knob decides).
    pub status: String,
    pub what: String,
}

/// Every rule, fired or not, so a 0 is a count and not a rule this version lacks.
pub type LazyRules = BTreeMap<String, LazyRule>;

pub fn status_name(s: Status) -> &'static str {
    match s {
        Status::Stated => "stated",
        Status::Inferred => "inferred",
        Status::Open => "open",
    }
}

pub fn from_counts(c: &RuleCounts) -> LazyRules {
    c.iter().map(|(r, n)| (r.name().to_string(), LazyRule { fired: n, status: status_name(r.status()).into(), what: r.what().into() })).collect()
}

/// The spec's order (L1, L1b, L2, ..., L18); names this version does not know go last.
pub fn in_order(rules: &LazyRules) -> Vec<(&String, &LazyRule)> {
    let rank = |name: &str| Rule::ALL.iter().position(|r| r.name() == name).unwrap_or(usize::MAX);
    let mut v: Vec<_> = rules.iter().collect();
    v.sort_by(|a, b| rank(a.0).cmp(&rank(b.0)).then(a.0.cmp(b.0)));
    v
}

/// A fleet's counts: `fired` summed per rule. Two documents that tag or describe a rule
/// differently come from model versions that disagree on it: their counts do not add.
pub fn add(sum: &mut LazyRules, other: &LazyRules) -> Result<(), String> {
    for (name, r) in other {
        match sum.get_mut(name) {
            Some(s) if s.status != r.status || s.what != r.what => {
                return Err(format!("rule {name} is `{}: {}` in one and `{}: {}` in the other", s.status, s.what, r.status, r.what));
            }
            Some(s) => s.fired += r.fired,
            None => {
                sum.insert(name.clone(), r.clone());
            }
        }
    }
    Ok(())
}

/// Text/markdown rows of the fired rules: (rule, status, fired, what), and how many did not fire.
pub fn fired_rows(rules: &LazyRules) -> (Vec<[String; 4]>, usize) {
    let all = in_order(rules);
    let rows: Vec<[String; 4]> =
        all.iter().filter(|(_, r)| r.fired > 0).map(|(n, r)| [n.to_string(), r.status.clone(), r.fired.to_string(), r.what.clone()]).collect();
    let idle = all.len() - rows.len();
    (rows, idle)
}

pub const HEAD: [&str; 4] = ["Rule", "Status", "Fired", "What"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_with_its_tag_in_the_spec_order() {
        let mut c = RuleCounts::default();
        c.fire(Rule::L2);
        c.fire(Rule::L2);
        c.fire(Rule::L10b);
        let r = from_counts(&c);
        assert_eq!(r.len(), Rule::ALL.len());
        assert_eq!(r["L2"], LazyRule { fired: 2, status: "stated".into(), what: Rule::L2.what().into() });
        assert_eq!(r["L5"].status, "open");
        let names: Vec<&str> = in_order(&r).iter().map(|(n, _)| n.as_str()).take(4).collect();
        assert_eq!(names, ["L1", "L1b", "L2", "L3"]);
        let (rows, idle) = fired_rows(&r);
        assert_eq!(rows.iter().map(|r| (r[0].as_str(), r[2].as_str())).collect::<Vec<_>>(), [("L2", "2"), ("L10b", "1")]);
        assert_eq!(idle, Rule::ALL.len() - 2);
    }

    #[test]
    fn sums_agree_on_tags_or_refuse() {
        let mut c = RuleCounts::default();
        c.fire(Rule::L1);
        let (mut a, b) = (from_counts(&c), from_counts(&c));
        add(&mut a, &b).unwrap();
        assert_eq!(a["L1"].fired, 2);
        let mut other = b.clone();
        other.get_mut("L1").unwrap().status = "inferred".into();
        let e = add(&mut a, &other).unwrap_err();
        assert!(e.contains("rule L1 is `stated:") && e.contains("`inferred:"), "{e}");
    }
}
