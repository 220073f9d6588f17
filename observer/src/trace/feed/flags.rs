//! vm_flags and mmap(2) flags as the kernel spells them, and the pgoff tags that stand in
//! for the vm_flags the model has no bit for: the bit-level half of the translation,
//! apart from the syscalls and prepares that use it (`syscalls.rs`, `prepares.rs`).
use super::Feed;

/// pgoff bits for what must match for a merge besides pgoff contiguity and the model's
/// flags (`Event::MapPgoff`): another file, and vm_flags the model has no bit for. The
/// model keeps 45 bits of pgoff (its VMA record packs history above them), and anonymous
/// pgoffs of 48-bit address spaces (x86-64 4-level, arm64) stay below 2^36, so bits 40-43
/// are free; with 5-level paging (57-bit) a tag could meet a real pgoff bit.
pub(super) const PGOFF_FILE: u64 = 1 << 43;
pub(super) const PGOFF_NORESERVE: u64 = 1 << 42;
/// `VM_GROWSDOWN` (a stack): the model has no bit for it.
pub(super) const PGOFF_GROWSDOWN: u64 = 1 << 41;
/// Arch flags (vm_flags bits 32-40: arm64's VM_MTE_ALLOWED on anonymous mmaps with MTE
/// and on every brk VMA, x86's pkey bits), seen only in a VMA the kernel showed us; a brk
/// extension takes the .bss tail's (`Proc::brk_tag`).
pub(super) const PGOFF_ARCH: u64 = 1 << 40;
const _: () = assert!(
    (PGOFF_FILE | PGOFF_NORESERVE | PGOFF_GROWSDOWN | PGOFF_ARCH) >> lazyvma_model::event::PGOFF_BITS == 0,
    "the model drops pgoff bits above PGOFF_BITS"
);
pub(super) const VM_HIGH_ARCH: u64 = 0x1ff << 32;

// vm_flags (include/linux/mm.h; the same on 6.1 and 6.18).
#[cfg(test)]
pub(super) const VM_READ: u64 = 0x1;
#[cfg(test)]
pub(super) const VM_WRITE: u64 = 0x2;
pub(super) const VM_SHARED: u64 = 0x8;
pub(super) const VM_GROWSDOWN: u64 = 0x100;
pub(super) const VM_NORESERVE: u64 = 0x200000;
pub(super) const VM_NOHUGEPAGE: u64 = 0x40000000;

// mmap(2) flags (x86_64 and arm64 share them).
pub(super) const MAP_SHARED: u64 = 0x1;
pub(super) const MAP_SHARED_VALIDATE: u64 = 0x3;
pub(super) const MAP_ANONYMOUS: u64 = 0x20;
pub(super) const MAP_GROWSDOWN: u64 = 0x100;
pub(super) const MAP_NORESERVE: u64 = 0x4000;
pub(super) const MAP_STACK: u64 = 0x20000;
pub(super) const MAP_HUGETLB: u64 = 0x40000;
pub(super) const MREMAP_DONTUNMAP: u64 = 4;
pub(super) const MLOCK_ONFAULT: u64 = 1;
pub(super) const MCL_CURRENT: u64 = 1;
pub(super) const MCL_FUTURE: u64 = 2;
pub(super) const MCL_ONFAULT: u64 = 4;
/// Above every user address (57-bit x86 included) and the exec'd stack's stand-in.
pub(super) const USER_TOP: u64 = 1 << 56;

impl Feed {
    /// The model's flags and the pgoff tag for a kernel VMA's vm_flags.
    pub(super) fn vm_flags(&self, f: u64, file: bool) -> (u16, u64) {
        // The model's bits (madvise's and mlock's too) are the seed's, read from the same vm_flags.
        let flags = lazyvma_model::seed::model_flags(f);
        let mut tag = if file || f & VM_SHARED != 0 { PGOFF_FILE } else { 0 };
        if f & VM_NORESERVE != 0 {
            tag |= PGOFF_NORESERVE;
        }
        if f & VM_GROWSDOWN != 0 {
            tag |= PGOFF_GROWSDOWN;
        }
        if f & VM_HIGH_ARCH != 0 {
            tag |= PGOFF_ARCH;
        }
        (flags, tag)
    }
}
