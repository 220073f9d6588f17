//! Why the kernel allocated or freed an object, told from the function of the call site and,
//! for anon_vma_clone / unlink_anon_vmas / __put_anon_vma, from the task's context (the
//! syscall it is in, exiting or not: `with_context`) or, with `--stacks`, from the kernel
//! stack: on a tracepoint-only kernel the stack is the only way to tell a split's clone
//! from a merge's inside one syscall.
use crate::trace::ingest::symbols::Symbols;
use lazyvma_model::trace_abi::{SlabFn, Why};

/// Callers of anon_vma_clone (the first frame above it), 6.1 and 6.18 names. `dup_anon_vma`
/// is inlined into the merge functions on 6.18, so they show up instead.
fn clone_caller(f: &str) -> Option<&'static str> {
    Some(match f {
        "anon_vma_fork" | "dup_mmap" => "fork",
        "__split_vma" | "split_vma" => "split",
        "copy_vma" | "copy_vma_and_data" | "move_vma" => "mremap",
        "dup_anon_vma"
        | "vma_expand"
        | "commit_merge"
        | "vma_merge"
        | "vma_merge_new_range"
        | "vma_merge_existing_range"
        | "__vma_adjust"
        | "vma_modify"
        | "vma_shrink" => "merge",
        _ => return None,
    })
}

/// What a teardown stack (unlink_anon_vmas, __put_anon_vma) was doing: the outermost
/// recognised operation wins, so exec beats the exit_mmap it calls and mremap beats munmap.
fn teardown(frames: &[&str]) -> Option<&'static str> {
    let has = |names: &[&str]| frames.iter().any(|f| names.contains(f));
    Some(if has(&["begin_new_exec", "exec_mmap"]) {
        "exec"
    } else if has(&["exit_mmap"]) {
        "exit"
    } else if has(&["__do_sys_mremap", "do_mremap", "move_vma", "vma_remap", "remap_move", "mremap_to"]) {
        "mremap"
    } else if has(&["ksm_scan_thread", "ksm_do_scan", "remove_rmap_item_from_tree", "break_cow", "remove_stable_node"]) {
        "ksm"
    } else if has(&["__do_sys_munmap", "__vm_munmap", "do_vmi_munmap", "do_vmi_align_munmap", "vms_complete_munmap_vmas", "do_munmap"]) {
        "munmap"
    } else if has(&["vma_complete", "commit_merge", "vma_expand", "vma_merge", "__vma_adjust", "vma_merge_existing_range", "vma_merge_new_range"]) {
        "merge"
    } else {
        return None;
    })
}

/// The reason key for one event: the task's context where the slab program told it (`why`:
/// the syscall it is in, whether it is exiting; `Why::name` is the key the stack gives where
/// the context is certain, both candidates where it is not, which only `--stacks` tells
/// apart), else the function and its stack (`classify`).
pub fn of(why: Why, function: SlabFn, alloc: bool, frames: &[u64], syms: &Symbols) -> String {
    match why {
        Why::Function => classify(function, alloc, frames, syms),
        told => told.name().into(),
    }
}

