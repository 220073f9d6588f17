//! VMA syscalls: each syscall record (the ids the BPF side filters on are
//! `load::syscalls`) turned into model events (mmap's flags, mremap's moves, brk, mlock...), apart from
//! when they run (`queue.rs`) and the bits they map (`flags.rs`).
use super::{flags::*, queue::Queued, Feed};
use crate::trace::{counts::slab::At, tree::pids::Tree};
use lazyvma_model::{
    event::{vm, Advice, Event, Pid, PAGE_SIZE},
    trace_abi::*,
};
use std::cmp::Ordering;

const SYSCALL_NAMES: [&str; SYS_COUNT] = [
    "mmap",
    "munmap",
    "mprotect",
    "pkey_mprotect",
    "mremap",
    "madvise",
    "brk",
    "execve",
    "execveat",
    "mlock",
    "mlock2",
    "munlock",
    "mlockall",
    "munlockall",
    "mseal",
    "mbind",
    "prctl",
];
pub(super) const PR_SET_VMA: u64 = 0x53564d41;

fn pages(len: u64) -> u64 {
    len.div_ceil(PAGE_SIZE)
}

fn prot_bits(prot: u64) -> u16 {
    (prot & 7) as u16 // PROT_READ/WRITE/EXEC are vm::READ/WRITE/EXEC
}

fn is_err(ret: i64) -> bool {
    (-4095..0).contains(&ret)
}

impl Feed {
    /// A VMA syscall returned in a traced thread.
    pub fn syscall(&mut self, tree: &Tree, ev: &SyscallEvent) {
        let name = SYSCALL_NAMES.get((ev.slot & !SYS_ENTER) as usize).copied().unwrap_or("a VMA syscall");
        self.touched(ev.tgid, name);
        if ev.slot & SYS_ENTER != 0 {
            // execve began: any process of the tree, modelled or about to be.
            if let Some(p) = tree.procs.iter().rposition(|p| p.tgid == ev.tgid && !p.exited) {
                self.in_exec.insert(p, Vec::new());
                if self.seed.as_ref().is_none_or(|s| s.followed) {
                    self.whole_exec.insert(p);
                } else {
                    self.whole_exec.remove(&p);
                }
            }
            return;
        }
        let slot = ev.slot as usize;
        if (slot == SYS_EXECVE || slot == SYS_EXECVEAT) && is_err(ev.ret) {
            // A failed exec: what it prepared went with its unused mm.
            if let Some(p) = tree.procs.iter().rposition(|p| p.tgid == ev.tgid && !p.exited) {
                self.whole_exec.remove(&p);
                let n = self.in_exec.remove(&p).map_or(0, |v| v.len());
                self.coverage.faults_not_placed += n as u64;
                if n > 0 && self.mm_of(p).is_some() {
                    self.inexact(p, Self::at(tree, p), &format!("{n} prepares of a failed exec not placed"));
                }
            }
            return;
        }
        let Some((proc, mm)) = self.modelled(tree, ev.tgid) else { return };
        // A successful exec's exit comes after `sched_process_exec` did all of its work.
        if slot >= SYS_COUNT || is_err(ev.ret) || slot == SYS_EXECVE || slot == SYS_EXECVEAT {
            return;
        }
        self.queue(mm, ev.key, Queued::Syscall(*ev, Self::at(tree, proc)));
    }

