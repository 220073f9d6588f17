//! Scenarios that make the kernel walk or pin anon rmap: KSM, THP, reclaim, page_idle and
//! migration. Each checks its environment before mapping anything and fails with exit code 3
//! naming what is missing, so N=0 and N=3 runs skip alike.
use crate::fail::{broken, os, unavailable, Res};
use crate::out::{errno, hold, marker, Phase};
use crate::single::setup;
use crate::sysfs::{self, read_u64, selected};
use crate::vma::{self, addr, page, PAGES};
use crate::{Ctx, Done};

/// <linux/mempolicy.h>; the libc crate does not carry it.
const MPOL_MF_MOVE: i32 = 1 << 1;

/// How long the ksm scenario waits for ksmd to merge every test page.
const KSM_WAIT_MS: u64 = 60_000;

fn advise_all(c: &Ctx, len: usize, advice: i32, what: &str, missing: &str) -> Res<()> {
    for i in 0..c.n {
        if let Err(e) = vma::madvise(addr(i), len, advice, what) {
            return Err(if errno() == libc::EINVAL { unavailable(missing) } else { e });
        }
    }
    Ok(())
}

/// Pages merged by KSM in this mm: `/proc/self/ksm_merging_pages` (Linux 5.19+), else the
/// test pages whose frame has KPF_KSM in `/proc/kpageflags` (`kpf`: pagemap and kpageflags
/// fds, root only); `None` when neither can be read.
fn ksm_merged(c: &Ctx, kpf: Option<(i32, i32)>) -> Option<u64> {
    if let Some(n) = read_u64(c"/proc/self/ksm_merging_pages") {
        return Some(n);
    }
    let (pm, flags) = kpf?;
    const KPF_KSM: u64 = 1 << 21;
    let mut n = 0;
    for i in 0..c.n {
        for p in 0..PAGES {
            let e = pagemap(pm, addr(i) + p * page()).ok()?;
            let pfn = e & ((1 << 55) - 1);
            if e & (1 << 63) == 0 || pfn == 0 {
                continue;
            }
            let mut f = 0u64;
            if unsafe { libc::pread(flags, (&mut f as *mut u64).cast(), 8, (pfn * 8) as libc::off_t) } != 8 {
                return None;
            }
            n += (f & KPF_KSM != 0) as u64;
        }
    }
    Some(n)
}

/// The fds `ksm_merged` needs before 5.19, when this kernel lacks ksm_merging_pages.
fn ksm_kpageflags() -> Option<(i32, i32)> {
    if sysfs::exists(c"/proc/self/ksm_merging_pages") {
        return None;
    }
    let pm = open(c"/proc/self/pagemap", libc::O_RDONLY).ok()?;
    match open(c"/proc/kpageflags", libc::O_RDONLY) {
        Ok(f) => Some((pm, f)),
        Err(_) => {
            unsafe { libc::close(pm) };
            None
        }
    }
}

/// Every page gets the same byte (vma::write_pages), so all 4N pages can merge into one
/// KSM page. ksmd only scans VMAs that already have an anon_vma (spec §1.10).
pub fn ksm(c: &Ctx) -> Res<Done> {
    let mut buf = [0u8; 16];
    let Some(run) = sysfs::read(c"/sys/kernel/mm/ksm/run", &mut buf).map(|s| s == "1") else {
        return Err(unavailable("KSM is absent: no /sys/kernel/mm/ksm/run (kernel built without CONFIG_KSM)"));
    };
    let kpf = ksm_kpageflags();
    let pages = setup(c, true)?;
    marker(Phase::Ksm);
    advise_all(c, PAGES * page(), libc::MADV_MERGEABLE, "MADV_MERGEABLE", "MADV_MERGEABLE refused: KSM is not built in")?;
    let want = pages as u64;
    let counted = ksm_merged(c, kpf).is_some();
    if !run {
        warn!("ksm: ksmd is stopped (/sys/kernel/mm/ksm/run is not 1): pages are mergeable but will not merge unless the caller starts it");
    } else if !counted {
        // Before 5.19 without root: nothing says when ksmd is done, so wait the whole time.
        warn!("ksm: merges cannot be counted (no /proc/self/ksm_merging_pages before Linux 5.19, /proc/kpageflags needs root): waiting {KSM_WAIT_MS} ms");
    }
    if run && want > 0 {
        let mut waited = 0;
        while ksm_merged(c, kpf).unwrap_or(0) < want && waited < KSM_WAIT_MS {
            sysfs::sleep_ms(50);
            waited += 50;
        }
    }
    hold(c.hold, c.role);
    let merged = ksm_merged(c, kpf);
    if let Some((pm, f)) = kpf {
        unsafe {
            libc::close(pm);
            libc::close(f);
        }
    }
    if run && counted && merged.unwrap_or(0) < want {
        warn!("ksm: only {} of {want} pages merged", merged.unwrap_or(0));
    }
    Ok(Done { pages, extra: merged.map(|m| ("merged", m)) })
}

