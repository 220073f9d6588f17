//! What real programs do to VMAs beyond protection: madvise advice that sets vm_flags
//! (MADV_HUGEPAGE, NOHUGEPAGE, RANDOM, SEQUENTIAL, DONTDUMP), mlock, and mremap to a new
//! size, with the kernel's exact counts (mm/madvise.c, mm/mlock.c, mm/mremap.c, mm/vma.c).

use lazyvma_model::event::{vm, Advice, Event, FaultKind, PAGE_SIZE};
use lazyvma_model::kernel::Kernel;
use lazyvma_model::knobs::Knobs;
use lazyvma_model::pair::Pair;

const A: u64 = 0x1000_0000;
const RW: u16 = vm::READ | vm::WRITE;

fn pair(kernel: Kernel) -> Pair {
    let mut p = Pair::new(kernel, Knobs::default());
    p.apply(&Event::Spawn { pid: 1 }).unwrap();
    p
}

fn at(page: u64) -> u64 {
    A + page * PAGE_SIZE
}

fn map(p: &mut Pair, page: u64, pages: u64) {
    p.apply(&Event::Map { pid: 1, start: at(page), pages, flags: RW }).unwrap();
}

fn write(p: &mut Pair, page: u64) {
    p.apply(&Event::Fault { pid: 1, addr: at(page), kind: FaultKind::Write }).unwrap();
}

fn madvise(p: &mut Pair, page: u64, pages: u64, advice: Advice) {
    p.apply(&Event::Madvise { pid: 1, start: at(page), pages, advice }).unwrap();
}

/// (VMAs, live AV, live AVC) of the eager model.
fn live(p: &Pair) -> (usize, u64, u64) {
    let c = p.eager().counts();
    (p.eager().mapped_vmas(), c.anon_vma.live, c.anon_vma_chain.live)
}

fn bounds(p: &Pair) -> Vec<(u64, u64)> {
    p.eager().vmas(1).unwrap().iter().map(|v| ((v.start - A) / PAGE_SIZE, (v.end - A) / PAGE_SIZE)).collect()
}

#[test]
fn hugepage_advice_splits_and_its_opposite_merges_back() {
    for kernel in [Kernel::V6_1, Kernel::V6_18] {
        let mut p = pair(kernel);
        map(&mut p, 0, 4);
        write(&mut p, 0);
        madvise(&mut p, 1, 2, Advice::Hugepage);
        // __split_vma twice: +2 vm_area_struct, each piece cloning the chain (+1 AVC).
        assert_eq!(live(&p), (3, 1, 3), "{kernel:?}");
        assert_eq!(bounds(&p), [(0, 1), (1, 3), (3, 4)]);
        // The same advice again changes no flag: nothing happens.
        madvise(&mut p, 1, 2, Advice::Hugepage);
        assert_eq!(live(&p), (3, 1, 3));
        // NOHUGEPAGE on all three: every piece gets the same flags and they merge.
        madvise(&mut p, 0, 4, Advice::NoHugepage);
        assert_eq!(live(&p), (1, 1, 1), "{kernel:?}");
        // NOHUGEPAGE is a flag too: a fresh neighbour without it does not merge.
        map(&mut p, 4, 1);
        assert_eq!(bounds(&p), [(0, 4), (4, 5)]);
    }
}

#[test]
fn a_neighbour_with_other_huge_flags_lends_no_anon_vma() {
    // anon_vma_compatible ignores only the access bits: prot differs, the anon_vma is reused.
    let mut p = pair(Kernel::V6_18);
    map(&mut p, 0, 2);
    p.apply(&Event::Mprotect { pid: 1, start: at(1), pages: 1, prot: vm::READ | vm::WRITE | vm::EXEC }).unwrap();
    write(&mut p, 0);
    write(&mut p, 1);
    assert_eq!(live(&p), (2, 1, 2));
    // MADV_HUGEPAGE on one half: find_mergeable_anon_vma refuses, each prepares its own.
    let mut p = pair(Kernel::V6_18);
    map(&mut p, 0, 2);
    madvise(&mut p, 1, 1, Advice::Hugepage);
    write(&mut p, 0);
    write(&mut p, 1);
    assert_eq!(live(&p), (2, 2, 2));
}

#[test]
fn read_pattern_and_dump_advice_are_flags_that_block_merges() {
    for (set, undo) in [(Advice::Random, Advice::Normal), (Advice::Sequential, Advice::Normal), (Advice::DontDump, Advice::DoDump)] {
        let mut p = pair(Kernel::V6_18);
        map(&mut p, 0, 3);
        write(&mut p, 0);
        madvise(&mut p, 1, 1, set);
        assert_eq!(live(&p), (3, 1, 3), "{set:?}");
        madvise(&mut p, 1, 1, undo);
        assert_eq!(live(&p), (1, 1, 1), "{undo:?}");
    }
    // RANDOM and SEQUENTIAL exclude each other: SEQUENTIAL over a RANDOM piece is one change.
    let mut p = pair(Kernel::V6_18);
    map(&mut p, 0, 2);
    madvise(&mut p, 0, 1, Advice::Random);
    madvise(&mut p, 0, 2, Advice::Sequential);
    assert_eq!(bounds(&p), [(0, 2)]);
}

