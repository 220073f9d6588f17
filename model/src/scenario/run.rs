//! Run a scenario through eager + lazy, and check its `expect` lines.

use super::parse::{Expect, Item, Kind, Scenario, Scope, Side, Want};
use crate::counts::{Counter, Counts, Deltas, RmapStat};
use crate::event::{Event, RmapCaller};
use crate::kernel::Kernel;
use crate::knobs::Knobs;
use crate::lazy::RuleCounts;
use crate::pair::Pair;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{file}:{line}: {msg}")]
pub struct RunError {
    pub file: String,
    pub line: usize,
    pub msg: String,
}

#[derive(Clone, Debug)]
pub struct StepReport {
    pub line: usize,
    pub text: String,
    pub phase: String,
    pub eager: Deltas,
    pub lazy: Deltas,
}

/// One checked `expect` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub line: usize,
    pub text: String,
    /// `None` when it held; else what differed.
    pub failure: Option<String>,
}

pub struct Report {
    pub kernel: Kernel,
    pub knobs: Knobs,
    pub steps: Vec<StepReport>,
    pub eager: Counts,
    pub lazy: Counts,
    pub rules: RuleCounts,
    pub rmap: Vec<(RmapCaller, RmapStat, RmapStat)>,
    /// The expectations written for exactly this kernel and these knobs.
    pub checks: Vec<Check>,
}

struct State {
    pair: Pair,
    phase: String,
    phase_start: (Counts, Counts),
    last: (Deltas, Deltas),
}

fn config(sc: &Scenario, e: &Expect) -> (Kernel, Knobs) {
    let mut k = sc.knobs;
    for s in &e.knobs {
        k.set(s).expect("validated by the parser");
    }
    (e.kernel.unwrap_or(sc.kernel), k)
}

fn get(d: &Deltas, k: Kind) -> (u64, u64) {
    let x = match k {
        Kind::AnonVma => d.anon_vma,
        Kind::AnonVmaChain => d.anon_vma_chain,
        Kind::VmAreaStruct => d.vm_area_struct,
    };
    (x.alloc, x.free)
}

fn counter(c: &Counts, k: Kind) -> Counter {
    match k {
        Kind::AnonVma => c.anon_vma,
        Kind::AnonVmaChain => c.anon_vma_chain,
        Kind::VmAreaStruct => c.vm_area_struct,
    }
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::AnonVma => "av",
        Kind::AnonVmaChain => "avc",
        Kind::VmAreaStruct => "vma",
    }
}

fn eval(e: &Expect, st: &State) -> Option<String> {
    let lazy = e.side == Side::Lazy;
    let pick = |p: &(Counts, Counts)| if lazy { p.1 } else { p.0 };
    let now = pick(&st.pair.counts());
    let model = if lazy { st.pair.lazy() } else { st.pair.eager() };
    let mut bad = Vec::new();
    match &e.scope {
        Scope::Rules(rs) => {
            for (r, n) in rs {
                let got = model.rules().get(*r);
                if got != *n {
                    bad.push(format!("{}={got}", r.name()));
                }
            }
        }
        Scope::Rmap(c, fs) => {
            let (_, s) = model.rmap().find(|(x, _)| x == c).expect("every caller");
            for (f, n) in fs {
                let got = match f.as_str() {
                    "walks" => s.walks,
                    "locked" => s.locked,
                    "avoided" => s.lock_avoided,
                    _ => s.no_folio,
                };
                if got != *n {
                    bad.push(format!("{f}={got}"));
                }
            }
        }
        scope => {
            for &(k, w) in &e.items {
                let got = match scope {
                    Scope::Step => {
                        let d = if lazy { st.last.1 } else { st.last.0 };
                        Want::Delta(get(&d, k).0, get(&d, k).1)
                    }
                    Scope::Phase => {
                        let d = now.since(&pick(&st.phase_start));
                        Want::Delta(get(&d, k).0, get(&d, k).1)
                    }
                    Scope::Total => Want::Delta(counter(&now, k).alloc, counter(&now, k).free),
                    Scope::Live => Want::Count(counter(&now, k).live),
                    _ => Want::Count(counter(&now, k).peak),
                };
                if got != w {
                    bad.push(match got {
                        Want::Delta(a, f) => format!("{}=+{a}/-{f}", kind_name(k)),
                        Want::Count(n) => format!("{}={n}", kind_name(k)),
                    });
                }
            }
        }
    }
    (!bad.is_empty()).then(|| format!("got {}", bad.join(" ")))
}

