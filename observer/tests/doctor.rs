//! `lazyvma doctor` on the real kernel. The host facts asserted exactly are those of the
//! project's 6.18.44 machine (toolchain.md); elsewhere only the cross-checks run.
use serde_json::Value;
use std::{
    os::unix::process::CommandExt,
    process::{Command, Output},
};

mod common;
use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_lazyvma");

fn doctor(args: &[&str]) -> (Output, Option<Value>) {
    let out = Command::new(BIN).arg("doctor").args(args).output().expect("running lazyvma");
    let json = serde_json::from_slice(&out.stdout).ok();
    (out, json)
}

fn release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap().trim().to_string()
}

fn this_host() -> bool {
    release().starts_with("6.18.44") && std::env::consts::ARCH == "x86_64"
}

#[test]
fn json_reports_this_machine() {
    if !root_or_skip("json_reports_this_machine") {
        return;
    }
    let (out, j) = doctor(&["-j"]);
    assert!(out.status.success(), "doctor -j failed: {}", String::from_utf8_lossy(&out.stderr));
    let j = j.expect("stdout is one JSON object");
    for key in ["kernel", "arch", "btf", "attach", "symbols", "slab", "backend"] {
        assert!(j.get(key).is_some(), "missing key {key}");
    }
    assert_eq!(j["kernel"], release());
    assert_eq!(j["arch"], std::env::consts::ARCH);
    assert_eq!(j["btf"]["present"], true);
    for t in ["fentry", "fexit", "kprobe", "kretprobe", "tracepoint", "raw_tp", "tp_btf", "iter/task_vma", "ringbuf"] {
        let a = &j["attach"][t];
        assert!(a["ok"].is_boolean(), "{t}: {a}");
        assert_eq!(a["error"].is_null(), a["ok"] == true, "{t}: an error exactly when not ok: {a}");
    }

    // Symbols agree with /proc/kallsyms read here.
    let kallsyms = std::fs::read_to_string("/proc/kallsyms").unwrap();
    for (name, kind) in j["symbols"].as_object().unwrap() {
        let letter = kallsyms.lines().find_map(|l| {
            let mut it = l.split_ascii_whitespace();
            let (_, k, n) = (it.next()?, it.next()?, it.next()?);
            (n == name && it.next().is_none()).then(|| k.chars().next().unwrap())
        });
        let want = match letter {
            None => "absent",
            Some(c) if c.is_ascii_uppercase() => "T",
            Some(_) => "t",
        };
        assert_eq!(kind, want, "symbol {name}");
    }

    if !this_host() {
        eprintln!("json_reports_this_machine: not the 6.18.44 x86_64 host, exact host facts not checked");
        return;
    }
    let attach = |t: &str| (j["attach"][t]["ok"].as_bool().unwrap(), j["attach"][t]["error"].as_str().unwrap_or("").to_string());
    for t in ["fentry", "fexit"] {
        let (ok, err) = attach(t);
        assert!(!ok);
        assert_eq!(err, format!("{t} refused (EPERM): this kernel does not allow BPF trampolines"));
    }
    for t in ["kprobe", "kretprobe"] {
        let (ok, err) = attach(t);
        assert!(!ok);
        assert!(err.starts_with("kprobes not built (CONFIG_KPROBES)"), "{t}: {err}");
    }
    for t in ["tracepoint", "raw_tp", "tp_btf", "iter/task_vma", "ringbuf"] {
        assert_eq!(attach(t), (true, String::new()), "{t}");
    }
    assert_eq!(j["lockdown"], "integrity");

    // anon-vma-semantics.md §4.2, 6.18.44 column.
    let sym = |n: &str| j["symbols"][n].as_str().unwrap().to_string();
    for n in [
        "__anon_vma_prepare",
        "anon_vma_clone",
        "anon_vma_fork",
        "unlink_anon_vmas",
        "__put_anon_vma",
        "find_mergeable_anon_vma",
        "dup_mmap",
        "exit_mmap",
        "copy_vma",
        "rmap_walk",
        "folio_lock_anon_vma_read",
        "vma_merge_new_range",
        "vma_expand",
    ] {
        assert_eq!(sym(n), "T", "{n}");
    }
    for n in ["__split_vma", "commit_merge", "vma_complete", "move_vma", "rmap_walk_anon"] {
        assert_eq!(sym(n), "t", "{n}");
    }
    for n in ["vma_merge_existing_range", "dup_anon_vma", "page_idle_clear_pte_refs", "collect_procs_anon", "vma_merge", "__vma_adjust"] {
        assert_eq!(sym(n), "absent", "{n}");
    }

    // §4.3: anon_vma own cache 96/104; anon_vma_chain 64, merged.
    let av = &j["slab"]["anon_vma"];
    assert_eq!((av["object_size"].as_u64(), av["slab_size"].as_u64(), av["merged"].as_bool()), (Some(96), Some(104), Some(false)));
    let avc = &j["slab"]["anon_vma_chain"];
    assert_eq!((avc["object_size"].as_u64(), avc["merged"].as_bool()), (Some(64), Some(true)));
    assert_eq!(avc["merged_into"], merged_target());
    assert!(merged_target().starts_with(':'));
    assert!(!avc["merged_with"].as_array().unwrap().is_empty());

    let backend = |h: &str| j["backend"][h]["backend"].as_str().unwrap().to_string();
    for h in [
        "__anon_vma_prepare",
        "anon_vma_fork",
        "anon_vma_clone",
        "unlink_anon_vmas",
        "__put_anon_vma",
        "find_mergeable_anon_vma",
        "copy_vma",
        "dup_mmap",
        "exit_mmap",
        "rmap",
    ] {
        assert_eq!(backend(h), "tracepoint-only", "{h}");
    }
    for h in ["split", "merge"] {
        assert_eq!(backend(h), "unavailable", "{h}");
        assert_eq!(j["backend"][h]["reason"], "fentry not usable; kprobe not usable; no tracepoint covers it");
    }
    for h in [
        "kmem:kmem_cache_alloc",
        "kmem:kmem_cache_free",
        "sched:sched_process_fork",
        "sched:sched_process_exec",
        "sched:sched_process_exit",
        "lock:contention_begin",
        "lock:contention_end",
    ] {
        assert_eq!(backend(h), "tracepoint", "{h}");
    }
    assert_eq!(j["backend"]["__anon_vma_prepare"]["tracepoints"], serde_json::json!(["kmem:kmem_cache_alloc", "kmem:kmem_cache_free"]));

    // The real programs, verified by this kernel: every tracepoint and iterator program of
    // the object loads; no function hook is used here (no trampolines, no kprobes); the
    // attach probes' stand-ins are not among them.
    let progs = j["programs"].as_array().unwrap();
    for p in progs {
        let name = p["program"].as_str().unwrap();
        assert!(!name.starts_with("probe_"), "{p}");
        match p["type"].as_str().unwrap() {
            // The pass of kernels without iter/task_vma walks a VMA list this kernel lacks.
            "iter" if name == "snapshot_task" => {
                assert_eq!(p["reason"], "not used: no VMA list (mm->mmap) on this kernel; snapshot_task_vma takes the pass", "{p}")
            }
            "tracepoint" | "iter" => assert_eq!((&p["loaded"], &p["reason"]), (&Value::Bool(true), &Value::Null), "{p}"),
            // The variant for another prototype (sched_process_exit's group_dead) is not used.
            "tp_btf" if p["loaded"].is_null() => {
                assert!(p["reason"].as_str().is_some_and(|r| r.starts_with("not used: this kernel's")), "{p}");
                let other = match name {
                    "trace_exit_btf" => "has group_dead (trace_exit_btf_dead)",
                    "trace_exit_btf_dead" => "has no group_dead (trace_exit_btf)",
                    _ => panic!("only one of the exit pair may be left out: {p}"),
                };
                assert_eq!(p["reason"], format!("not used: this kernel's sched_process_exit {other}"), "{p}");
            }
            "tp_btf" => assert_eq!((&p["loaded"], &p["reason"]), (&Value::Bool(true), &Value::Null), "{p}"),
            t @ ("fentry" | "fexit" | "kprobe") => {
                assert_eq!(p["loaded"], Value::Null, "{p}");
                assert_eq!(p["reason"], format!("not used: {t} is not usable on this kernel (see attach types)"), "{p}");
            }
            other => panic!("unexpected program type {other}: {p}"),
        }
    }
    for name in ["snapshot_task_vma", "lock_seed_task_vma", "trace_slab_alloc", "trace_slab_free", "trace_fork_btf", "trace_sys_enter_btf"] {
        assert!(progs.iter().any(|p| p["program"] == name && p["loaded"] == true), "{name} loads");
    }
    // Exactly one of the exit pair: the one for this kernel's prototype.
    let exit = |name: &str| progs.iter().filter(|p| p["program"] == name && p["loaded"] == true).count();
    assert_eq!(exit("trace_exit_btf") + exit("trace_exit_btf_dead"), 1, "{progs:?}");
}

