//! Records of `lazyvma trace`'s function hooks (fentry/fexit or kprobe/kretprobe on the
//! rmap.c / vma functions of spec §4.2). They share the ring buffer with [`TraceEvent`]s
//! and are told apart by `kind` == [`EV_HOOK`]. `#[repr(C)]`, plain integers, a multiple
//! of 8 bytes. Which argument lands where is per hook, documented at each `HK_*`.
//!
//! [`TraceEvent`]: crate::trace_abi::TraceEvent

/// `kind` of a [`HookEvent`] (the `EV_*` numbering of `trace_abi` continues here).
pub const EV_HOOK: u32 = 8;

/// `__anon_vma_prepare` exit: `a` = vma after, `ret` = int, `args[0]` = the current
/// task's own mm.
pub const HK_PREPARE: u16 = 1;
/// `find_mergeable_anon_vma` exit: `a` = vma, `ret` = the neighbour's anon_vma or 0.
pub const HK_MERGEABLE: u16 = 2;
/// `anon_vma_fork` exit: `a` = child vma, `b` = parent vma, `ret` = int,
/// `args[0]` = child vma->anon_vma->parent (≠ pvma->anon_vma ⇔ an ancestor was reused).
pub const HK_FORK: u16 = 3;
/// `anon_vma_clone` exit: `a` = dst, `b` = src, `ret` = int.
pub const HK_CLONE: u16 = 4;
/// `unlink_anon_vmas` entry: `a` = vma (chain_len = the AVCs it will free).
pub const HK_UNLINK: u16 = 5;
/// `__put_anon_vma` entry: `args` = [anon_vma, root, root->refcount, anon_vma->refcount].
pub const HK_PUT: u16 = 6;
/// `__split_vma` entry: `a` = vma before, `args` = [mm or vmi, addr, new_below];
/// exit: `a` = vma after, `ret` = int.
pub const HK_SPLIT: u16 = 7;
/// A merge function (`args[5]` = index in [`MERGE_FUNCTIONS`]). Entry, 6.1 shapes: `a` =
/// the vma argument (vma_merge: prev; __vma_adjust, vma_expand: vma), `b` = vma_expand's
/// next, `args[0..5]` = the raw arguments. Entry, `vma_merge_struct` shapes (6.12): `a` =
/// vmg->prev, `b` = vmg->vma (or ->middle), `args` = [vmg, start, end, next, [`VMG_SHAPE`]].
/// Exit: `ret`.
pub const HK_MERGE: u16 = 8;
/// `copy_vma` entry: `a` = *vmap (the source), `args` = [addr, len, pgoff];
/// exit: `ret` = the new vma (0 on failure), `a` = it.
pub const HK_COPY_VMA: u16 = 9;
/// `dup_mmap` entry: `args` = [mm, oldmm].
pub const HK_DUP_MMAP: u16 = 10;
/// `exit_mmap` entry: `args` = [mm].
pub const HK_EXIT_MMAP: u16 = 11;
/// `rmap_walk` / `rmap_walk_locked` entry: `args` = [folio, folio->mapping, locked];
/// `stack` = the first kernel stack frames (they name a caller inlined into its own).
pub const HK_RMAP_WALK: u16 = 12;
/// `folio_lock_anon_vma_read`: entry `args` as [`HK_RMAP_WALK`]'s; exit `ret` = the
/// locked anon_vma or 0 (try-lock failed).
pub const HK_FOLIO_LOCK: u16 = 13;
/// `try_to_merge_with_ksm_page` exit (ksmd): `args` = [rmap_item, rmap_item->mm,
/// rmap_item->address, kpage (0: the page itself became the KSM page), mm->owner's tgid,
/// rmap_item->anon_vma (the reference a merge takes)], `ret` = int (0: merged).
pub const HK_KSM_MERGE: u16 = 14;
/// `remove_rmap_item_from_tree` entry: `args` as [`HK_KSM_MERGE`]'s with kpage 0; the
/// address' [`KSM_STABLE_FLAG`] says the item held an anon_vma reference it now drops.
pub const HK_KSM_REMOVE: u16 = 15;
/// `do_huge_pmd_anonymous_page` exit: `a` = vmf->vma after (it prepares the anon_vma
/// before it tests for a read fault), `args` = [vmf->address, vmf->flags], `ret` = vm_fault_t.
pub const HK_THP_FAULT: u16 = 16;
pub const HK_MAX: u16 = 16;