    /// A VMA syscall's effect on mm `mm`, in its turn.
    pub(super) fn apply_syscall(&mut self, mm: usize, ev: &SyscallEvent, at: At) {
        let slot = ev.slot as usize;
        let pid = Self::pid(mm);
        let a = ev.args;
        let name = SYSCALL_NAMES[slot];
        match slot {
            SYS_MMAP => {
                let (start, len, prot, flags, off) = (ev.ret as u64, a[1], a[2], a[3], a[5]);
                if flags & MAP_HUGETLB != 0 {
                    return self.unmodelled_at(mm, at, "mmap MAP_HUGETLB");
                }
                let shared = matches!(flags & MAP_SHARED_VALIDATE, MAP_SHARED | MAP_SHARED_VALIDATE);
                let anon = flags & MAP_ANONYMOUS != 0;
                let mut vmf = prot & 7;
                if shared {
                    vmf |= VM_SHARED;
                }
                if flags & MAP_NORESERVE != 0 {
                    vmf |= VM_NORESERVE;
                }
                if flags & MAP_GROWSDOWN != 0 {
                    vmf |= VM_GROWSDOWN;
                }
                if flags & MAP_STACK != 0 && self.stack_nohuge {
                    vmf |= VM_NOHUGEPAGE;
                }
                let (mut mflags, tag) = self.vm_flags(vmf, !anon);
                mflags |= self.procs.get(&mm).map_or(0, |p| p.locked);
                let pgoff = if anon && !shared { start / PAGE_SIZE } else { off / PAGE_SIZE };
                self.apply(Event::MapPgoff { pid, start, pages: pages(len), flags: mflags, pgoff: pgoff | tag }, at);
            }
            SYS_MUNMAP => self.apply(Event::Munmap { pid, start: a[0], pages: pages(a[1]) }, at),
            SYS_MPROTECT | SYS_PKEY_MPROTECT => self.apply(Event::Mprotect { pid, start: a[0], pages: pages(a[1]), prot: prot_bits(a[2]) }, at),
            SYS_MREMAP => {
                let (old, old_len, new_len, flags, new) = (a[0], pages(a[1]), pages(a[2]), a[3], ev.ret as u64);
                match (new == old, new_len.cmp(&old_len)) {
                    (false, Ordering::Equal) => {
                        let dontunmap = flags & MREMAP_DONTUNMAP != 0;
                        match self.multi_vma_move(pid, old, old_len, new) {
                            Some(moves) if !dontunmap => {
                                for ev in moves {
                                    self.apply(ev, at);
                                }
                            }
                            _ => self.apply(Event::Mremap { pid, old, pages: old_len, new, dontunmap }, at),
                        }
                    }
                    (true, Ordering::Less) => self.apply(Event::Munmap { pid, start: old + new_len * PAGE_SIZE, pages: old_len - new_len }, at),
                    (true, Ordering::Equal) => {}
                    (_, Ordering::Less | Ordering::Greater) => self.apply(Event::MremapResize { pid, old, pages: old_len, new, new_pages: new_len }, at),
                }
            }
            SYS_MADVISE => {
                let advice = match a[2] {
                    12 => Advice::Mergeable,
                    13 => Advice::Unmergeable,
                    10 => Advice::DontFork,
                    11 => Advice::DoFork,
                    18 => Advice::WipeOnFork,
                    19 => Advice::KeepOnFork,
                    102 => Advice::GuardInstall,
                    14 => Advice::Hugepage,
                    15 => Advice::NoHugepage,
                    0 => Advice::Normal,
                    1 => Advice::Random,
                    2 => Advice::Sequential,
                    16 => Advice::DontDump,
                    17 => Advice::DoDump,
                    _ => return,
                };
                if a[1] > 0 {
                    self.apply(Event::Madvise { pid, start: a[0], pages: pages(a[1]), advice }, at);
                }
            }
            SYS_BRK => self.brk(mm, ev.ret as u64, at),
            // mlock_fixup's flags; the pages it populates are prepares placed where they land.
            SYS_MLOCK | SYS_MLOCK2 | SYS_MUNLOCK if a[1] > 0 => {
                let flags = match slot {
                    SYS_MUNLOCK => 0,
                    SYS_MLOCK2 if a[2] & MLOCK_ONFAULT != 0 => vm::LOCKED | vm::LOCKONFAULT,
                    _ => vm::LOCKED,
                };
                let start = a[0] & !(PAGE_SIZE - 1);
                self.apply(Event::Mlock { pid, start, pages: pages(a[1] + (a[0] - start)), flags }, at)
            }
            SYS_MLOCK | SYS_MLOCK2 | SYS_MUNLOCK => {}
            // apply_mlockall_flags: the future mappings' lock bits, then (unless only
            // MCL_FUTURE) every VMA's; munlockall is mlockall(0).
            SYS_MLOCKALL | SYS_MUNLOCKALL => {
                let f = if slot == SYS_MLOCKALL { a[0] } else { 0 };
                let onfault = if f & MCL_ONFAULT != 0 { vm::LOCKONFAULT } else { 0 };
                if let Some(p) = self.procs.get_mut(&mm) {
                    p.locked = if f & MCL_FUTURE != 0 { vm::LOCKED | onfault } else { 0 };
                }
                if f & (MCL_FUTURE | MCL_CURRENT) == MCL_FUTURE {
                    return;
                }
                let flags = if f & MCL_CURRENT != 0 { vm::LOCKED | onfault } else { 0 };
                self.apply(Event::Mlock { pid, start: 0, pages: USER_TOP / PAGE_SIZE, flags }, at)
            }
            SYS_EXECVE | SYS_EXECVEAT => {}
            SYS_PRCTL if a[0] != PR_SET_VMA => {}
            // VM_LOCKED, VM_SEALED, a VMA mempolicy, an anon name: vm state the model has no
            // field for, which splits VMAs and blocks merges.
            SYS_PRCTL => self.unmodelled_at(mm, at, "prctl PR_SET_VMA"),
            _ => self.unmodelled_at(mm, at, name),
        }
    }

