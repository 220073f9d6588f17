//! The cover letter's own measure: slab "active KB" from a /proc/slabinfo copy (under
//! `slab_nomerge`, one cache per object kind), beside a snapshot's objects reachable from
//! VMAs. The slab holds more than VMAs reach: anon_vmas kept alive by other processes'
//! chains or waiting for RCU, and SLUB counts every object of a CPU's active slab as active.
use std::{collections::BTreeMap, fmt::Write};

use anyhow::{bail, ensure, Result};

use super::render_text::{change, Style};
use super::schema::Doc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cache {
    pub active: u64,
    pub objsize: u64,
}

/// The caches of a slabinfo 2.x text, by name. Malformed lines are an error: a bad copy
/// must not print a table of zeros.
pub fn parse(text: &str) -> Result<BTreeMap<String, Cache>> {
    let mut lines = text.lines();
    ensure!(lines.next().is_some_and(|l| l.starts_with("slabinfo - version: 2.")), "not a /proc/slabinfo copy (no `slabinfo - version: 2.x` line)");
    let mut caches = BTreeMap::new();
    for l in lines.filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let w: Vec<&str> = l.split_whitespace().collect();
        let num = |i: usize| w.get(i).and_then(|v| v.parse::<u64>().ok());
        let (Some(name), Some(active), Some(objsize)) = (w.first(), num(1), num(3)) else {
            bail!("slabinfo: a line without name, active_objs and objsize");
        };
        caches.insert(name.to_string(), Cache { active, objsize });
    }
    Ok(caches)
}

/// Object | Before (active KB) | After (active KB) | Change, plus what VMAs reach: the
/// "after" is the slab less the objects the snapshot's lazy model would not hold.
pub fn render(d: &Doc, text: &str, style: Style) -> Result<String> {
    ensure!(d.kind() == "snapshot", "--slabinfo goes with a snapshot report (this is a {} report)", d.source);
    let caches = parse(text)?;
    let head = ["Object", "Before (active KB)", "After (active KB, est.)", "Change", "slab objects", "reachable from VMAs", "not reachable"];
    let mut rows = Vec::new();
    for (name, r) in d.objects.rows() {
        let Some(c) = caches.get(name) else {
            rows.push(vec![name.to_string(), "n/a (no such cache)".into(), String::new(), String::new(), String::new(), String::new(), String::new()]);
            continue;
        };
        let before = (c.active * c.objsize) as i64;
        let spared = match (r.eager.as_ref(), r.lazy.as_ref()) {
            (Some(e), Some(l)) => Some((e.objects - l.objects) * c.objsize as i64),
            _ => None,
        };
        let reach = r.observed.as_ref().map(|o| o.objects);
        rows.push(vec![
            name.to_string(),
            kb(before),
            spared.map_or("n/a".into(), |s| kb(before - s)),
            spared.map_or("n/a".into(), |s| change(before, before - s)),
            c.active.to_string(),
            reach.map_or("n/a".into(), |r| r.to_string()),
            reach.map_or("n/a".into(), |r| (c.active as i64 - r).to_string()),
        ]);
    }
    let mut o = String::new();
    let title = "Slab active KB (/proc/slabinfo: active_objs x objsize)";
    match style {
        Style::Text => {
            let _ = writeln!(o, "\n{title}:");
            for r in std::iter::once(head.map(String::from).to_vec()).chain(rows) {
                let _ = writeln!(o, "{}", r.join(" | "));
            }
        }
        Style::Markdown => {
            let _ = writeln!(o, "\n## {title}\n\n| {} |\n|{}", head.join(" | "), "---|".repeat(head.len()));
            for r in rows {
                let _ = writeln!(o, "| {} |", r.join(" | "));
            }
        }
    }
    let _ = writeln!(
        o,
        "\nAfter = the slab less (eager - lazy) objects of the snapshot. The slab holds more than VMAs reach: \
         anon_vmas kept by other processes' chains or waiting for RCU, and SLUB counts a CPU's active slab as active; \
         without slab_nomerge a merged cache also counts its aliases' objects."
    );
    Ok(o)
}

fn kb(bytes: i64) -> String {
    format!("{:.1}", bytes as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_slabinfo_and_refuses_other_text() {
        let t = "slabinfo - version: 2.1\n# name <active_objs> <num_objs> <objsize> ...\nanon_vma 1237 1326 104 39 1 : tunables 0 0 0 : slabdata 34 34 0\n";
        assert_eq!(parse(t).unwrap()["anon_vma"], Cache { active: 1237, objsize: 104 });
        assert!(parse("hello\n").is_err());
        assert!(parse("slabinfo - version: 2.1\nanon_vma x\n").is_err());
    }
}