/// mm/ksm.c's flags in the low bits of `rmap_item->address`.
pub const KSM_UNSTABLE_FLAG: u64 = 0x100;
pub const KSM_STABLE_FLAG: u64 = 0x200;

/// `args[4]` of an [`HK_MERGE`] entry read from a `vma_merge_struct`.
pub const VMG_SHAPE: u64 = u64::MAX;

/// [`HookEvent::phase`].
pub const PH_ENTRY: u8 = 1;
pub const PH_EXIT: u8 = 2;

/// [`HookEvent::backend`]: which program sent it.
pub const BK_FENTRY: u8 = 1;
pub const BK_KPROBE: u8 = 2;

/// Index = `args[5]` of [`HK_MERGE`] records.
pub const MERGE_FUNCTIONS: [&str; 5] = ["vma_merge", "__vma_adjust", "vma_expand", "vma_merge_new_range", "commit_merge"];

/// Frames of the per-task caller stack ([`HookEvent::callers`], innermost in the low byte):
/// the operation a clone, unlink or rmap walk happens inside. Index = code.
pub const CALLERS: [&str; 10] =
    ["", "anon_vma_fork", "__split_vma", "merge", "copy_vma", "folio_referenced", "try_to_unmap", "try_to_migrate", "remove_migration_ptes", "mremap"];
pub const CALLER_FORK: u8 = 1;
pub const CALLER_SPLIT: u8 = 2;
pub const CALLER_MERGE: u8 = 3;
pub const CALLER_COPY_VMA: u8 = 4;
pub const CALLER_FOLIO_REFERENCED: u8 = 5;
pub const CALLER_TRY_TO_UNMAP: u8 = 6;
pub const CALLER_TRY_TO_MIGRATE: u8 = 7;
pub const CALLER_REMOVE_MIGRATION_PTES: u8 = 8;
/// The mremap syscall (its arch entry), around copy_vma and the old range's unmap.
pub const CALLER_MREMAP: u8 = 9;

/// Chains longer than this are counted only this far ([`VmaSnap::chain_len`] saturates).
pub const HOOK_CHAIN_MAX: u64 = 256;

/// One vm_area_struct, read at BTF offsets when the hook ran. All 0 for a NULL vma.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "std", derive(serde::Serialize))]
pub struct VmaSnap {
    pub vma: u64,
    pub mm: u64,
    pub start: u64,
    pub end: u64,
    pub pgoff: u64,
    pub flags: u64,
    pub anon_vma: u64,
    /// Entries of `vma->anon_vma_chain` (L), up to [`HOOK_CHAIN_MAX`].
    pub chain_len: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HookEvent {
    /// [`EV_HOOK`].
    pub kind: u32,
    pub pid: u32,
    pub tgid: u32,
    /// `HK_*`.
    pub hook: u16,
    /// [`PH_ENTRY`] / [`PH_EXIT`].
    pub phase: u8,
    /// [`BK_FENTRY`] / [`BK_KPROBE`].
    pub backend: u8,
    pub ktime: u64,
    /// The task's caller stack (one `CALLER_*` per byte, innermost lowest) outside this
    /// hook's own frame.
    pub callers: u64,
    pub ret: u64,
    pub args: [u64; 6],
    pub a: VmaSnap,
    pub b: VmaSnap,
    /// Return addresses, innermost first, for the hooks that take them (0 = none).
    pub stack: [u64; HOOK_STACK_DEPTH],
}

pub const HOOK_STACK_DEPTH: usize = 6;
pub const HOOK_EVENT_SIZE: usize = core::mem::size_of::<HookEvent>();
const _: () = assert!(HOOK_EVENT_SIZE == 264 && HOOK_EVENT_SIZE.is_multiple_of(8));

/// Optional offsets the hooks read besides `offsets.rs`' (absent = `u64::MAX`): set from
/// BTF by userspace as the `HOOK_OFFSETS` global.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HookOffsets {
    pub folio_mapping: u64,
    pub vmg_prev: u64,
    pub vmg_next: u64,
    /// `vma_merge_struct.vma` (6.12) or `.middle` (6.14+).
    pub vmg_vma: u64,
    pub vmg_start: u64,
    pub vmg_end: u64,
    /// `struct ksm_rmap_item` (mm/ksm.c) and `mm_struct.owner` (CONFIG_MEMCG) for the KSM
    /// programs, `struct vm_fault` for the THP fault hook.
    pub rmap_item_mm: u64,
    pub rmap_item_address: u64,
    pub rmap_item_anon_vma: u64,
    pub mm_owner: u64,
    pub vmf_vma: u64,
    pub vmf_address: u64,
    pub vmf_flags: u64,
}