    /// 6.17+ moves a range spanning several VMAs (and gaps) one VMA at a time, in address
    /// order, each to the same offset from `new` (mm/mremap.c `remap_move`): one `Mremap`
    /// each. None when the range is inside one VMA of the model, or the kernel is older.
    fn multi_vma_move(&self, pid: Pid, old: u64, pages: u64, new: u64) -> Option<Vec<Event>> {
        if !self.multi_vma_mremap {
            return None;
        }
        let end = old + pages * PAGE_SIZE;
        let vmas = self.pair.eager().vmas(pid)?;
        let inside: Vec<_> = vmas.iter().filter(|v| v.start < end && old < v.end).collect();
        if inside.len() < 2 && inside.first().is_none_or(|v| v.start <= old && end <= v.end) {
            return None;
        }
        let moves = inside.iter().map(|v| {
            let (s, e) = (v.start.max(old), v.end.min(end));
            Event::Mremap { pid, old: s, pages: (e - s) / PAGE_SIZE, new: new + (s - old), dontunmap: false }
        });
        Some(moves.collect())
    }

    /// brk: the heap VMA grows (a merge into the previous heap) or shrinks (munmap).
    fn brk(&mut self, proc: usize, ret: u64, at: At) {
        let pid = Self::pid(proc);
        let new = ret.next_multiple_of(PAGE_SIZE);
        let Some(p) = self.procs.get_mut(&proc) else { return };
        let Some(old) = p.brk.replace(new) else { return };
        let flags = vm::READ | vm::WRITE | p.locked;
        if new > old {
            if let Some(&(_, tag)) = p.image_anon.iter().find(|(end, _)| *end == old).filter(|_| self.brk_merges_below) {
                p.brk_tag = tag;
            }
            let (pages, tag) = ((new - old) / PAGE_SIZE, p.brk_tag);
            if tag == 0 {
                self.apply(Event::Map { pid, start: old, pages, flags }, at);
            } else {
                self.apply(Event::MapPgoff { pid, start: old, pages, flags, pgoff: (old / PAGE_SIZE) | tag }, at);
            }
        } else if new < old {
            self.apply(Event::Munmap { pid, start: new, pages: (old - new) / PAGE_SIZE }, at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::*;
    use lazyvma_model::knobs::Knobs;

    /// What cow, mremap_test and mlock2-tests do: MADV_HUGEPAGE on part of a faulted VMA,
    /// mremap growing it in place and moving it with a new size, mlock2(MLOCK_ONFAULT) and
    /// munlock: all modelled (splits, merges, the copies' AVCs), nothing left unmodelled.
    #[test]
    fn huge_advice_mremap_resizes_and_mlock_are_modelled() {
        let (tree, mut f) = execed();
        let a = 0x1_0000_0000u64;
        f.syscall(&tree, &sys(100, SYS_MMAP, [a, 4 * PAGE_SIZE, 3, MAP_PRIVATE_ANON | 0x10, u64::MAX, 0], a as i64));
        f.prepare_counted(&tree, 100, Feed::at(&tree, 0));
        f.prepare(&tree, &s(), &prep(100, a, Some((a, a + 4 * PAGE_SIZE, VM_READ | VM_WRITE))));
        let call = |f: &mut Feed, slot, args: [u64; 6], ret: u64| f.syscall(&tree, &sys(100, slot, args, ret as i64));
        call(&mut f, SYS_MADVISE, [a + PAGE_SIZE, PAGE_SIZE, 14, 0, 0, 0], 0);
        call(&mut f, SYS_MADVISE, [a, 4 * PAGE_SIZE, 15, 0, 0, 0], 0);
        call(&mut f, SYS_MREMAP, [a, 4 * PAGE_SIZE, 6 * PAGE_SIZE, 0, 0, 0], a);
        call(&mut f, SYS_MREMAP, [a, 6 * PAGE_SIZE, 8 * PAGE_SIZE, 1, 0, 0], 2 * a);
        call(&mut f, SYS_MLOCK2, [2 * a, PAGE_SIZE, 1, 0, 0, 0], 0);
        call(&mut f, SYS_MUNLOCK, [2 * a, PAGE_SIZE, 0, 0, 0, 0], 0);
        // mlockall(MCL_CURRENT | MCL_FUTURE): the VMA and a later mmap are locked (the moved
        // VMA keeps its old pgoff, so they stay apart); munlockall unlocks both.
        call(&mut f, SYS_MLOCKALL, [3, 0, 0, 0, 0, 0], 0);
        let b = 2 * a + 8 * PAGE_SIZE;
        call(&mut f, SYS_MMAP, [b, PAGE_SIZE, 3, MAP_PRIVATE_ANON | 0x10, u64::MAX, 0], b);
        call(&mut f, SYS_MUNLOCKALL, [0; 6], 0);
        f.finish(&tree, 0, &[]);
        assert!(f.coverage.incomplete.is_empty(), "{:?}", f.coverage.incomplete);
        let vmas = f.pair.eager().vmas(1).unwrap();
        assert_eq!(vmas.iter().map(|v| (v.start, v.end)).collect::<Vec<_>>(), [(2 * a, b), (b, b + PAGE_SIZE)]);
        let kinds = kinds(&f);
        assert_eq!(
            kinds,
            ["Spawn", "Exec", "MapPgoff", "Fault", "Madvise", "Madvise", "MremapResize", "MremapResize", "Mlock", "Mlock", "Mlock", "MapPgoff", "Mlock"]
        );
        // Prepare 1/1; HUGEPAGE's two splits +2 AVC; NOHUGEPAGE merges them (-2); the move's
        // copy +1 and unmap -1; mlock2's split +1 and munlock's merge -1.
        let c = f.pair.eager().counts();
        assert_eq!((c.anon_vma.alloc, c.anon_vma_chain.alloc, c.anon_vma_chain.free), (1, 5, 4));
        assert_eq!(f.events[8], Event::Mlock { pid: 1, start: 2 * a, pages: 1, flags: vm::LOCKED | vm::LOCKONFAULT });
    }

    /// mremap_test's multi-VMA move (6.17+): two faulted VMAs with a gap, moved at once,
    /// each cloned to its new place and unlinked from the old (+1/−1 AVC each).
    #[test]
    fn a_move_of_several_vmas_moves_each() {
        let (tree, mut f) = execed();
        let (a, b) = (0x1_0000_0000u64, 0x1_0000_2000u64);
        for (v, prot) in [(a, 3), (b, 7)] {
            f.syscall(&tree, &sys(100, SYS_MMAP, [v, PAGE_SIZE, prot, MAP_PRIVATE_ANON | 0x10, u64::MAX, 0], v as i64));
            prepare(&mut f, &tree, &prep(100, v, Some((v, v + PAGE_SIZE, prot))));
        }
        let new = 0x2_0000_0000u64;
        f.syscall(&tree, &sys(100, SYS_MREMAP, [a, 3 * PAGE_SIZE, 3 * PAGE_SIZE, 3, new, 0], new as i64));
        f.finish(&tree, 0, &[]);
        assert_eq!(f.coverage.model_errors, 0, "{:?}", f.coverage.first_error);
        let c = &f.eager.anon_vma_chain;
        assert_eq!((c.alloc, c.free), (4, 2));
        let starts: Vec<u64> = f.pair.eager().vmas(1).unwrap().iter().map(|v| v.start).filter(|s| *s >= new && *s < new + 0x10000).collect();
        assert_eq!(starts, [new, new + 0x2000]);
        // Before 6.17 the kernel refuses it; a model that saw it succeed says so.
        let mut f = Feed::new("6.12.0", Knobs::default());
        f.exec(&tree, 100, 0);
        f.syscall(&tree, &sys(100, SYS_MMAP, [a, PAGE_SIZE, 3, MAP_PRIVATE_ANON | 0x10, u64::MAX, 0], a as i64));
        f.syscall(&tree, &sys(100, SYS_MMAP, [b, PAGE_SIZE, 7, MAP_PRIVATE_ANON | 0x10, u64::MAX, 0], b as i64));
        f.syscall(&tree, &sys(100, SYS_MREMAP, [a, 3 * PAGE_SIZE, 3 * PAGE_SIZE, 3, new, 0], new as i64));
        assert_eq!(f.coverage.model_errors, 1);
    }

    /// musl's first malloc on arm64 (VM_MTE_ALLOWED on every brk VMA): brk grows the heap
    /// by 2 pages past the exec's .bss tail, then maps a PROT_NONE page at the old brk.
    /// Before 6.1 the extension merged into the tail, whose anon_vma both splits clone
    /// (+2 AVCs, the guard's −1); since 6.1 it is a VMA of its own and the splits are free.
    #[test]
    fn an_arm64_brk_extension_merges_into_the_bss_tail_before_6_1() {
        const VM_ACCOUNT: u64 = 0x100000;
        const VM_MTE_ALLOWED: u64 = 1 << 33;
        let (bss, brk) = (0x30d000, 0x30e000);
        for (release, avc) in [("5.10.0-32-cloud-arm64", [3, 1]), ("6.12.118", [1, 0])] {
            let mut tree = Tree::command(100);
            let mut f = Feed::new(release, Knobs::default());
            tree.exec(100);
            f.exec(&tree, 100, 0);
            prepare(&mut f, &tree, &prep(100, bss, Some((bss, brk, VM_READ | VM_WRITE | VM_ACCOUNT | VM_MTE_ALLOWED))));
            f.syscall(&tree, &sys(100, SYS_BRK, [0; 6], brk as i64));
            f.syscall(&tree, &sys(100, SYS_BRK, [brk + 2 * PAGE_SIZE, 0, 0, 0, 0, 0], (brk + 2 * PAGE_SIZE) as i64));
            f.syscall(&tree, &sys(100, SYS_MMAP, [brk, PAGE_SIZE, 0, MAP_PRIVATE_ANON | 0x10, u64::MAX, 0], brk as i64));
            f.finish(&tree, 0, &[]);
            let e = &f.eager;
            assert_eq!([e.anon_vma_chain.alloc, e.anon_vma_chain.free], avc, "{release}: {:?}", f.events);
            assert!(f.coverage.incomplete.is_empty(), "{release}: {:?}", f.coverage.incomplete);
        }
    }
}