/// The cache `anon_vma_chain` is an alias of, as sysfs shows it (e.g. `:A-0000064`).
fn merged_target() -> String {
    let t = std::fs::read_link("/sys/kernel/slab/anon_vma_chain").unwrap();
    t.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn text_report_names_the_findings() {
    if !root_or_skip("text_report_names_the_findings") {
        return;
    }
    let (out, _) = doctor(&[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in ["kernel", "lockdown", "attach types", "slab caches", "backend per hook", "anon_vma_chain", "iter/task_vma", "the real programs"] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    if this_host() {
        assert!(text.contains("fentry refused (EPERM)"), "{text}");
        assert!(text.contains("merged into :A-"), "{text}");
        assert!(text.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["snapshot_task_vma", "iter", "yes"]), "{text}");
    }
}

#[test]
fn kprobes_flag_never_picks_fentry() {
    if !root_or_skip("kprobes_flag_never_picks_fentry") {
        return;
    }
    let (out, j) = doctor(&["-j", "-k"]);
    assert!(out.status.success());
    let j = j.unwrap();
    for (hook, c) in j["backend"].as_object().unwrap() {
        assert_ne!(c["backend"], "fentry", "{hook}");
    }
}

#[test]
fn bad_btf_still_reports_then_fails() {
    if !root_or_skip("bad_btf_still_reports_then_fails") {
        return;
    }
    let (out, j) = doctor(&["-j", "--btf", "/nonexistent/vmlinux"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    for needle in ["/nonexistent/vmlinux", "--btf", "/sys/kernel/btf/vmlinux"] {
        assert!(stderr.contains(needle), "stderr lacks {needle}: {stderr}");
    }
    let j = j.expect("the report is still printed");
    assert_eq!(j["btf"]["present"], false);
    for t in ["fentry", "fexit", "tp_btf", "iter/task_vma"] {
        assert_eq!(j["attach"][t]["ok"], false, "{t}");
        assert!(j["attach"][t]["error"].as_str().unwrap().starts_with("needs kernel BTF"), "{t}");
    }
    // What needs no BTF is still found.
    assert_eq!(j["attach"]["tracepoint"]["ok"], true);
    assert_eq!(j["attach"]["ringbuf"]["ok"], true);
}

#[test]
fn not_root_is_one_line_exit_1() {
    let mut cmd = Command::new(BIN);
    cmd.args(["doctor", "-j"]);
    if is_root() {
        cmd.uid(65534).gid(65534);
    }
    let out = cmd.output().expect("running lazyvma as nobody");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr, "lazyvma: `lazyvma doctor` needs root (BPF programs): run it with sudo\n");
}