impl HookOffsets {
    pub const UNSET: HookOffsets = HookOffsets {
        folio_mapping: u64::MAX,
        vmg_prev: u64::MAX,
        vmg_next: u64::MAX,
        vmg_vma: u64::MAX,
        vmg_start: u64::MAX,
        vmg_end: u64::MAX,
        rmap_item_mm: u64::MAX,
        rmap_item_address: u64::MAX,
        rmap_item_anon_vma: u64::MAX,
        mm_owner: u64::MAX,
        vmf_vma: u64::MAX,
        vmf_address: u64::MAX,
        vmf_flags: u64::MAX,
    };
}

#[cfg(feature = "std")]
impl core::fmt::Display for VmaSnap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "vma={:#x}[{:#x}-{:#x} pgoff={:#x} flags={:#x}] mm={:#x} av={:#x} L={}",
            self.vma, self.start, self.end, self.pgoff, self.flags, self.mm, self.anon_vma, self.chain_len
        )
    }
}

/// The fexit programs that read the traced function's return value, in the order of
/// `FEXIT_ARGS` (observer-ebpf/src/hook.rs): where the kernel lacks `bpf_get_func_ret`
/// (before 5.17) userspace sets each one's function's argument count from BTF, and the
/// program reads the return value from the context right after the arguments.
pub const FEXIT_RET_PROGRAMS: [&str; 15] = [
    "hk_prepare_fexit",
    "hk_mergeable_fexit",
    "hk_fork_fexit",
    "hk_clone_fexit",
    "hk_ksm_merge_fexit",
    "hk_thp_fexit",
    "hk_lock_fexit",
    "hk_split_fexit",
    "hk_copy_vma_fexit",
    "hk_merge_vma_merge_fexit",
    "hk_merge_adjust_fexit",
    "hk_merge_expand_fexit",
    "hk_merge_expand_vmg_fexit",
    "hk_merge_new_range_fexit",
    "hk_merge_commit_fexit",
];
/// `FEXIT_ARGS` value: read the return value with `bpf_get_func_ret` (5.17+).
pub const FEXIT_RET_HELPER: u64 = u64::MAX;

/// The kernel function a hook record comes from: [`HookEvent::hook`] decoded (and, for
/// [`HK_MERGE`], `args[5]`), named after the function. Decoded once, by
/// [`Hook::of`](crate::trace_abi::Hook::of); a number no program sends makes the record
/// malformed there, so nothing past the decoder compares `HK_*` numbers.
#[cfg(feature = "std")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HookFn {
    /// `__anon_vma_prepare` ([`HK_PREPARE`]).
    AnonVmaPrepare,
    /// `find_mergeable_anon_vma` ([`HK_MERGEABLE`]).
    FindMergeableAnonVma,
    /// `anon_vma_fork` ([`HK_FORK`]).
    AnonVmaFork,
    /// `anon_vma_clone` ([`HK_CLONE`]).
    AnonVmaClone,
    /// `unlink_anon_vmas` ([`HK_UNLINK`]).
    UnlinkAnonVmas,
    /// `__put_anon_vma` ([`HK_PUT`]).
    PutAnonVma,
    /// `__split_vma` ([`HK_SPLIT`]).
    SplitVma,
    /// One of the merge functions ([`HK_MERGE`]).
    Merge(MergeFn),
    /// `copy_vma` ([`HK_COPY_VMA`]).
    CopyVma,
    /// `dup_mmap` ([`HK_DUP_MMAP`]).
    DupMmap,
    /// `exit_mmap` ([`HK_EXIT_MMAP`]).
    ExitMmap,
    /// `rmap_walk` / `rmap_walk_locked` ([`HK_RMAP_WALK`]).
    RmapWalk,
    /// `folio_lock_anon_vma_read` ([`HK_FOLIO_LOCK`]).
    FolioLockAnonVmaRead,
    /// `try_to_merge_with_ksm_page` ([`HK_KSM_MERGE`]).
    TryToMergeWithKsmPage,
    /// `remove_rmap_item_from_tree` ([`HK_KSM_REMOVE`]).
    RemoveRmapItemFromTree,
    /// `do_huge_pmd_anonymous_page` ([`HK_THP_FAULT`]).
    DoHugePmdAnonymousPage,
}

