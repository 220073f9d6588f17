//! Records the BPF programs write and userspace decodes: `#[repr(C)]`, plain integers,
//! no padding surprises (every struct is a multiple of 8 bytes with explicit pads).

/// An offset global left at this value means "field absent on this kernel".
pub const FIELD_ABSENT: u64 = u64::MAX;

/// `iter/task_vma` writes at most this many chain entries per VMA; longer chains are
/// still counted (up to [`CHAIN_COUNT_MAX`]) and flagged truncated.
pub const CHAIN_EMIT_MAX: u32 = 64;
/// The walk stops counting here; a chain this long sets [`VmaRecord::truncated`] = 2.
pub const CHAIN_COUNT_MAX: u32 = 1024;

/// First u32 of every snapshot record.
pub const REC_VMA: u32 = 1;
pub const REC_AVC: u32 = 2;
/// A chain entry as its anon_vma's address alone ([`AvRecord`]): what the estimate needs.
pub const REC_AV: u32 = 3;
/// The `iter/task` pass (kernels without `iter/task_vma`) stopped walking a process's VMA
/// list before its end ([`CutRecord`]).
pub const REC_CUT: u32 = 4;

/// Steps of the `iter/task` pass's walk per process: one per chain entry and two per VMA.
/// Bounded by what 5.10's verifier accepts (it checks every step of the loop).
pub const WALK_STEPS: u32 = 768;

/// Passes of the `iter/task` walk one snapshot takes at most: a process cut by the steps or
/// the buffer is resumed in the next pass (from [`Resume::next`]) until its list ends. Each
/// pass writes at least one VMA of it (~150-250 typically): 512 reach `vm.max_map_count`'s
/// default (65,530). A process still unfinished after the last is cut ([`CUT_PASSES`]).
pub const WALK_PASSES: u32 = 512;
/// Levels of `mm->mm_rb` a resumed walk descends to find its next VMA: a red-black tree of
/// n nodes is at most 2·log2(n + 1) deep (64 covers 2^32 VMAs).
pub const RB_DEPTH: u32 = 64;
/// [`VmaRecord::truncated`] of a VMA the `iter/task` pass stopped in, part of its chain
/// written: the next pass writes it again, whole; the decoder drops this record and the
/// chain entries before it.
pub const TRUNC_RESUMED: u32 = 3;
/// [`Resume::next`] of a walk that reached the list's end (or was cut for good).
pub const RESUME_DONE: u64 = u64::MAX;
/// [`CutRecord::raced`]: still unfinished after [`WALK_PASSES`] passes (written by userspace).
pub const CUT_PASSES: u32 = 3;

/// Where one task's `iter/task` walk resumes (a BPF hash map keyed by `task->pid`): the
/// vm_end of the last VMA it wrote. Also what a re-show of the same task in the same pass
/// (the kernel's seq_file retries a task whose output did not fit beside others') starts
/// from again, so a retry writes what the discarded try wrote.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resume {
    /// The pass (0-based) that wrote this entry.
    pub pass: u64,
    /// Where that pass started: 0 = `mm->mmap`, else the first VMA ending above this.
    pub from: u64,
    /// Where the next pass starts; [`RESUME_DONE`] when there is nothing left.
    pub next: u64,
    /// VMA records written in the passes before `pass`, and up to `next`.
    pub before: u64,
    pub total: u64,
    pub mm: u64,
    /// `task->tgid`, for the cut userspace writes when the passes run out.
    pub tgid: u64,
    /// `mm->map_count` when the entry was written.
    pub map_count: u64,
}

pub const RESUME_SIZE: usize = core::mem::size_of::<Resume>();

/// One VMA, written after the walk of its `anon_vma_chain` (so after its [`AvcRecord`]s).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmaRecord {
    pub kind: u32,
    /// `task->tgid`.
    pub pid: u32,
    /// `task->pid`.
    pub tid: u32,
    /// 0 = every chain entry was written; 1 = only the first [`CHAIN_EMIT_MAX`] were
    /// (`chain_len` is exact); 2 = the count itself stopped at [`CHAIN_COUNT_MAX`];
    /// [`TRUNC_RESUMED`]: not a VMA of the snapshot (see there).
    pub truncated: u32,
    pub comm: [u8; 16],
    pub vma: u64,
    pub mm: u64,
    pub vm_start: u64,
    pub vm_end: u64,
    pub vm_pgoff: u64,
    pub vm_flags: u64,
    pub anon_vma: u64,
    pub chain_len: u64,
}

/// One `anon_vma_chain` entry of a VMA, with the fields of the anon_vma it links to.
/// Entries of one VMA come newest first (the root last), as the list holds them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AvcRecord {
    pub kind: u32,
    /// `anon_vma->refcount.counter`.
    pub refcount: i32,
    pub vma: u64,
    pub anon_vma: u64,
    pub root: u64,
    pub parent: u64,
    /// [`FIELD_ABSENT`] on kernels before 6.0 (see `degree`).
    pub num_children: u64,
    pub num_active_vmas: u64,
    /// Pre-6.0 `degree`; [`FIELD_ABSENT`] on 6.0+.
    pub degree: u64,
}

/// One `anon_vma_chain` entry as the address of its anon_vma: written instead of an
/// [`AvcRecord`] when the pass is not asked for the anon_vmas' fields (the anon_vma itself
/// is then never read).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AvRecord {
    pub kind: u32,
    pub _pad: u32,
    pub anon_vma: u64,
}

/// Written after a process's VMA records when its walk stopped before the list's end.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CutRecord {
    pub kind: u32,
    pub pid: u32,
    pub tid: u32,
    /// 0: out of steps; 1: a VMA no longer named this mm (the list changed under the walk);
    /// 2: the task's records filled the seq_file buffer (32 KiB per object); 3
    /// ([`CUT_PASSES`]): resumed [`WALK_PASSES`] times and still unfinished. 0 and 2 are
    /// written only where no resume entry could be stored (the map full). Userspace writes
    /// 1 for a task cut in one pass and not seen in the next (it exited, or exec'd).
    pub raced: u32,
    pub mm: u64,
    /// VMA records written for this mm.
    pub vmas: u64,
    /// `mm->map_count`: VMAs the mm has.
    pub map_count: u64,
}

pub const CUT_RECORD_SIZE: usize = core::mem::size_of::<CutRecord>();
pub const AV_RECORD_SIZE: usize = core::mem::size_of::<AvRecord>();
pub const VMA_RECORD_SIZE: usize = core::mem::size_of::<VmaRecord>();
pub const AVC_RECORD_SIZE: usize = core::mem::size_of::<AvcRecord>();

const _: () = assert!(VMA_RECORD_SIZE == 96 && AVC_RECORD_SIZE == 64 && AV_RECORD_SIZE == 16 && CUT_RECORD_SIZE == 40);

/// The size of a record whose first u32 is `kind`; `None` for an unknown tag.
pub const fn record_size(kind: u32) -> Option<usize> {
    match kind {
        REC_VMA => Some(VMA_RECORD_SIZE),
        REC_AVC => Some(AVC_RECORD_SIZE),
        REC_AV => Some(AV_RECORD_SIZE),
        REC_CUT => Some(CUT_RECORD_SIZE),
        _ => None,
    }
}
