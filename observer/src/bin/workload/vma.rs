//! The test VMAs: private anonymous mappings at fixed, non-adjacent addresses
//! 0x1_0000_0000 * (i + 1), so no neighbour can lend its anon_vma (spec §1.2) and each VMA's
//! counts stay its own.
use crate::fail::{broken, os, Res};
use core::ptr;

pub const STRIDE: usize = 0x1_0000_0000;
/// Keeps the last test VMA (and its mremap target) far below any 47-bit mmap_base.
pub const MAX_N: usize = 4096;
/// Test VMA size in pages (spec §5).
pub const PAGES: usize = 4;

pub fn page() -> usize {
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

pub fn addr(i: usize) -> usize {
    STRIDE * (i + 1)
}

/// mremap target: half a stride above the VMA, far from every other test VMA.
pub fn moved(i: usize) -> usize {
    addr(i) + STRIDE / 2
}

pub fn map(at: usize, len: usize, prot: i32) -> Res<()> {
    let p = unsafe { libc::mmap(at as *mut libc::c_void, len, prot, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE, -1, 0) };
    if p == libc::MAP_FAILED {
        return Err(os(format_args!("mmap {len:#x} bytes at {at:#x}")));
    }
    if p as usize != at {
        // Kernels before 4.17 ignore MAP_FIXED_NOREPLACE and treat the address as a hint.
        unsafe { libc::munmap(p, len) };
        return Err(broken(format!("mmap at {at:#x} landed at {:#x}: MAP_FIXED_NOREPLACE unsupported?", p as usize)));
    }
    Ok(())
}

/// Maps the N test VMAs, `pages` pages each, read-write.
pub fn map_all(n: usize, pages: usize) -> Res<()> {
    let len = pages * page();
    for i in 0..n {
        map(addr(i), len, libc::PROT_READ | libc::PROT_WRITE)?;
    }
    Ok(())
}

/// One write per page. The first write of a VMA is its anon_vma_prepare; the same byte on
/// every page keeps pages identical (KSM can merge them) and non-zero.
pub fn write_pages(at: usize, pages: usize) {
    let pg = page();
    for p in 0..pages {
        unsafe { ptr::write_volatile((at + p * pg) as *mut u8, 0x5a) };
    }
}

/// One read per page: a PTE read fault maps the zero page and allocates nothing.
pub fn read_pages(at: usize, pages: usize) -> u64 {
    let pg = page();
    let mut sum = 0u64;
    for p in 0..pages {
        sum += unsafe { ptr::read_volatile((at + p * pg) as *const u8) } as u64;
    }
    sum
}

pub fn write_all(n: usize) -> usize {
    for i in 0..n {
        write_pages(addr(i), PAGES);
    }
    n * PAGES
}

pub fn mprotect(at: usize, len: usize, prot: i32) -> Res<()> {
    if unsafe { libc::mprotect(at as *mut libc::c_void, len, prot) } != 0 {
        return Err(os(format_args!("mprotect {len:#x} bytes at {at:#x}")));
    }
    Ok(())
}

pub fn munmap(at: usize, len: usize) -> Res<()> {
    if unsafe { libc::munmap(at as *mut libc::c_void, len) } != 0 {
        return Err(os(format_args!("munmap {len:#x} bytes at {at:#x}")));
    }
    Ok(())
}

pub fn madvise(at: usize, len: usize, advice: i32, what: &str) -> Res<()> {
    if unsafe { libc::madvise(at as *mut libc::c_void, len, advice) } != 0 {
        return Err(os(format_args!("madvise({what}) {len:#x} bytes at {at:#x}")));
    }
    Ok(())
}