#[cfg(feature = "std")]
impl HookFn {
    /// `hook` and, for a merge, `args[5]`; `None` for a number this build does not know.
    pub fn of(hook: u16, merge_index: u64) -> Option<HookFn> {
        Some(match hook {
            HK_PREPARE => HookFn::AnonVmaPrepare,
            HK_MERGEABLE => HookFn::FindMergeableAnonVma,
            HK_FORK => HookFn::AnonVmaFork,
            HK_CLONE => HookFn::AnonVmaClone,
            HK_UNLINK => HookFn::UnlinkAnonVmas,
            HK_PUT => HookFn::PutAnonVma,
            HK_SPLIT => HookFn::SplitVma,
            HK_MERGE => HookFn::Merge(MergeFn::of(merge_index)?),
            HK_COPY_VMA => HookFn::CopyVma,
            HK_DUP_MMAP => HookFn::DupMmap,
            HK_EXIT_MMAP => HookFn::ExitMmap,
            HK_RMAP_WALK => HookFn::RmapWalk,
            HK_FOLIO_LOCK => HookFn::FolioLockAnonVmaRead,
            HK_KSM_MERGE => HookFn::TryToMergeWithKsmPage,
            HK_KSM_REMOVE => HookFn::RemoveRmapItemFromTree,
            HK_THP_FAULT => HookFn::DoHugePmdAnonymousPage,
            _ => return None,
        })
    }
}

/// The merge function of an [`HK_MERGE`] record: `args[5]`, the index in
/// [`MERGE_FUNCTIONS`], decoded.
#[cfg(feature = "std")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MergeFn {
    /// `vma_merge` (before 6.12): returns the merged VMA.
    VmaMerge,
    /// `__vma_adjust` (before 6.3): 0 on success.
    VmaAdjust,
    /// `vma_expand`: 0 on success.
    VmaExpand,
    /// `vma_merge_new_range` (6.12+): returns the merged VMA.
    VmaMergeNewRange,
    /// `commit_merge` (6.12+): 0 on success.
    CommitMerge,
}

#[cfg(feature = "std")]
impl MergeFn {
    const ALL: [MergeFn; 5] = [MergeFn::VmaMerge, MergeFn::VmaAdjust, MergeFn::VmaExpand, MergeFn::VmaMergeNewRange, MergeFn::CommitMerge];

    pub fn of(index: u64) -> Option<MergeFn> {
        usize::try_from(index).ok().and_then(|i| MergeFn::ALL.get(i)).copied()
    }

    /// The kernel function's name ([`MERGE_FUNCTIONS`]).
    pub fn name(self) -> &'static str {
        MERGE_FUNCTIONS[self as usize]
    }

    /// The function returns the merged VMA (NULL: no merge) rather than an int (0: merged).
    pub fn returns_vma(self) -> bool {
        matches!(self, MergeFn::VmaMerge | MergeFn::VmaMergeNewRange)
    }
}

/// [`HookEvent::phase`] decoded.
#[cfg(feature = "std")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// [`PH_ENTRY`]: the function was called (its arguments).
    Entry,
    /// [`PH_EXIT`]: it returned (`ret`).
    Exit,
}

#[cfg(feature = "std")]
impl Phase {
    pub fn of(phase: u8) -> Option<Phase> {
        match phase {
            PH_ENTRY => Some(Phase::Entry),
            PH_EXIT => Some(Phase::Exit),
            _ => None,
        }
    }
}

/// [`HookEvent::backend`] decoded: the kind of program that sent the record.
#[cfg(feature = "std")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HookBackend {
    /// [`BK_FENTRY`]: fentry/fexit.
    Fentry,
    /// [`BK_KPROBE`]: kprobe/kretprobe.
    Kprobe,
}

