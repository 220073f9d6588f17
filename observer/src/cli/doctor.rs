//! `lazyvma doctor`: what this kernel lets lazyvma observe, found by trying.
//! A missing BTF is itself a finding: the report is printed in full, then doctor
//! fails with the error, since `trace` and `snapshot` cannot run without it.
use crate::escape::ctl;
use crate::{
    load::{
        backend::{self, Backend, Choice, Facts},
        ebpf,
        facts::BtfFacts,
        probe::{self, AttachType, Prereqs, Probes},
        programs,
    },
    sys,
};
use anyhow::bail;
use serde_json::{json, Value};
use std::{collections::HashMap, path::Path};

#[derive(clap::Args)]
pub struct Args {
    /// Print one JSON object instead of tables.
    #[arg(short = 'j', long)]
    pub json: bool,
    /// Choose backends as `trace -k` would: kprobes even where fentry works.
    #[arg(short = 'k', long)]
    pub kprobes: bool,
}

use crate::load::btf::DEFAULT_PATH as DEFAULT_BTF;

/// anon-vma-semantics.md §4.2, both 6.1 and 6.18 names.
const SYMBOLS: &[&str] = &[
    "__anon_vma_prepare",
    "anon_vma_clone",
    "anon_vma_fork",
    "unlink_anon_vmas",
    "__put_anon_vma",
    "find_mergeable_anon_vma",
    "__vmf_anon_prepare",
    "dup_mmap",
    "exit_mmap",
    "free_pgtables",
    "__split_vma",
    "vma_merge",
    "__vma_adjust",
    "vma_expand",
    "vma_merge_new_range",
    "vma_merge_existing_range",
    "commit_merge",
    "vma_complete",
    "dup_anon_vma",
    "copy_vma",
    "move_vma",
    "vm_area_dup",
    "vm_area_free",
    "folio_lock_anon_vma_read",
    "folio_get_anon_vma",
    "rmap_walk",
    "rmap_walk_locked",
    "rmap_walk_ksm",
    "rmap_walk_anon",
    "folio_referenced",
    "try_to_unmap",
    "try_to_migrate",
    "remove_migration_ptes",
    "page_add_new_anon_rmap",
    "folio_add_new_anon_rmap",
    "page_move_anon_rmap",
    "folio_move_anon_rmap",
    "try_to_merge_with_ksm_page",
    "remove_rmap_item_from_tree",
    "break_cow",
    "stable_tree_append",
    "damon_pa_mkold",
    "damon_pa_young",
    "damon_folio_mkold",
    "damon_folio_young",
    "page_idle_clear_pte_refs",
    "collect_procs_anon",
];

const SLABS: [&str; 2] = ["anon_vma", "anon_vma_chain"];

struct Report {
    kernel: String,
    arch: String,
    btf_path: String,
    btf_error: Option<String>,
    lockdown: String,
    tracefs_error: Option<String>,
    probes: Probes,
    symbols: Vec<(&'static str, &'static str)>,
    slab: Vec<(&'static str, Result<sys::SlabCache, String>)>,
    backend: Vec<Choice>,
    /// The real programs, loaded; `Err`: why none could be (no BTF, offsets unresolved).
    programs: Result<Vec<programs::Checked>, String>,
}

pub fn run(args: Args, btf_path: Option<&Path>) -> anyhow::Result<()> {
    sys::require_root("doctor")?;
    let (kernel, arch) = sys::uname();
    let path = btf_path.unwrap_or(Path::new(DEFAULT_BTF));
    // Our parse once, resolved and dropped before aya's: one parsed copy at a time.
    let ours = crate::load::btf::Btf::load(btf_path);
    let unusable = match &ours {
        Err(e @ crate::load::btf::BtfError::Unusable { .. }) => Some(e.to_string()),
        _ => None,
    };
    let resolved = ours.map(|b| BtfFacts::resolve(&b, &|_| false)).map_err(|e| format!("not loaded: {e}"));
    let btf = probe::parse_kernel_btf_after(btf_path, unusable);
    let tracefs = sys::ensure_tracefs().map_err(|e| format!("{e:#}"));
    let pre = Prereqs { btf: btf.as_ref().map_err(Clone::clone), tracefs: tracefs.clone() };
    let probes = probe::probe_all(ebpf::object(), &pre);
    let kallsyms = sys::kallsyms()?;
    let symbols = SYMBOLS.iter().map(|n| (*n, symbol_kind(&kallsyms, n))).collect();
    let slab = SLABS.iter().map(|n| (*n, sys::slab_cache(n).map_err(|e| format!("{e:#}")))).collect();
    let has = |n: &str| kallsyms.contains_key(n);
    let facts = Facts { probes: &probes, kallsyms: &has, has_tracepoint: &crate::load::probe::has_tracepoint, force_kprobes: args.kprobes };
    let backend = backend::choose_all(&facts);
    let programs = real_programs(btf.as_ref(), resolved, &probes, &has, args.kprobes);
    let r = Report {
        kernel,
        arch,
        btf_path: path.display().to_string(),
        btf_error: btf.as_ref().err().cloned(),
        lockdown: lockdown(),
        tracefs_error: tracefs.err(),
        probes,
        symbols,
        slab,
        backend,
        programs,
    };
    if args.json {
        println!("{}", crate::escape::json_pretty(&to_json(&r))?);
    } else {
        print_text(&r);
    }
    if let Some(e) = r.btf_error {
        bail!("{}", ctl(&e));
    }
    Ok(())
}

fn real_programs(
    aya_btf: Result<&aya::Btf, &String>,
    ours: Result<BtfFacts, String>,
    probes: &Probes,
    kallsyms: &dyn Fn(&str) -> bool,
    force_kprobes: bool,
) -> Result<Vec<programs::Checked>, String> {
    let aya_btf = aya_btf.map_err(|e| format!("not loaded: {e}"))?;
    let ours = ours?;
    let offsets = ours.offsets.map_err(|e| format!("not loaded: {e}"))?;
    // Where the offsets resolve, so do the hooks' (`BtfFacts::resolve`).
    programs::check_all(&programs::Inputs { btf: aya_btf, offsets: &offsets, probes, kallsyms, vmg: ours.vmg, force_kprobes })
}

fn symbol_kind(k: &HashMap<String, (u64, char)>, name: &str) -> &'static str {
    match k.get(name) {
        None => "absent",
        Some((_, c)) if c.is_ascii_uppercase() => "T",
        Some(_) => "t",
    }
}