fn run_config(sc: &Scenario, kernel: Kernel, knobs: Knobs, want: impl Fn(&Expect) -> bool) -> Result<(State, Vec<StepReport>, Vec<Check>), RunError> {
    let zero = (Counts::default(), Counts::default());
    let mut st = State { pair: Pair::new(kernel, knobs), phase: String::new(), phase_start: zero, last: Default::default() };
    let mut steps = Vec::new();
    let mut checks = Vec::new();
    for l in &sc.lines {
        match &l.item {
            Item::Event(ev) => {
                if let Event::Phase(name) = ev {
                    st.phase = name.clone();
                    st.phase_start = st.pair.counts();
                }
                st.last = st.pair.apply(ev).map_err(|e| RunError { file: sc.file.clone(), line: l.line, msg: e.to_string() })?;
                if !matches!(ev, Event::Phase(_)) {
                    steps.push(StepReport { line: l.line, text: l.text.clone(), phase: st.phase.clone(), eager: st.last.0, lazy: st.last.1 });
                }
            }
            Item::Expect(e) if want(e) => {
                checks.push(Check { line: l.line, text: l.text.clone(), failure: eval(e, &st) });
            }
            Item::Expect(_) => {}
            Item::SharesMm { .. } => {
                st.last = Default::default();
                steps.push(StepReport { line: l.line, text: l.text.clone(), phase: st.phase.clone(), eager: st.last.0, lazy: st.last.1 });
            }
        }
    }
    Ok((st, steps, checks))
}

/// Run with `kernel`/`knobs` (the file's unless overridden), checking the expectations
/// written for exactly this configuration.
pub fn run(sc: &Scenario, kernel: Option<Kernel>, knob_settings: &[String]) -> Result<Report, RunError> {
    let kernel = kernel.unwrap_or(sc.kernel);
    let mut knobs = sc.knobs;
    for s in knob_settings {
        knobs.set(s).map_err(|e| RunError { file: sc.file.clone(), line: 0, msg: e.to_string() })?;
    }
    let (st, steps, checks) = run_config(sc, kernel, knobs, |e| config(sc, e) == (kernel, knobs))?;
    let rmap = st.pair.eager().rmap().zip(st.pair.lazy().rmap()).map(|((c, e), (_, l))| (c, e, l)).collect();
    let (eager, lazy) = st.pair.counts();
    Ok(Report { kernel, knobs, steps, eager, lazy, rules: st.pair.lazy().rules().clone(), rmap, checks })
}

/// Check every `expect` line, each under its own kernel and knobs (one run per distinct
/// configuration).
pub fn verify(sc: &Scenario) -> Result<Vec<Check>, RunError> {
    let mut configs: Vec<(Kernel, Knobs)> = Vec::new();
    for l in &sc.lines {
        if let Item::Expect(e) = &l.item {
            let c = config(sc, e);
            if !configs.contains(&c) {
                configs.push(c);
            }
        }
    }
    let mut all = Vec::new();
    for (kernel, knobs) in configs {
        let (_, _, checks) = run_config(sc, kernel, knobs, |e| config(sc, e) == (kernel, knobs))?;
        all.extend(checks);
    }
    all.sort_by_key(|c| c.line);
    Ok(all)
}