#[cfg(feature = "std")]
impl HookBackend {
    pub fn of(backend: u8) -> Option<HookBackend> {
        match backend {
            BK_FENTRY => Some(HookBackend::Fentry),
            BK_KPROBE => Some(HookBackend::Kprobe),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            HookBackend::Fentry => "fentry",
            HookBackend::Kprobe => "kprobe",
        }
    }
}

/// The innermost frame of [`HookEvent::callers`] (its low byte) decoded: the operation a
/// hooked call ran inside, named after the function (or syscall) whose frame it is.
#[cfg(feature = "std")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Caller {
    /// No frame (0): the call was not inside any of them.
    TopLevel,
    /// `anon_vma_fork` ([`CALLER_FORK`]).
    AnonVmaFork,
    /// `__split_vma` ([`CALLER_SPLIT`]).
    SplitVma,
    /// A merge function ([`CALLER_MERGE`]).
    Merge,
    /// `copy_vma` ([`CALLER_COPY_VMA`]).
    CopyVma,
    /// `folio_referenced` ([`CALLER_FOLIO_REFERENCED`]).
    FolioReferenced,
    /// `try_to_unmap` ([`CALLER_TRY_TO_UNMAP`]).
    TryToUnmap,
    /// `try_to_migrate` ([`CALLER_TRY_TO_MIGRATE`]).
    TryToMigrate,
    /// `remove_migration_ptes` ([`CALLER_REMOVE_MIGRATION_PTES`]).
    RemoveMigrationPtes,
    /// The mremap syscall ([`CALLER_MREMAP`]).
    Mremap,
    /// A code this build does not know: kept (the frame is context, not the record's
    /// identity), named "?".
    Unknown(u8),
}

#[cfg(feature = "std")]
impl Caller {
    /// The innermost frame of a `callers` stack.
    pub fn innermost(callers: u64) -> Caller {
        match (callers & 0xff) as u8 {
            0 => Caller::TopLevel,
            CALLER_FORK => Caller::AnonVmaFork,
            CALLER_SPLIT => Caller::SplitVma,
            CALLER_MERGE => Caller::Merge,
            CALLER_COPY_VMA => Caller::CopyVma,
            CALLER_FOLIO_REFERENCED => Caller::FolioReferenced,
            CALLER_TRY_TO_UNMAP => Caller::TryToUnmap,
            CALLER_TRY_TO_MIGRATE => Caller::TryToMigrate,
            CALLER_REMOVE_MIGRATION_PTES => Caller::RemoveMigrationPtes,
            CALLER_MREMAP => Caller::Mremap,
            code => Caller::Unknown(code),
        }
    }

    /// Its name in [`CALLERS`] ("" at top level, "?" for an unknown code).
    pub fn name(self) -> &'static str {
        match self {
            Caller::TopLevel => CALLERS[0],
            Caller::AnonVmaFork => CALLERS[CALLER_FORK as usize],
            Caller::SplitVma => CALLERS[CALLER_SPLIT as usize],
            Caller::Merge => CALLERS[CALLER_MERGE as usize],
            Caller::CopyVma => CALLERS[CALLER_COPY_VMA as usize],
            Caller::FolioReferenced => CALLERS[CALLER_FOLIO_REFERENCED as usize],
            Caller::TryToUnmap => CALLERS[CALLER_TRY_TO_UNMAP as usize],
            Caller::TryToMigrate => CALLERS[CALLER_TRY_TO_MIGRATE as usize],
            Caller::RemoveMigrationPtes => CALLERS[CALLER_REMOVE_MIGRATION_PTES as usize],
            Caller::Mremap => CALLERS[CALLER_MREMAP as usize],
            Caller::Unknown(_) => "?",
        }
    }
}