/// The active lockdown mode, e.g. "integrity". securityfs is not mounted at boot here.
fn lockdown() -> String {
    let file = Path::new("/sys/kernel/security/lockdown");
    if !file.exists() && !Path::new("/sys/kernel/security/lsm").exists() {
        let _ = std::process::Command::new("mount").args(["-t", "securityfs", "securityfs", "/sys/kernel/security"]).status();
    }
    match std::fs::read_to_string(file) {
        Ok(s) => s
            .split_ascii_whitespace()
            .find_map(|w| w.strip_prefix('[').and_then(|w| w.strip_suffix(']')))
            .map_or_else(|| format!("unknown ({})", s.trim()), str::to_string),
        Err(_) if Path::new("/sys/kernel/security/lsm").exists() => "none (lockdown LSM not built)".into(),
        Err(e) => format!("unknown ({}: {e})", file.display()),
    }
}

fn to_json(r: &Report) -> Value {
    let symbols: serde_json::Map<_, _> = r.symbols.iter().map(|(n, k)| (n.to_string(), json!(k))).collect();
    let slab: serde_json::Map<_, _> = r
        .slab
        .iter()
        .map(|(n, c)| {
            let v = match c {
                Ok(c) => json!({
                    "object_size": c.object_size, "slab_size": c.slab_size, "objects": c.objects,
                    "merged": c.merged_into.is_some(), "merged_into": c.merged_into, "merged_with": c.merged_with,
                }),
                Err(e) => json!({ "error": e }),
            };
            (n.to_string(), v)
        })
        .collect();
    let backend: serde_json::Map<_, _> = r
        .backend
        .iter()
        .map(|c| {
            let v = json!({
                "backend": c.backend, "functions": c.functions, "tracepoints": c.tracepoints,
                "note": c.note, "reason": c.reason,
            });
            (c.hook.to_string(), v)
        })
        .collect();
    json!({
        "kernel": r.kernel,
        "arch": r.arch,
        "btf": { "present": r.btf_error.is_none(), "path": r.btf_path, "error": r.btf_error },
        "lockdown": r.lockdown,
        "tracefs": { "ok": r.tracefs_error.is_none(), "error": r.tracefs_error },
        "attach": r.probes,
        "symbols": symbols,
        "slab": slab,
        "backend": backend,
        "programs": match &r.programs {
            Ok(p) => json!(p),
            Err(e) => json!({ "error": e }),
        },
    })
}