/// The reason key for one event. Unrecognised callers are named (`clone:<caller>`) rather
/// than folded into a guess; a frame no function contains is `unknown` (`clone:unknown`),
/// never the name of whatever symbol precedes it.
pub fn classify(function: SlabFn, alloc: bool, frames: &[u64], syms: &Symbols) -> String {
    use SlabFn::*;
    let names: Vec<Option<&str>> = frames.iter().map(|a| syms.name(*a)).collect();
    // Frames above the allocating/freeing function itself.
    let own = function.name();
    // An fexit trampoline (trace's own, on anon_vma_clone) is called from the function's
    // patched entry and calls its body: right above the body come the trampoline, then the
    // function again (the entry's return address). Nothing outside the kernel image calls
    // these unexported functions, and they do not recurse: skip both to the real caller.
    let above: &[Option<&str>] = match names.iter().position(|n| *n == Some(own)) {
        None => &names,
        Some(i) => {
            let skip = (i + 1..frames.len()).take_while(|&j| names[j] == Some(own) || syms.outside_kernel_image(frames[j])).count();
            &names[i + 1 + skip..]
        }
    };
    let first = || above.first().map(|n| n.unwrap_or("unknown"));
    match (function, alloc) {
        (AnonVmaPrepare, true) => "prepare".into(),
        (AnonVmaFork, true) => "fork".into(),
        (AnonVmaClone, true) => match first() {
            None => "clone".into(),
            Some(c) => clone_caller(c).map_or_else(|| format!("clone:{c}"), str::to_string),
        },
        (UnlinkAnonVmas, false) if frames.is_empty() => "unlink".into(),
        (PutAnonVma, false) if frames.is_empty() => "put".into(),
        (UnlinkAnonVmas | PutAnonVma, false) => {
            let known: Vec<&str> = above.iter().flatten().copied().collect();
            teardown(&known).map_or_else(|| format!("unlink:{}", first().unwrap_or("?")), str::to_string)
        }
        // A lost race in __anon_vma_prepare or an error path of anon_vma_fork/clone.
        (f @ (AnonVmaPrepare | AnonVmaClone | AnonVmaFork), false) => format!("undo:{}", f.name()),
        (f @ (UnlinkAnonVmas | PutAnonVma), true) => format!("alloc:{}", f.name()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syms() -> (Symbols, impl Fn(&str) -> u64) {
        let names = [
            "kmem_cache_alloc_noprof",
            "anon_vma_clone",
            "__split_vma",
            "copy_vma",
            "vma_expand",
            "unlink_anon_vmas",
            "free_pgtables",
            "exit_mmap",
            "mmput",
            "exec_mmap",
            "begin_new_exec",
            "vms_complete_munmap_vmas",
            "do_vmi_munmap",
            "vma_complete",
            "commit_merge",
            "__do_sys_mremap",
            "mystery",
            "zz_end",
        ];
        let text: String = names.iter().enumerate().map(|(i, n)| format!("{:x} t {n}\n", 0xffffffff81000000u64 + 0x100 * i as u64)).collect();
        let s = Symbols::parse(&text).unwrap();
        let addr = move |n: &str| 0xffffffff81000000u64 + 0x100 * names.iter().position(|x| *x == n).unwrap() as u64 + 8;
        (s, addr)
    }

    #[test]
    fn every_context_code_has_a_name_and_agrees_with_the_stack_names() {
        let (s, _) = syms();
        // The function's reason is the function's (and its stack's), never "function".
        assert_eq!(of(Why::Function, SlabFn::AnonVmaClone, true, &[], &s), "clone");
        let names: Vec<String> = Why::ALL[1..].iter().map(|w| of(*w, SlabFn::AnonVmaClone, true, &[], &s)).collect();
        for n in &names {
            // A certain reason is one the stack classifier can give; an ambiguous one names two.
            assert!(n.split('/').all(|p| ["fork", "exit", "exec", "munmap", "mremap", "merge", "split"].contains(&p)), "{n}");
        }
        assert_eq!(names.iter().collect::<std::collections::HashSet<_>>().len(), names.len());
    }

    #[test]
    fn clone_reason_is_the_caller() {
        let (s, a) = syms();
        let st = |c: &str| vec![a("kmem_cache_alloc_noprof"), a("anon_vma_clone"), a(c)];
        assert_eq!(classify(SlabFn::AnonVmaClone, true, &st("__split_vma"), &s), "split");
        assert_eq!(classify(SlabFn::AnonVmaClone, true, &st("copy_vma"), &s), "mremap");
        assert_eq!(classify(SlabFn::AnonVmaClone, true, &st("vma_expand"), &s), "merge");
        assert_eq!(classify(SlabFn::AnonVmaClone, true, &st("mystery"), &s), "clone:mystery");
        assert_eq!(classify(SlabFn::AnonVmaClone, true, &[], &s), "clone");
    }

    #[test]
    fn teardown_reason_is_the_outermost_operation() {
        let (s, a) = syms();
        let st = |rest: &[&str]| [&["unlink_anon_vmas", "free_pgtables"][..], rest].concat().iter().map(|n| a(n)).collect::<Vec<_>>();
        assert_eq!(classify(SlabFn::UnlinkAnonVmas, false, &st(&["exit_mmap", "mmput"]), &s), "exit");
        assert_eq!(classify(SlabFn::UnlinkAnonVmas, false, &st(&["exit_mmap", "mmput", "exec_mmap", "begin_new_exec"]), &s), "exec");
        assert_eq!(classify(SlabFn::UnlinkAnonVmas, false, &st(&["vms_complete_munmap_vmas", "do_vmi_munmap"]), &s), "munmap");
        assert_eq!(classify(SlabFn::UnlinkAnonVmas, false, &st(&["do_vmi_munmap", "__do_sys_mremap"]), &s), "mremap");
        assert_eq!(classify(SlabFn::UnlinkAnonVmas, false, &[a("unlink_anon_vmas"), a("vma_complete"), a("commit_merge")], &s), "merge");
        assert_eq!(classify(SlabFn::AnonVmaPrepare, true, &[], &s), "prepare");
        assert_eq!(classify(SlabFn::AnonVmaPrepare, false, &[], &s), "undo:__anon_vma_prepare");
    }

    /// The stacks a 6.12 amd64 guest gave, on its real kallsyms (KASLR slide of that boot).
    #[test]
    fn guest_stacks_name_the_caller_past_the_fexit_trampoline() {
        let s = Symbols::parse(include_str!("../../../tests/fixtures/kallsyms-6.12-amd64.txt")).unwrap();
        let (alloc, clone, split, tramp) = (0xffffffffbb7bae10, 0xffffffffbb7919a2, 0xffffffffbb79c7c4, 0xffffffffc0201044);
        assert_eq!(classify(SlabFn::AnonVmaClone, true, &[alloc, clone, tramp, 0xffffffffbb791955, split], &s), "split");
        assert_eq!(classify(SlabFn::AnonVmaClone, true, &[alloc, clone, tramp, split], &s), "split");
        assert_eq!(classify(SlabFn::AnonVmaClone, true, &[alloc, clone, split], &s), "split");
        // Never a data symbol's name: a frame nothing contains is unknown.
        assert_eq!(classify(SlabFn::AnonVmaClone, true, &[alloc, clone, 0xffffffffbd72f020, split], &s), "clone:unknown");
        assert_eq!(classify(SlabFn::AnonVmaClone, true, &[tramp], &s), "clone:unknown");
        let (unlink, free_pgt, munmap, mremap) = (0xffffffffbb7917a0, 0xffffffffbb7704f0, 0xffffffffbb79e330, 0xffffffffbb789400);
        assert_eq!(classify(SlabFn::UnlinkAnonVmas, false, &[unlink, free_pgt, munmap, mremap], &s), "mremap");
        assert_eq!(classify(SlabFn::UnlinkAnonVmas, false, &[unlink, free_pgt, munmap], &s), "munmap");
        assert_eq!(classify(SlabFn::UnlinkAnonVmas, false, &[unlink, 0xffffffffbd72f020], &s), "unlink:unknown");
        assert_eq!(classify(SlabFn::UnlinkAnonVmas, false, &[unlink, free_pgt], &s), "unlink:free_pgtables");
    }
}
