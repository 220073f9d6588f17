//! The model's input language: what happened to which process, in kernel terms.
//!
//! Processes are named by a caller-chosen pid and VMAs by an address inside them; the
//! model never sees kernel pointers. A live-trace decoder translates kernel records into
//! these events; scenario files (`crate::scenario`) are parsed into them.

use crate::kernel::Kernel;

pub type Pid = u32;
pub const PAGE_SIZE: u64 = 4096;
/// The model keeps this many bits of a VMA's pgoff (a 57-bit address's page number).
pub const PGOFF_BITS: u32 = 45;

/// `vm_flags` bits the model needs (a VMA's protection lives here too). Bits 8-15 do
/// nothing but split VMAs and block merges (and anon_vma reuse), as the kernel's do: a
/// program's madvise and mlock calls set them on ranges of its heap and mappings.
pub mod vm {
    pub const READ: u16 = 1 << 0;
    pub const WRITE: u16 = 1 << 1;
    pub const EXEC: u16 = 1 << 2;
    pub const SHARED: u16 = 1 << 3;
    /// `VM_DONTCOPY` (MADV_DONTFORK).
    pub const DONTCOPY: u16 = 1 << 4;
    pub const WIPEONFORK: u16 = 1 << 5;
    /// `VM_MERGEABLE` (MADV_MERGEABLE, KSM).
    pub const MERGEABLE: u16 = 1 << 6;
    /// `VM_HUGEPAGE` (MADV_HUGEPAGE).
    pub const HUGEPAGE: u16 = 1 << 8;
    /// `VM_NOHUGEPAGE` (MADV_NOHUGEPAGE; MAP_STACK since 6.7).
    pub const NOHUGEPAGE: u16 = 1 << 9;
    /// `VM_SEQ_READ` (MADV_SEQUENTIAL).
    pub const SEQ_READ: u16 = 1 << 10;
    /// `VM_RAND_READ` (MADV_RANDOM).
    pub const RAND_READ: u16 = 1 << 11;
    /// `VM_DONTDUMP` (MADV_DONTDUMP).
    pub const DONTDUMP: u16 = 1 << 12;
    /// `VM_LOCKED` (mlock, mlock2, mlockall).
    pub const LOCKED: u16 = 1 << 13;
    /// `VM_LOCKONFAULT` (mlock2 MLOCK_ONFAULT, mlockall MCL_ONFAULT).
    pub const LOCKONFAULT: u16 = 1 << 14;
    pub const ACCESS: u16 = READ | WRITE | EXEC;
    /// Every bit a caller may set; bits 7 and 15 are the model's own (7: lazy folios present).
    pub const USER: u16 = 0x7f7f;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Write fault on a not-present PTE (`do_anonymous_page`) or COW: prepares.
    Write,
    /// Read fault, PTE path: maps the zero page, prepares nothing (spec §1.2).
    Read,
    /// Fault in a THP-eligible PMD-aligned range: prepares even on a read (spec §1.2).
    Thp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Advice {
    Mergeable,
    Unmergeable,
    DontFork,
    DoFork,
    WipeOnFork,
    KeepOnFork,
    /// `MADV_GUARD_INSTALL` (6.13+): calls `anon_vma_prepare`.
    GuardInstall,
    Hugepage,
    NoHugepage,
    /// `MADV_NORMAL`: neither sequential nor random.
    Normal,
    Random,
    Sequential,
    DontDump,
    DoDump,
}

impl Advice {
    /// The `vm_flags` bits the advice sets and clears (mm/madvise.c `madvise_update_vma`);
    /// `None` for advice that is not a flag change.
    pub fn flags(self) -> Option<(u16, u16)> {
        Some(match self {
            Advice::Mergeable => (vm::MERGEABLE, 0),
            Advice::Unmergeable => (0, vm::MERGEABLE),
            Advice::DontFork => (vm::DONTCOPY, 0),
            Advice::DoFork => (0, vm::DONTCOPY),
            Advice::WipeOnFork => (vm::WIPEONFORK, 0),
            Advice::KeepOnFork => (0, vm::WIPEONFORK),
            Advice::Hugepage => (vm::HUGEPAGE, vm::NOHUGEPAGE),
            Advice::NoHugepage => (vm::NOHUGEPAGE, vm::HUGEPAGE),
            Advice::Normal => (0, vm::SEQ_READ | vm::RAND_READ),
            Advice::Random => (vm::RAND_READ, vm::SEQ_READ),
            Advice::Sequential => (vm::SEQ_READ, vm::RAND_READ),
            Advice::DontDump => (vm::DONTDUMP, 0),
            Advice::DoDump => (0, vm::DONTDUMP),
            Advice::GuardInstall => return None,
        })
    }
}

/// Who walks the rmap of a folio (spec §2). Only the lock taken differs between callers
/// today; the split matters for reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RmapCaller {
    /// `folio_referenced` from reclaim (try-lock).
    Reclaim,
    /// `try_to_unmap`.
    Unmap,
    /// `try_to_migrate` / `remove_migration_ptes`.
    Migrate,
    /// THP split (write lock).
    ThpSplit,
    /// khugepaged `collapse_huge_page` (write lock).
    Collapse,
    Ksm,
    Damon,
    PageIdle,
    MemoryFailure,
}