fn print_text(r: &Report) {
    let btf = match &r.btf_error {
        None => format!("{} (present)", r.btf_path),
        Some(e) => format!("ABSENT — {e}"),
    };
    let tracefs = r.tracefs_error.clone().unwrap_or_else(|| "/sys/kernel/tracing".into());
    table(
        "",
        &[],
        &[
            vec!["kernel".into(), format!("{} {}", r.kernel, r.arch)],
            vec!["btf".into(), btf],
            vec!["lockdown".into(), r.lockdown.clone()],
            vec!["tracefs".into(), tracefs],
        ],
    );

    let rows: Vec<_> = AttachType::ALL
        .iter()
        .map(|t| {
            let o = r.probes.get(*t);
            let usable = if o.ok { "yes" } else { "no" };
            vec![t.name().into(), usable.into(), o.error.clone().unwrap_or_else(|| t.target())]
        })
        .collect();
    table("\nattach types (a tiny program loaded and attached)", &["type", "usable", "error / target"], &rows);

    println!("\nfunctions of anon-vma-semantics §4.2 in /proc/kallsyms");
    for (label, want) in [("T (global)", "T"), ("t (static)", "t"), ("absent", "absent")] {
        let names: Vec<_> = r.symbols.iter().filter(|(_, k)| *k == want).map(|(n, _)| *n).collect();
        println!("  {label:<11} {}", wrap(&names, 14));
    }

    let rows: Vec<_> = r
        .slab
        .iter()
        .map(|(n, c)| match c {
            Ok(c) => {
                let merged = match &c.merged_into {
                    Some(t) if c.merged_with.is_empty() => format!("merged into {t}"),
                    Some(t) => format!("merged into {t} with {}", c.merged_with.join(", ")),
                    None => "own cache".into(),
                };
                // A merged cache's count is the whole alias group's, not this cache's.
                let objects = match (c.objects, &c.merged_into) {
                    (None, _) => "?".into(),
                    (Some(o), Some(t)) => format!("{o} (all of {t})"),
                    (Some(o), None) => o.to_string(),
                };
                vec![n.to_string(), c.object_size.to_string(), c.slab_size.to_string(), objects, merged]
            }
            Err(e) => vec![n.to_string(), "-".into(), "-".into(), "-".into(), e.clone()],
        })
        .collect();
    table("\nslab caches", &["cache", "object", "slab", "objects", "merging"], &rows);

    let rows: Vec<_> = r
        .backend
        .iter()
        .map(|c| {
            let (via, detail) = match c.backend {
                Backend::Fentry | Backend::Kprobe => (c.functions.join(" "), String::new()),
                Backend::Tracepoint => (c.tracepoints.join(" "), String::new()),
                Backend::TracepointOnly => (c.tracepoints.join(" "), c.note.unwrap_or_default().to_string()),
                Backend::Unavailable => (String::new(), c.reason.clone().unwrap_or_default()),
            };
            vec![c.hook.to_string(), c.backend.name().to_string(), via, detail]
        })
        .collect();
    table("\nbackend per hook (fentry → kprobe → tracepoint-only → unavailable)", &["hook", "backend", "via", "sees / why not"], &rows);

    let title = "\nthe real programs (loaded by the kernel's verifier, not attached)";
    match &r.programs {
        Err(e) => println!("{title}\n  {}", ctl(e)),
        Ok(p) => {
            let rows: Vec<_> = p
                .iter()
                .filter(|c| c.loaded.is_some())
                .map(|c| {
                    let ok = match c.loaded {
                        Some(true) => "yes",
                        Some(false) => "NO",
                        None => "-",
                    };
                    vec![c.program.clone(), c.kind.into(), ok.into(), c.reason.clone().unwrap_or_default()]
                })
                .collect();
            table(title, &["program", "type", "loads", "why not"], &rows);
            // Programs of an attach type this kernel refuses are not loaded: one line per type.
            let mut unused: Vec<(&str, usize)> = Vec::new();
            for c in p.iter().filter(|c| c.loaded.is_none()) {
                match unused.iter_mut().find(|(k, _)| *k == c.kind) {
                    Some((_, n)) => *n += 1,
                    None => unused.push((c.kind, 1)),
                }
            }
            for (kind, n) in unused {
                let why = p.iter().find(|c| c.kind == kind && c.loaded.is_none()).and_then(|c| c.reason.clone()).unwrap_or_default();
                println!("  {n} {kind} programs {}", ctl(&why));
            }
        }
    }
}

/// Columns padded to the widest cell; the last column is left ragged. Cells hold kernel
/// strings (the release, verifier and attach errors, slab cache names, a `--btf` path):
/// each is one escaped field.
fn table(title: &str, head: &[&str], rows: &[Vec<String>]) {
    if !title.is_empty() {
        println!("{title}");
    }
    let mut all: Vec<Vec<String>> = Vec::new();
    if !head.is_empty() {
        all.push(head.iter().map(|s| s.to_string()).collect());
    }
    all.extend(rows.iter().map(|r| r.iter().map(|c| ctl(c).into_owned()).collect()));
    let cols = all.iter().map(Vec::len).max().unwrap_or(0);
    let width: Vec<usize> = (0..cols).map(|i| all.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count()).max().unwrap_or(0)).collect();
    for row in &all {
        let mut line = String::from(" ");
        for (i, cell) in row.iter().enumerate() {
            line.push(' ');
            if i + 1 == row.len() {
                line += cell;
            } else {
                line += &format!("{cell:<w$} ", w = width[i]);
            }
        }
        println!("{}", line.trim_end());
    }
}

fn wrap(names: &[&str], indent: usize) -> String {
    if names.is_empty() {
        return "-".into();
    }
    let mut out = String::new();
    let mut col = indent;
    for n in names {
        if col + n.len() + 1 > 100 && col > indent {
            out = out.trim_end().to_string();
            out += &format!("\n{:indent$}", "");
            col = indent;
        }
        out += n;
        out.push(' ');
        col += n.len() + 1;
    }
    out.trim_end().to_string()
}