/// A hook record's `args` as its function and phase fill them (each `HK_*` says which),
/// decoded by [`Hook::of`](crate::trace_abi::Hook::of), so no consumer indexes `args`.
/// [`HookArgs::None`] where the record carries none (its VMAs, `ret` and `caller` say it
/// all, or no program sends that phase).
#[cfg(feature = "std")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookArgs {
    None,
    /// `__anon_vma_prepare` exit: the preparing task's own mm.
    Prepare {
        task_mm: u64,
    },
    /// `anon_vma_fork` exit: the child VMA's anon_vma's parent (not the parent VMA's
    /// anon_vma: an ancestor was reused).
    Fork {
        anon_vma_parent: u64,
    },
    /// `__put_anon_vma` entry: the anon_vma, its root and both refcounts as read.
    PutAnonVma {
        anon_vma: u64,
        root: u64,
        root_refcount: u64,
        refcount: u64,
    },
    /// `__split_vma` entry: where, and whether the new VMA is the lower part.
    SplitVma {
        addr: u64,
        new_below: bool,
    },
    /// A merge function's entry: the range it merges, from the 6.1 arguments or the
    /// `vma_merge_struct` ([`VMG_SHAPE`]).
    Merge {
        start: u64,
        end: u64,
    },
    /// `copy_vma` entry: the destination and the source's page offset.
    CopyVma {
        addr: u64,
        len: u64,
        pgoff: u64,
    },
    /// `dup_mmap` entry.
    DupMmap {
        mm: u64,
        oldmm: u64,
    },
    /// `exit_mmap` entry.
    ExitMmap {
        mm: u64,
    },
    /// `rmap_walk` / `folio_lock_anon_vma_read` entry: the folio, its `mapping` as read
    /// (low bit: anon) and whether the walk runs locked.
    Folio {
        folio: u64,
        mapping: u64,
        locked: bool,
    },
    /// `try_to_merge_with_ksm_page` exit, `remove_rmap_item_from_tree` entry. `kpage`: the
    /// KSM page merged into (0: this page became it; 0 on a removal); `owner_tgid`: the
    /// mm's owner then (0: none).
    Ksm {
        rmap_item: u64,
        mm: u64,
        address: u64,
        kpage: u64,
        owner_tgid: u32,
        anon_vma: u64,
    },
    /// `do_huge_pmd_anonymous_page` exit: the fault's address and `vmf->flags`.
    ThpFault {
        address: u64,
        flags: u64,
    },
}

#[cfg(feature = "std")]
impl HookArgs {
    /// What `args` hold for a record of `function` at `phase`.
    pub fn of(function: HookFn, phase: Phase, args: [u64; 6]) -> HookArgs {
        use HookFn::*;
        use Phase::{Entry, Exit};
        let [a0, a1, a2, a3, a4, a5] = args;
        match (function, phase) {
            (AnonVmaPrepare, Exit) => HookArgs::Prepare { task_mm: a0 },
            (AnonVmaFork, Exit) => HookArgs::Fork { anon_vma_parent: a0 },
            (PutAnonVma, Entry) => HookArgs::PutAnonVma { anon_vma: a0, root: a1, root_refcount: a2, refcount: a3 },
            // [mm or vmi, addr, new_below]
            (SplitVma, Entry) => HookArgs::SplitVma { addr: a1, new_below: a2 != 0 },
            (Merge(f), Entry) => {
                let (start, end) = match (a4 == VMG_SHAPE, f) {
                    // [vmg, start, end, next, VMG_SHAPE]
                    (true, _) => (a1, a2),
                    // __vma_adjust(vma, start, end, ..)
                    (false, MergeFn::VmaAdjust) => (a1, a2),
                    // vma_merge(mm, prev, addr, end, ..), vma_expand(mas, vma, start, end, ..)
                    _ => (a2, a3),
                };
                HookArgs::Merge { start, end }
            }
            (CopyVma, Entry) => HookArgs::CopyVma { addr: a0, len: a1, pgoff: a2 },
            (DupMmap, Entry) => HookArgs::DupMmap { mm: a0, oldmm: a1 },
            (ExitMmap, Entry) => HookArgs::ExitMmap { mm: a0 },
            (RmapWalk | FolioLockAnonVmaRead, Entry) => HookArgs::Folio { folio: a0, mapping: a1, locked: a2 != 0 },
            // A pid_t the program widened: a crafted record's larger value wraps, as the
            // observer always read it.
            (TryToMergeWithKsmPage, Exit) | (RemoveRmapItemFromTree, Entry) => {
                HookArgs::Ksm { rmap_item: a0, mm: a1, address: a2, kpage: a3, owner_tgid: a4 as u32, anon_vma: a5 }
            }
            (DoHugePmdAnonymousPage, Exit) => HookArgs::ThpFault { address: a0, flags: a1 },
            _ => HookArgs::None,
        }
    }
}
