//! The `rules_that_matter` section (issue 5) as table rows, each cell with the key the
//! HTML page tags it with (`data-k`), so text, markdown and HTML show the same numbers.
use lazyvma_model::sweep::{Objects, Sweep};

pub const SWEEP_HEAD: [&str; 10] = [
    "Knob",
    "Value",
    "Base",
    "anon_vma allocs",
    "anon_vma_chain allocs",
    "anon_vma peak",
    "anon_vma_chain peak",
    "vm_area_struct peak",
    "saved anon_vma peak",
    "saved anon_vma_chain peak",
];

pub const HISTORY_HEAD: [&str; 3] = ["Lazy VMAs that were", "then shared (fork)", "never shared"];

/// (data-k, shown) per cell.
pub type Row = Vec<(String, String)>;

fn objects(prefix: &str, o: &Objects) -> Row {
    [
        ("anon_vma.alloc", o.anon_vma.alloc),
        ("anon_vma_chain.alloc", o.anon_vma_chain.alloc),
        ("anon_vma.peak", o.anon_vma.peak),
        ("anon_vma_chain.peak", o.anon_vma_chain.peak),
        ("vm_area_struct.peak", o.vm_area_struct.peak),
    ]
    .into_iter()
    .map(|(k, v)| (format!("{prefix}.{k}"), v.to_string()))
    .collect()
}

/// Eager first (the baseline of every row), then every knob value.
pub fn sweep_rows(s: &Sweep) -> Vec<Row> {
    let k = |rest: &str| format!("rules_that_matter.{rest}");
    let mut eager = vec![(k("eager.name"), "eager (today)".to_string()), (String::new(), String::new()), (String::new(), String::new())];
    eager.extend(objects(&k("eager"), &s.eager));
    eager.extend([(String::new(), String::new()), (String::new(), String::new())]);
    let mut rows = vec![eager];
    for (knob, values) in s.knobs() {
        for (value, r) in values {
            let at = k(&format!("sweep.{knob}.{value}"));
            let mut row = vec![
                (format!("{at}.knob"), knob.to_string()),
                (format!("{at}.value"), value.clone()),
                (format!("{at}.base"), if r.base { "yes".into() } else { String::new() }),
            ];
            row.extend(objects(&format!("{at}.lazy"), &r.lazy));
            row.push((format!("{at}.saved.anon_vma_peak"), r.saved.anon_vma_peak.to_string()));
            row.push((format!("{at}.saved.anon_vma_chain_peak"), r.saved.anon_vma_chain_peak.to_string()));
            rows.push(row);
        }
        // A value whose run could not start (a seeded trace's): shown, never left out.
        for (value, why) in s.not_run.get(knob).into_iter().flatten() {
            let at = k(&format!("not_run.{knob}.{value}"));
            let mut row = vec![(format!("{at}.knob"), knob.to_string()), (format!("{at}.value"), value.clone()), (String::new(), String::new())];
            row.push((at, format!("not run: {why}")));
            row.extend((0..6).map(|_| (String::new(), String::new())));
            rows.push(row);
        }
    }
    rows
}

pub fn history_rows(s: &Sweep) -> Vec<Row> {
    s.lazy_vma_history
        .rows()
        .iter()
        .map(|(what, o)| {
            let at = format!("rules_that_matter.lazy_vma_history.{what}");
            vec![
                (format!("{at}.name"), if *what == "lazy" { "lazy (all)".into() } else { what.replace('_', " ") }),
                (format!("{at}.shared"), o.shared.to_string()),
                (format!("{at}.never_shared"), o.never_shared.to_string()),
            ]
        })
        .collect()
}

/// `knob=value` → saved peak objects of one kind, for the HTML bars.
pub fn saved_bars(s: &Sweep, chain: bool) -> Vec<(String, f64)> {
    s.knobs()
        .into_iter()
        .flat_map(|(knob, values)| {
            values.iter().map(move |(v, r)| {
                let n = if chain { r.saved.anon_vma_chain_peak } else { r.saved.anon_vma_peak };
                (format!("{knob}={v}"), n as f64)
            })
        })
        .collect()
}