#[test]
fn mlock_splits_and_munlock_merges_back() {
    let mut p = pair(Kernel::V6_18);
    map(&mut p, 0, 4);
    write(&mut p, 0);
    p.apply(&Event::Mlock { pid: 1, start: at(1), pages: 1, flags: vm::LOCKED }).unwrap();
    assert_eq!(live(&p), (3, 1, 3));
    // MLOCK_ONFAULT is another flag: a locked neighbour with it stays apart.
    p.apply(&Event::Mlock { pid: 1, start: at(2), pages: 1, flags: vm::LOCKED | vm::LOCKONFAULT }).unwrap();
    assert_eq!(bounds(&p), [(0, 1), (1, 2), (2, 3), (3, 4)]);
    // mlock (without ONFAULT) over both: one locked VMA in the middle.
    p.apply(&Event::Mlock { pid: 1, start: at(1), pages: 2, flags: vm::LOCKED }).unwrap();
    assert_eq!(bounds(&p), [(0, 1), (1, 3), (3, 4)]);
    p.apply(&Event::Mlock { pid: 1, start: at(0), pages: 4, flags: 0 }).unwrap();
    assert_eq!(live(&p), (1, 1, 1));
    let before = p.counts();
    assert!(p.apply(&Event::Mlock { pid: 1, start: at(0), pages: 1, flags: vm::LOCKONFAULT }).is_err());
    assert_eq!(p.counts(), before);
}

#[test]
fn a_forked_child_is_not_mlocked() {
    let mut p = pair(Kernel::V6_18);
    map(&mut p, 0, 2);
    p.apply(&Event::Mlock { pid: 1, start: at(0), pages: 2, flags: vm::LOCKED }).unwrap();
    p.apply(&Event::Fork { parent: 1, child: 2 }).unwrap();
    // dup_mmap clears VM_LOCKED: the child's copy merges with a plain neighbour, the parent's not.
    for pid in [1, 2] {
        p.apply(&Event::Map { pid, start: at(2), pages: 1, flags: RW }).unwrap();
    }
    assert_eq!(p.eager().vmas(1).unwrap().len(), 2);
    assert_eq!(p.eager().vmas(2).unwrap().len(), 1);
}

#[test]
fn mremap_grows_in_place_and_merges_with_the_next() {
    for kernel in [Kernel::V6_1, Kernel::V6_18] {
        let mut p = pair(kernel);
        map(&mut p, 0, 2);
        write(&mut p, 0);
        map(&mut p, 4, 2);
        let grow = |pages| Event::MremapResize { pid: 1, old: at(0), pages: 2, new: at(0), new_pages: pages };
        // The next VMA is in the way of 6 pages: the kernel would move, not grow in place.
        let before = p.counts();
        assert!(p.apply(&grow(6)).is_err());
        assert_eq!(p.counts(), before);
        // 6.18's vma_merge_extend: the VMA takes [2, 4) and, compatible, the next one too;
        // 6.1's vma_adjust only moves the end.
        p.apply(&grow(4)).unwrap();
        if kernel == Kernel::V6_18 {
            assert_eq!(bounds(&p), [(0, 6)]);
            assert_eq!(live(&p), (1, 1, 1));
        } else {
            assert_eq!(bounds(&p), [(0, 4), (4, 6)]);
            assert_eq!(live(&p), (2, 1, 1));
        }
        // Shrinking in place is an munmap of the tail.
        let pages = bounds(&p)[0].1;
        p.apply(&Event::MremapResize { pid: 1, old: at(0), pages, new: at(0), new_pages: 1 }).unwrap();
        assert_eq!(bounds(&p)[0], (0, 1));
    }
}

#[test]
fn mremap_moves_with_a_new_size() {
    let mut p = pair(Kernel::V6_18);
    map(&mut p, 0, 2);
    write(&mut p, 0);
    let before = p.eager().counts();
    // Grow while moving: copy_vma makes the new VMA 5 pages long (+1 VMA, +1 AVC cloned),
    // then the old 2 pages are unmapped (-1 VMA, -1 AVC).
    p.apply(&Event::MremapResize { pid: 1, old: at(0), pages: 2, new: at(10), new_pages: 5 }).unwrap();
    assert_eq!(bounds(&p), [(10, 15)]);
    let d = p.eager().counts();
    assert_eq!((d.anon_vma_chain.alloc - before.anon_vma_chain.alloc, d.anon_vma_chain.free - before.anon_vma_chain.free), (1, 1));
    assert_eq!(live(&p), (1, 1, 1));
    // Shrink while moving: the tail is unmapped first, then 2 pages move.
    p.apply(&Event::MremapResize { pid: 1, old: at(10), pages: 5, new: at(20), new_pages: 2 }).unwrap();
    assert_eq!(bounds(&p), [(20, 22)]);
    assert_eq!(live(&p), (1, 1, 1));
    // The target may not overlap the source, and the source must be one VMA.
    let before = p.counts();
    assert!(p.apply(&Event::MremapResize { pid: 1, old: at(20), pages: 2, new: at(21), new_pages: 4 }).is_err());
    assert!(p.apply(&Event::MremapResize { pid: 1, old: at(20), pages: 3, new: at(30), new_pages: 4 }).is_err());
    assert_eq!(p.counts(), before);
}

#[test]
fn seeded_huge_flags_survive_the_round_trip() {
    assert_eq!(lazyvma_model::seed::model_flags(0x20000003), RW | vm::HUGEPAGE);
    assert_eq!(lazyvma_model::seed::model_flags(0x40002003), RW | vm::NOHUGEPAGE | vm::LOCKED);
}