/// The PMD size THP would use, if THP is enabled for MADV_HUGEPAGE regions.
fn thp_size() -> Res<usize> {
    let mut buf = [0u8; 64];
    let Some(top) = sysfs::read(c"/sys/kernel/mm/transparent_hugepage/enabled", &mut buf) else {
        return Err(unavailable("no /sys/kernel/mm/transparent_hugepage (kernel built without THP)"));
    };
    if selected(top) == Some("never") {
        return Err(unavailable("THP is disabled (/sys/kernel/mm/transparent_hugepage/enabled is [never])"));
    }
    let size = read_u64(c"/sys/kernel/mm/transparent_hugepage/hpage_pmd_size").unwrap_or(2 << 20) as usize;
    // Since 6.8 each size has its own switch; "inherit" defers to the top-level one.
    let mut path = [0u8; 96];
    let p = {
        use core::fmt::Write;
        let mut w = crate::out::Line::new();
        let _ = write!(w, "/sys/kernel/mm/transparent_hugepage/hugepages-{}kB/enabled", size >> 10);
        w.c_path(&mut path)
    };
    let mut buf = [0u8; 64];
    if let Some(sel) = sysfs::read(p, &mut buf).and_then(selected) {
        if sel == "never" {
            return Err(unavailable(format!("PMD-size THP is disabled (hugepages-{}kB/enabled is [never])", size >> 10)));
        }
    }
    Ok(size)
}

/// One PMD-size, PMD-aligned region per slot (addr(i) is 4 GiB aligned). A read fault there
/// goes through do_huge_pmd_anonymous_page, which prepares the anon_vma before it even
/// looks at the fault type (spec §1.2): a read fault that allocates.
pub fn thp(c: &Ctx) -> Res<Done> {
    let size = thp_size()?;
    marker(Phase::Map);
    for i in 0..c.n {
        vma::map(addr(i), size, libc::PROT_READ | libc::PROT_WRITE)?;
    }
    advise_all(c, size, libc::MADV_HUGEPAGE, "MADV_HUGEPAGE", "MADV_HUGEPAGE refused: THP is not built in")?;
    marker(Phase::Touch);
    for i in 0..c.n {
        vma::read_pages(addr(i), 1);
    }
    hold(c.hold, c.role);
    Ok(Done::pages(c.n * size / page()))
}

/// pagemap entry of the page at `va`: bit 63 present, bit 62 swapped, bits 0-54 PFN (root only).
fn pagemap(fd: i32, va: usize) -> Res<u64> {
    let mut e = 0u64;
    let off = (va / page() * 8) as libc::off_t;
    if unsafe { libc::pread(fd, (&mut e as *mut u64).cast(), 8, off) } != 8 {
        return Err(os(format_args!("reading /proc/self/pagemap for {va:#x}")));
    }
    Ok(e)
}

fn open(path: &core::ffi::CStr, flags: i32) -> Res<i32> {
    let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(os(format_args!("open {}", path.to_string_lossy())));
    }
    Ok(fd)
}

fn has_swap() -> bool {
    let mut buf = [0u8; 4096];
    // Header line only means no swap area is active.
    sysfs::read(c"/proc/swaps", &mut buf).is_some_and(|t| t.lines().count() > 1)
}

/// Reclaim of a private anon page: try_to_unmap walks its anon_vma. Without a swap area
/// reclaim keeps anon pages before any walk, so that is "not available".
pub fn pageout(c: &Ctx) -> Res<Done> {
    if !has_swap() {
        return Err(unavailable("no swap area is active (/proc/swaps): MADV_PAGEOUT cannot reclaim anonymous pages"));
    }
    let pm = open(c"/proc/self/pagemap", libc::O_RDONLY)?;
    let pages = setup(c, true)?;
    marker(Phase::Pageout);
    advise_all(c, PAGES * page(), libc::MADV_PAGEOUT, "MADV_PAGEOUT", "MADV_PAGEOUT refused (needs Linux 5.4+)")?;
    hold(c.hold, c.role);
    let mut out = 0;
    for i in 0..c.n {
        for p in 0..PAGES {
            if pagemap(pm, addr(i) + p * page())? & (1 << 62) != 0 {
                out += 1;
            }
        }
    }
    unsafe { libc::close(pm) };
    Ok(Done { pages, extra: Some(("paged_out", out)) })
}

