//! BTF offset resolution: against this kernel, and against fixture BTF blobs (real BTF
//! format, written by `fixtures/mod.rs`) that lack a field or use older layouts.
#[path = "../src/load/btf.rs"]
#[allow(dead_code)]
mod btf;
mod fixtures;

use btf::{Btf, Offsets};
use fixtures::{kernel_like, AnonVma};
use lazyvma_model::abi::FIELD_ABSENT;
use std::path::PathBuf;

fn get(o: &Offsets, name: &str) -> u64 {
    o.globals.iter().find(|(n, _)| *n == name).unwrap_or_else(|| panic!("no global {name}")).1
}

fn fixture(av: AnonVma, with_task: bool) -> Btf {
    Btf::parse(&kernel_like(av, with_task), PathBuf::from("fixture.btf")).unwrap()
}

/// This kernel's BTF; None (the test skipped, said) where it is unreadable, unless the suite
/// demands root (`LAZYVMA_REQUIRE_ROOT`): then that is a failure.
fn this_kernel() -> Option<Btf> {
    match Btf::load(None) {
        Ok(b) => Some(b),
        Err(e) if std::env::var_os("LAZYVMA_REQUIRE_ROOT").is_none() => {
            eprintln!("skipped: {e}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn resolves_this_kernel() {
    let Some(btf) = this_kernel() else { return };
    let o = Offsets::resolve(&btf).unwrap();
    // struct anon_vma / anon_vma_chain are identical on 6.1 and 6.18 without lock
    // debugging (spec §0, §4.3): root 8 + rw_semaphore 40 + refcount 4 (+4) + ...
    for (name, want) in [
        ("AV_ROOT", 0),
        ("AV_REFCOUNT", 48),
        ("AV_NUM_CHILDREN", 56),
        ("AV_NUM_ACTIVE_VMAS", 64),
        ("AV_PARENT", 72),
        ("AV_DEGREE", FIELD_ABSENT),
        ("AVC_ANON_VMA", 8),
        ("AVC_SAME_VMA", 16),
    ] {
        assert_eq!(get(&o, name), want, "{name}");
    }
    let size = |t: &str| btf.size(t).unwrap();
    assert_eq!((size("anon_vma"), size("anon_vma_chain")), (96, 64));
    // vm_area_struct moves between versions; on 6.18.44 x86_64 it is 192 bytes with
    // vm_start/vm_end first (inside anonymous unions).
    if std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap().starts_with("6.18.") {
        assert_eq!(size("vm_area_struct"), 192);
        assert_eq!((get(&o, "VMA_VM_START"), get(&o, "VMA_VM_END")), (0, 8));
        // The maple tree (6.1+): no VMA list for the iter/task pass, none of its fields set;
        // task_struct.mm is, for the prepare hook.
        assert_eq!((get(&o, "MM_MMAP"), get(&o, "VMA_VM_NEXT")), (FIELD_ABSENT, FIELD_ABSENT));
        assert_ne!(get(&o, "TASK_MM"), FIELD_ABSENT);
    }
    let mut vma: Vec<u64> = o.globals.iter().filter(|(n, v)| n.starts_with("VMA_") && *v != FIELD_ABSENT).map(|g| g.1).collect();
    assert!(vma.iter().all(|&v| v < size("vm_area_struct")));
    vma.sort();
    vma.dedup();
    assert_eq!(vma.len(), 7, "seven distinct vm_area_struct fields");
}

/// The fexit programs' return slot on kernels without `bpf_get_func_ret`: each hooked
/// function's parameter count, as this kernel's BTF gives it.
#[test]
fn counts_this_kernel_s_function_arguments() {
    let Some(btf) = this_kernel() else { return };
    // int __anon_vma_prepare(struct vm_area_struct *); int anon_vma_fork(vma, pvma);
    // void unlink_anon_vmas(struct vm_area_struct *); the same on 5.10 through 6.18.
    assert_eq!(btf.func_args("__anon_vma_prepare"), Some(1));
    assert_eq!(btf.func_args("anon_vma_fork"), Some(2));
    assert_eq!(btf.func_args("unlink_anon_vmas"), Some(1));
    assert_eq!(btf.func_args("no_such_function_here"), None);
}

#[test]
fn resolves_through_anonymous_unions_and_typedefs() {
    let b = fixture(AnonVma::Split, true);
    let o = Offsets::resolve(&b).unwrap();
    for (name, want) in [
        ("VMA_VM_START", 0),
        ("VMA_VM_END", 8),
        ("VMA_VM_MM", 16),
        ("VMA_VM_FLAGS", 24),
        ("VMA_VM_PGOFF", 32),
        ("VMA_ANON_VMA", 40),
        ("VMA_ANON_VMA_CHAIN", 48),
        ("AV_REFCOUNT", 8),
        ("AV_NUM_CHILDREN", 16),
        ("AV_NUM_ACTIVE_VMAS", 24),
        ("AV_PARENT", 32),
        ("AV_DEGREE", FIELD_ABSENT),
        ("AVC_SAME_VMA", 16),
        ("TASK_TGID", 4),
        ("TASK_COMM", 8),
    ] {
        assert_eq!(get(&o, name), want, "{name}");
    }
    let size = |t: &str| b.size(t).unwrap();
    assert_eq!((size("anon_vma"), size("anon_vma_chain"), size("vm_area_struct")), (48, 32, 64));
}

#[test]
fn pre_6_0_kernels_use_degree() {
    let o = Offsets::resolve(&fixture(AnonVma::Degree, true)).unwrap();
    assert_eq!(get(&o, "AV_DEGREE"), 16);
    assert_eq!((get(&o, "AV_NUM_CHILDREN"), get(&o, "AV_NUM_ACTIVE_VMAS")), (FIELD_ABSENT, FIELD_ABSENT));
}

#[test]
fn a_missing_field_is_named() {
    let err = Offsets::resolve(&fixture(AnonVma::MissingActive, true)).err().unwrap();
    assert_eq!(err.to_string(), "BTF fixture.btf: struct `anon_vma` has no field `num_active_vmas`");
}

#[test]
fn a_missing_type_is_named() {
    let err = Offsets::resolve(&fixture(AnonVma::Split, false)).err().unwrap();
    assert_eq!(err.to_string(), "BTF fixture.btf has no struct `task_struct`");
}

#[test]
fn bad_files_are_clear_errors() {
    let err = Btf::parse(b"this is not BTF at all, clearly not", "x".into()).err().unwrap();
    assert_eq!(err.to_string(), "x is not valid BTF: bad magic (expected 0xeb9f)");
    let mut cut = kernel_like(AnonVma::Split, true);
    cut.truncate(cut.len() - 40);
    assert!(Btf::parse(&cut, "y".into()).err().unwrap().to_string().starts_with("y is not valid BTF"));
    let err = Btf::load(Some("/nonexistent/vmlinux".as_ref())).err().unwrap().to_string();
    assert!(err.contains("/nonexistent/vmlinux") && err.contains("--btf"), "{err}");
}