impl RmapCaller {
    pub const ALL: [RmapCaller; 9] = [
        RmapCaller::Reclaim,
        RmapCaller::Unmap,
        RmapCaller::Migrate,
        RmapCaller::ThpSplit,
        RmapCaller::Collapse,
        RmapCaller::Ksm,
        RmapCaller::Damon,
        RmapCaller::PageIdle,
        RmapCaller::MemoryFailure,
    ];
    pub fn name(self) -> &'static str {
        match self {
            RmapCaller::Reclaim => "reclaim",
            RmapCaller::Unmap => "unmap",
            RmapCaller::Migrate => "migrate",
            RmapCaller::ThpSplit => "thp_split",
            RmapCaller::Collapse => "collapse",
            RmapCaller::Ksm => "ksm",
            RmapCaller::Damon => "damon",
            RmapCaller::PageIdle => "page_idle",
            RmapCaller::MemoryFailure => "memory_failure",
        }
    }
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == s)
    }
    pub(crate) fn index(self) -> usize {
        self as usize
    }
    /// Does today's kernel take the root rwsem for write on this path?
    pub fn writes(self) -> bool {
        matches!(self, RmapCaller::ThpSplit | RmapCaller::Collapse)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A process with an empty mm (its own stack/.data/heap are not modelled: test VMAs only).
    Spawn {
        pid: Pid,
    },
    /// mmap/brk of a private anonymous range; merges with neighbours as the kernel does.
    Map {
        pid: Pid,
        start: u64,
        pages: u64,
        flags: u16,
    },
    /// `Map` with the VMA's `vm_pgoff` as the kernel set it (a file mapping's page offset,
    /// an mremap-moved range's old one) instead of `start >> 12`. Two VMAs merge or lend
    /// their anon_vma only with contiguous pgoffs, so a caller puts what else must match
    /// and the model has no field for (`vm_file`, flags it has no bit for) in high bits
    /// below [`PGOFF_BITS`] that its address space leaves free (bits 40..44 for 48-bit ones).
    MapPgoff {
        pid: Pid,
        start: u64,
        pages: u64,
        flags: u16,
        pgoff: u64,
    },
    Fault {
        pid: Pid,
        addr: u64,
        kind: FaultKind,
    },
    /// fork: `dup_mmap` walks the parent's VMAs in address order.
    Fork {
        parent: Pid,
        child: Pid,
    },
    Exit {
        pid: Pid,
    },
    /// Tear the old mm down; with `stack`, the new image's stack VMA (one page) is written
    /// by the argv copy.
    Exec {
        pid: Pid,
        stack: Option<u64>,
    },
    /// New protection (`vm::ACCESS` bits) of a range: split or merge as the kernel does.
    Mprotect {
        pid: Pid,
        start: u64,
        pages: u64,
        prot: u16,
    },
    Madvise {
        pid: Pid,
        start: u64,
        pages: u64,
        advice: Advice,
    },
    Munmap {
        pid: Pid,
        start: u64,
        pages: u64,
    },
    /// mremap move of `[old, old+pages)` (inside one VMA) to `new` (MREMAP_FIXED|MAYMOVE).
    Mremap {
        pid: Pid,
        old: u64,
        pages: u64,
        new: u64,
        dontunmap: bool,
    },
    /// mremap to a new size, `[old, old+pages)` (inside one VMA) → `new_pages`: at `new ==
    /// old` a shrink unmaps the tail and a grow expands the VMA in place (merging with the
    /// next one as `vma_merge_extend` does); elsewhere the tail beyond `new_pages` is
    /// unmapped and the rest moved, its copy `new_pages` long (`copy_vma` of the new length).
    MremapResize {
        pid: Pid,
        old: u64,
        pages: u64,
        new: u64,
        new_pages: u64,
    },
    /// mlock / munlock (`flags` = `vm::LOCKED | vm::LOCKONFAULT` or a part, 0 to unlock) of
    /// `[start, start+pages)`: the flags change as `mlock_fixup` does; the pages it
    /// populates come as their own faults.
    Mlock {
        pid: Pid,
        start: u64,
        pages: u64,
        flags: u16,
    },
    /// ksmd merges `pages` pages of the VMA at `addr` into the stable tree.
    KsmMerge {
        pid: Pid,
        addr: u64,
        pages: u32,
    },
    /// A ksmd scan drops the rmap_items of VMAs that are gone or no longer mergeable.
    KsmCleanup,
    /// khugepaged collapses a PMD range of the VMA at `addr`.
    ThpCollapse {
        pid: Pid,
        addr: u64,
    },
    RmapWalk {
        pid: Pid,
        addr: u64,
        caller: RmapCaller,
    },
    SetKernel(Kernel),
    /// A phase marker (no effect on the model; reports group by it).
    Phase(String),
}