const PAGE_IDLE: &core::ffi::CStr = c"/sys/kernel/mm/page_idle/bitmap";

/// Writing a page's bit to page_idle/bitmap clears its young bits through an rmap walk
/// (page_idle_clear_pte_refs → folio_lock_anon_vma_read). PFNs come from pagemap (root).
pub fn page_idle(c: &Ctx) -> Res<Done> {
    if unsafe { libc::geteuid() } != 0 {
        return Err(unavailable("page-idle needs root (PFNs in /proc/self/pagemap, /sys/kernel/mm/page_idle/bitmap)"));
    }
    if !sysfs::exists(PAGE_IDLE) {
        return Err(unavailable("no /sys/kernel/mm/page_idle/bitmap (kernel built without CONFIG_IDLE_PAGE_TRACKING)"));
    }
    let pm = open(c"/proc/self/pagemap", libc::O_RDONLY)?;
    let bm = open(PAGE_IDLE, libc::O_RDWR)?;
    let mut pfns: Vec<u64> = Vec::with_capacity(c.n * PAGES);
    let pages = setup(c, true)?;
    for i in 0..c.n {
        for p in 0..PAGES {
            let va = addr(i) + p * page();
            let e = pagemap(pm, va)?;
            let pfn = e & ((1 << 55) - 1);
            if e & (1 << 63) == 0 || pfn == 0 {
                return Err(broken(format!("page at {va:#x} is not present in /proc/self/pagemap (entry {e:#x})")));
            }
            pfns.push(pfn);
        }
    }
    marker(Phase::PageIdle);
    let mut set = 0;
    for &pfn in &pfns {
        let word: u64 = 1 << (pfn % 64);
        let off = (pfn / 64 * 8) as libc::off_t;
        if unsafe { libc::pwrite(bm, (&word as *const u64).cast(), 8, off) } != 8 {
            return Err(os(format_args!("writing PFN {pfn:#x} to {}", PAGE_IDLE.to_string_lossy())));
        }
        set += 1;
    }
    hold(c.hold, c.role);
    unsafe {
        libc::close(bm);
        libc::close(pm);
    }
    Ok(Done { pages, extra: Some(("idle", set)) })
}

/// move_pages(2) of every test page to another node: try_to_migrate and
/// remove_migration_ptes walk each page's anon_vma, pinned meanwhile (spec §1.11).
pub fn migrate(c: &Ctx) -> Res<Done> {
    let mut buf = [0u8; 256];
    let Some(online) = sysfs::read(c"/sys/devices/system/node/online", &mut buf) else {
        return Err(unavailable("no NUMA support (/sys/devices/system/node/online is missing)"));
    };
    let mut nodes = [0i32; 64];
    let k = sysfs::node_list(online, &mut nodes);
    if k < 2 {
        return Err(unavailable(format!("only one NUMA node is online ({online}): migrate needs two")));
    }
    let nodes = &nodes[..k];
    let count = c.n * PAGES;
    let mut ptrs: Vec<*mut libc::c_void> = Vec::with_capacity(count);
    let mut target = vec![0i32; count];
    let mut status = vec![0i32; count];
    let pages = setup(c, true)?;
    for i in 0..c.n {
        for p in 0..PAGES {
            ptrs.push((addr(i) + p * page()) as *mut libc::c_void);
        }
    }
    let move_pages = |to: *const i32, status: &mut [i32], flags: i32| unsafe {
        libc::syscall(libc::SYS_move_pages, 0, count, ptrs.as_ptr(), to, status.as_mut_ptr(), flags)
    };
    if count > 0 {
        // nodes == NULL: only report where each page is now; no rmap walk.
        if move_pages(core::ptr::null(), &mut status, 0) < 0 {
            return Err(if errno() == libc::ENOSYS { unavailable("move_pages(2) is not built in") } else { os("move_pages (query)") });
        }
        for (t, &now) in target.iter_mut().zip(&status) {
            if now < 0 {
                return Err(broken(format!("move_pages: a test page is not resident (status {now})")));
            }
            *t = *nodes.iter().find(|&&n| n != now).unwrap_or(&nodes[0]);
        }
    }
    marker(Phase::Migrate);
    if count > 0 && move_pages(target.as_ptr(), &mut status, MPOL_MF_MOVE) < 0 {
        return Err(os("move_pages"));
    }
    let moved = target.iter().zip(&status).filter(|(t, s)| t == s).count() as u64;
    hold(c.hold, c.role);
    Ok(Done { pages, extra: Some(("moved", moved)) })
}
