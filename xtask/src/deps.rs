//! A test, not a command: no module of `observer/src` imports one that imports it back,
//! directly or around a circle (issue 11 found six such circles; none are left). A module
//! is a file (`a/b.rs`, `a/b/mod.rs` → `a::b`); an edge is any `crate::` or `super::` path
//! outside comments and the test module that names another module, not counting a module's
//! own ancestors and descendants (a parent re-exports its children). The binaries under
//! `bin/` are not modules of the library.
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Every module's source without comments and without its `#[cfg(test)] mod tests` (the
/// last item of a file: clippy's `items_after_test_module`).
fn modules(src: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().map(Result::unwrap) {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "bin") {
                    dirs.push(p);
                }
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = p.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel.iter().map(|c| c.to_string_lossy().into_owned()).collect();
            if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
                parts.pop();
            }
            let text = std::fs::read_to_string(&p).unwrap();
            let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
            let code: String = text.lines().map(|l| l.split("//").next().unwrap_or_default()).collect::<Vec<_>>().join("\n");
            out.entry(parts.join("::")).or_insert_with(String::new).push_str(&code);
        }
    }
    out
}

/// The paths a `use` group expands to: `a::{b, c::{d, e}}` → a::b, a::c::d, a::c::e.
fn expand(prefix: &str, group: &str, out: &mut Vec<String>) {
    let (mut depth, mut start) = (0, 0);
    let mut items = Vec::new();
    for (i, ch) in group.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&group[start..]);
    for item in items.into_iter().map(str::trim).filter(|s| !s.is_empty()) {
        match item.split_once("::{") {
            Some((head, rest)) => expand(&format!("{prefix}{head}::"), rest.strip_suffix('}').unwrap_or(rest), out),
            None if item.starts_with('{') => expand(prefix, item.trim_start_matches('{').trim_end_matches('}'), out),
            None => out.push(format!("{prefix}{item}")),
        }
    }
}

/// The module paths `code` names from `crate::` (absolute) and `super::` (relative to `at`).
fn paths(at: &str, code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (root, base) in [("crate::", String::new()), ("super::", at.rsplit_once("::").map_or(String::new(), |(p, _)| p.to_string()))] {
        let mut rest = code;
        while let Some(i) = rest.find(root) {
            let before = rest[..i].chars().last();
            rest = &rest[i + root.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let prefix = if base.is_empty() { String::new() } else { format!("{base}::") };
            if let Some(group) = rest.strip_prefix('{') {
                let mut depth = 1;
                let end = group.char_indices().find_map(|(j, c)| {
                    depth += i32::from(c == '{') - i32::from(c == '}');
                    (depth == 0).then_some(j)
                });
                expand(&prefix, &group[..end.unwrap_or(group.len())], &mut out);
            } else {
                let len = rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(rest.len());
                out.push(format!("{prefix}{}", rest[..len].trim_end_matches(':')));
            }
        }
    }
    out
}

fn related(a: &str, b: &str) -> bool {
    let under = |x: &str, y: &str| x.is_empty() || y.starts_with(&format!("{x}::"));
    under(a, b) || under(b, a)
}

fn graph(src: &Path) -> Graph {
    let mods = modules(src);
    let resolve = |p: &str| {
        let parts: Vec<&str> = p.split("::").map(str::trim).collect();
        (1..=parts.len()).rev().map(|n| parts[..n].join("::")).find(|m| mods.contains_key(m))
    };
    mods.iter()
        .map(|(m, code)| {
            let to = paths(m, code).iter().filter_map(|p| resolve(p)).filter(|t| t != m && !related(m, t)).collect();
            (m.clone(), to)
        })
        .collect()
}

/// Every group of modules that reach each other (Tarjan's strongly connected components of
/// more than one module): what a circle-free tree has none of.
fn circles(g: &Graph) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn strong<'a>(t: &mut T<'a>, v: &'a str) {
        let i = t.index.len();
        t.index.insert(v, i);
        t.low.insert(v, i);
        t.stack.push(v);
        for w in t.g.get(v).into_iter().flatten() {
            if !t.index.contains_key(w.as_str()) {
                strong(t, w);
                let lw = t.low[w.as_str()];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.stack.contains(&w.as_str()) {
                let iw = t.index[w.as_str()];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let at = t.stack.iter().rposition(|x| *x == v).unwrap();
            let comp: Vec<String> = t.stack.drain(at..).map(str::to_string).collect();
            if comp.len() > 1 {
                t.out.push(comp);
            }
        }
    }
    let mut t = T { g, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), out: Vec::new() };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            strong(&mut t, v);
        }
    }
    t.out
}

#[test]
fn observer_modules_import_in_one_direction() {
    let src = crate::util::workspace_root().join("observer/src");
    let g = graph(&src);
    assert!(g.len() > 50 && g.values().map(BTreeSet::len).sum::<usize>() > 150, "the graph looks unread: {g:?}");
    assert!(g["cli::serve"].contains("serve::passes") && g["trace::ingest::attach"].contains("load::backend"), "known edges missing: {g:?}");
    let groups: Vec<String> = circles(&g).iter().map(|c| c.join(" ↔ ")).collect();
    assert!(groups.is_empty(), "{} groups of modules in observer/src import each other: {}", groups.len(), groups.join("; "));
}

#[test]
fn a_circle_is_found_and_named() {
    let mut g = Graph::new();
    for (a, b) in [("record::meta", "trace::model_view"), ("trace::model_view", "trace::render"), ("trace::render", "record::meta"), ("cli", "trace::render")] {
        g.entry(a.into()).or_default().insert(b.into());
    }
    let c = circles(&g);
    assert_eq!(c.len(), 1, "{c:?}");
    let mut members = c[0].clone();
    members.sort();
    assert_eq!(members, ["record::meta", "trace::model_view", "trace::render"]);
    g.get_mut("trace::render").unwrap().clear();
    assert!(circles(&g).is_empty());
    let mut out = Vec::new();
    expand("", "a::{b, c::{d, e}}, f", &mut out);
    assert_eq!(out, ["a::b", "a::c::d", "a::c::e", "f"]);
    assert_eq!(
        paths("trace::feed::queue", "use super::{Feed, Queued}; crate::trace::order::x(); xcrate::no"),
        ["trace::order::x", "trace::feed::Feed", "trace::feed::Queued"]
    );
}

/// `LAZYVMA_DEPS_SRC=DIR cargo test -p xtask deps::count -- --ignored --nocapture`: the
/// edges and circles of another tree's observer/src (an old commit's `git archive`), for a
/// before/after.
#[test]
#[ignore]
fn count() {
    let src = std::env::var_os("LAZYVMA_DEPS_SRC").map_or_else(|| crate::util::workspace_root().join("observer/src"), std::path::PathBuf::from);
    let g = graph(&src);
    let groups = circles(&g);
    println!("{} modules, {} edges, {} groups of modules that import each other", g.len(), g.values().map(BTreeSet::len).sum::<usize>(), groups.len());
    for c in groups {
        println!("  {}", c.join(" ↔ "));
    }
}
