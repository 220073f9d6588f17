//! `lazyvma model FILE --sweep`: the scenario under every value of every lazy knob, and
//! what lazy VMAs went through before their first share (issue 5).
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use lazyvma_model::kernel::Kernel;
use lazyvma_model::scenario::{Item, Scenario};
use lazyvma_model::sweep::{sweep, Sweep, SweepError};
use serde_json::{json, Value};

pub fn run(name: &str, sc: &Scenario, kernel: Option<Kernel>, settings: &[String], json_out: bool) -> anyhow::Result<()> {
    let kernel = kernel.unwrap_or(sc.kernel);
    let mut knobs = sc.knobs;
    for s in settings {
        knobs.set(s)?;
    }
    let (lines, events): (Vec<usize>, Vec<_>) =
        sc.lines.iter().filter_map(|l| if let Item::Event(e) = &l.item { Some((l.line, e.clone())) } else { None }).unzip();
    let s = sweep(&events, kernel, &knobs).map_err(|e| match e {
        SweepError::Event { index, source, .. } => anyhow::anyhow!("{name}:{}: {source}", lines[index]),
        e => anyhow::anyhow!("{name}: {e}"),
    })?;
    if json_out {
        let mut v = serde_json::to_value(&s)?;
        v["kernel"] = json!(kernel.name());
        v["knobs"] = knobs.pairs().into_iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<String, Value>>().into();
        super::emit(&(crate::escape::json_pretty(&v)? + "\n"))
    } else {
        super::emit(&text(name, kernel, &s))
    }
}

fn signed(n: i64) -> String {
    if n > 0 {
        format!("+{n}")
    } else {
        n.to_string()
    }
}

fn text(name: &str, kernel: Kernel, s: &Sweep) -> String {
    let mut out = format!("{name}: kernel {} rules; every knob value with the others at their base (*)\n", kernel.name());
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(vec!["knob", "value", "AV alloc", "AVC alloc", "AV peak", "AVC peak", "VMA peak", "saved AV peak", "saved AVC peak"]);
    let e = &s.eager;
    t.add_row(vec![
        "eager (today)".into(),
        "".into(),
        e.anon_vma.alloc.to_string(),
        e.anon_vma_chain.alloc.to_string(),
        e.anon_vma.peak.to_string(),
        e.anon_vma_chain.peak.to_string(),
        e.vm_area_struct.peak.to_string(),
        "".into(),
        "".into(),
    ]);
    let mut matter = Vec::new();
    for (knob, rows) in s.knobs() {
        if rows.values().any(|r| r.lazy != rows.values().next().map(|f| f.lazy).unwrap_or_default()) {
            matter.push(knob);
        }
        for (value, r) in rows {
            let l = &r.lazy;
            t.add_row(vec![
                knob.to_string(),
                format!("{value}{}", if r.base { " *" } else { "" }),
                l.anon_vma.alloc.to_string(),
                l.anon_vma_chain.alloc.to_string(),
                l.anon_vma.peak.to_string(),
                l.anon_vma_chain.peak.to_string(),
                l.vm_area_struct.peak.to_string(),
                signed(r.saved.anon_vma_peak),
                signed(r.saved.anon_vma_chain_peak),
            ]);
        }
    }
    out += &format!("{t}\nknobs that change lazy counts here: {}\n", if matter.is_empty() { "none".into() } else { matter.join(", ") });
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(vec!["lazy VMAs that were", "then shared (fork)", "never shared"]);
    for (what, o) in s.lazy_vma_history.rows() {
        let what = if what == "lazy" { "lazy (all)".to_string() } else { what.replace('_', " ") };
        t.add_row(vec![what, o.shared.to_string(), o.never_shared.to_string()]);
    }
    out + &format!("{t}\n")
}
