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

/// `vm_flags` bits the model needs (a VMA's protection lives here too).
pub mod vm {
    pub const READ: u8 = 1 << 0;
    pub const WRITE: u8 = 1 << 1;
    pub const EXEC: u8 = 1 << 2;
    pub const SHARED: u8 = 1 << 3;
    /// `VM_DONTCOPY` (MADV_DONTFORK).
    pub const DONTCOPY: u8 = 1 << 4;
    pub const WIPEONFORK: u8 = 1 << 5;
    /// `VM_MERGEABLE` (MADV_MERGEABLE, KSM).
    pub const MERGEABLE: u8 = 1 << 6;
    pub const ACCESS: u8 = READ | WRITE | EXEC;
    /// Every bit a caller may set; bit 7 is the model's own (lazy folios present).
    pub const USER: u8 = 0x7f;
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
    Spawn { pid: Pid },
    /// mmap/brk of a private anonymous range; merges with neighbours as the kernel does.
    Map { pid: Pid, start: u64, pages: u64, flags: u8 },
    /// `Map` with the VMA's `vm_pgoff` as the kernel set it (a file mapping's page offset,
    /// an mremap-moved range's old one) instead of `start >> 12`. Two VMAs merge or lend
    /// their anon_vma only with contiguous pgoffs, so a caller puts what else must match
    /// and the model has no field for (`vm_file`, flags it has no bit for) in high bits
    /// below [`PGOFF_BITS`] that its address space leaves free (bits 40..44 for 48-bit ones).
    MapPgoff { pid: Pid, start: u64, pages: u64, flags: u8, pgoff: u64 },
    Fault { pid: Pid, addr: u64, kind: FaultKind },
    /// fork: `dup_mmap` walks the parent's VMAs in address order.
    Fork { parent: Pid, child: Pid },
    Exit { pid: Pid },
    /// Tear the old mm down; with `stack`, the new image's stack VMA (one page) is written
    /// by the argv copy.
    Exec { pid: Pid, stack: Option<u64> },
    /// New protection (`vm::ACCESS` bits) of a range: split or merge as the kernel does.
    Mprotect { pid: Pid, start: u64, pages: u64, prot: u8 },
    Madvise { pid: Pid, start: u64, pages: u64, advice: Advice },
    Munmap { pid: Pid, start: u64, pages: u64 },
    /// mremap move of `[old, old+pages)` (inside one VMA) to `new` (MREMAP_FIXED|MAYMOVE).
    Mremap { pid: Pid, old: u64, pages: u64, new: u64, dontunmap: bool },
    /// ksmd merges `pages` pages of the VMA at `addr` into the stable tree.
    KsmMerge { pid: Pid, addr: u64, pages: u32 },
    /// A ksmd scan drops the rmap_items of VMAs that are gone or no longer mergeable.
    KsmCleanup,
    /// khugepaged collapses a PMD range of the VMA at `addr`.
    ThpCollapse { pid: Pid, addr: u64 },
    RmapWalk { pid: Pid, addr: u64, caller: RmapCaller },
    SetKernel(Kernel),
    /// A phase marker (no effect on the model; reports group by it).
    Phase(String),
}
