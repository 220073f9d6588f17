//! `iter/task` (5.8+): the snapshot pass where the kernel has no `iter/task_vma` (5.10,
//! 5.11). Per task that owns its view of an mm (the rule `iter/task_vma` applies), it walks
//! `mm->mmap` / `vma->vm_next` and writes the records [`crate::iter`] writes, so userspace
//! decodes one stream whichever pass ran.
//!
//! No `bpf_loop` before 5.17: the VMA list and each VMA's chain are one bounded loop of
//! [`WALK_STEPS`] steps (a step is one chain entry, or one VMA once its chain is seen), which
//! the verifier checks once per step. The walk's state lives in a per-CPU map value read with
//! volatile loads: the verifier cannot know those values, so the paths of one step meet
//! again as equal states instead of one state per (VMA, chain position) pair.
//!
//! A process whose list outlasts the steps, or whose records would outgrow the seq_file
//! buffer one object's output must fit (32 KiB, ~200-330 VMAs), is resumed: the vm_end of
//! the last VMA written goes to [`TASK_RESUME`] and userspace runs the iterator again
//! ([`ITER_PASS`] counts the passes); there the walk starts at the first VMA ending above
//! it, found by a descent of `mm->mm_rb` (what `find_vma` does, [`RB_DEPTH`] levels at most),
//! and tasks with nothing left write nothing. Only where no entry can be stored (the map
//! full) does a walk end with a [`CutRecord`] (`mm->map_count` beside the VMAs written):
//! never cut silently. Userspace writes the cut of a walk still unfinished after the last pass.
//!
//! Unlike `iter/task_vma` no mmap_lock is held: a VMA may change or go during the walk, and
//! between passes. Each VMA must still name this mm (`vm_mm`) or the walk stops there, said
//! as a cut; a descent that does not reach a leaf in [`RB_DEPTH`] levels is one too.
use aya_ebpf::helpers::{bpf_probe_read_kernel, generated::{self as gen, bpf_seq_write}};
use core::ffi::c_void;
use aya_ebpf::macros::map;
use aya_ebpf::maps::{Array, HashMap, PerCpuArray};
use core::ptr::{read_volatile as get, write_volatile as put};
use lazyvma_model::abi::{AvRecord, AvcRecord, CutRecord, VmaRecord, CHAIN_COUNT_MAX, CHAIN_EMIT_MAX, FIELD_ABSENT, REC_AV, REC_AVC, REC_CUT};
use lazyvma_model::abi::{Resume, RB_DEPTH, RESUME_DONE, TRUNC_RESUMED, WALK_STEPS};

use crate::iter::ITER_AV_FIELDS;
use crate::offsets::*;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Walk {
    vma: u64,
    head: u64,
    node: u64,
    /// Chain entries of `vma` seen so far.
    len: u64,
    /// `vma`'s chain walk has begun (head and node are set).
    inside: u64,
    vmas: u64,
    /// Bytes written for this task: all of one task's records must fit the seq_file buffer.
    bytes: u64,
    /// vm_end of the last VMA written: where the next pass resumes.
    last: u64,
    /// This pass, where it started for this task (0: mm->mmap), the VMAs written before it,
    /// and whether the task has a resume entry: kept here, not in registers, so the
    /// verifier walks the loop once for all of them (a known 0 and an unknown value would
    /// be two states at every step).
    pass: u64,
    from: u64,
    before: u64,
    had: u64,
}

/// The kernel's buffer for one object's output (bpf_seq_read: PAGE_SIZE << 3 with 4 KiB
/// pages); a task writing more fails the whole read with E2BIG.
const SEQ_BUDGET: u64 = 32768;
/// Kept free after every record: the VMA record of a chain cut short, and the cut record.
const RESERVE: u64 = (core::mem::size_of::<VmaRecord>() + core::mem::size_of::<CutRecord>()) as u64;

#[map]
static TASK_WALK: PerCpuArray<Walk> = PerCpuArray::with_max_entries(1, 0);

/// task->pid → where its walk resumes (see the module's comment). Only tasks cut in a pass
/// have an entry; a full map ends a walk with a [`CutRecord`] instead.
#[map]
static TASK_RESUME: HashMap<u32, Resume> = HashMap::with_max_entries(8192, 0);

/// The pass being taken (0, 1, ...), set by userspace before each; the map is the object's
/// own (one snapshot loads one object).
#[map]
static ITER_PASS: Array<u64> = Array::with_max_entries(1, 0);

#[inline(always)]
fn read<T: Copy + Default>(base: u64, off: u64) -> T {
    if off == FIELD_ABSENT {
        return T::default();
    }
    let mut v = T::default();
    // SAFETY: probe_read_kernel tolerates any address and zeroes `v` on a fault. Its return
    // is not tested: every branch here is one more state the 5.10 verifier keeps per step.
    unsafe { gen::bpf_probe_read_kernel((&mut v as *mut T).cast(), core::mem::size_of::<T>() as u32, (base + off) as *const c_void) };
    v
}

#[inline(always)]
fn emit<T>(seq: *mut aya_ebpf::bindings::seq_file, rec: &T) {
    // SAFETY: `seq` is the verifier-typed meta->seq; `rec` lives on our stack.
    unsafe { bpf_seq_write(seq.cast(), (rec as *const T).cast(), core::mem::size_of::<T>() as u32) };
}

#[inline(always)]
fn read_or_absent<T: Copy + Default + Into<u64>>(base: u64, off: u64) -> u64 {
    if off == FIELD_ABSENT { FIELD_ABSENT } else { read::<T>(base, off).into() }
}

#[unsafe(link_section = "iter/task")]
#[unsafe(no_mangle)]
pub extern "C" fn snapshot_task(ctx: *const u64) -> i32 {
    // ctx[0] = struct bpf_iter_meta * (seq first), ctx[1] = task (see iter.rs for why so).
    let seq = unsafe { *(*ctx as *const *mut aya_ebpf::bindings::seq_file) };
    let task: u64 = unsafe { bpf_probe_read_kernel(ctx.add(1)) }.unwrap_or(0);
    if task == 0 {
        return 0;
    }
    let mm: u64 = read(task, TASK_MM.load());
    if mm == 0 {
        return 0;
    }
    let pid = read::<i32>(task, TASK_TGID.load()) as u32;
    let tid = read::<i32>(task, TASK_PID.load()) as u32;
    // task_vma's rule (task_seq_get_next's skip_if_dup_files): a thread sharing its
    // leader's files is the leader's view already. What else shares the mm the model folds.
    if pid != tid {
        let leader: u64 = read(task, TASK_GROUP_LEADER.load());
        if read::<u64>(task, TASK_FILES.load()) == read::<u64>(leader, TASK_FILES.load()) {
            return 0;
        }
    }
    let Some(w) = TASK_WALK.get_ptr_mut(0) else { return 0 };
    let mut comm = [0u8; 16];
    let off = TASK_COMM.load();
    if off != FIELD_ABSENT {
        // SAFETY: as `read`; comm is TASK_COMM_LEN (16) bytes.
        comm = unsafe { bpf_probe_read_kernel((task + off) as *const [u8; 16]) }.unwrap_or([0; 16]);
    }
    let fields = ITER_AV_FIELDS.load();
    let pass = ITER_PASS.get(0).copied().unwrap_or(0);
    // Where this pass starts for this task, and the VMAs written before it.
    // SAFETY: a value of our hash map; a concurrent update at worst gives a torn entry,
    // which the checks below (pass, mm) or the walk's vm_mm test catch.
    let (had, from, before) = match unsafe { TASK_RESUME.get(&tid) } {
        // The first pass, or a task the kernel shows again within this pass (its output
        // did not fit beside others'): from where this pass began for it.
        Some(r) if r.pass == pass => (1u64, r.from, r.before),
        Some(r) if r.pass + 1 == pass && r.next != RESUME_DONE && r.mm == mm => (1, r.next, r.total),
        // Done, or gone and back (a reused tid, an exec: userspace cuts the old entry).
        Some(_) => return 0,
        None if pass != 0 => return 0,
        None => (0, 0, 0),
    };
    // SAFETY: `w` is this CPU's slot of TASK_WALK; iterator programs do not nest.
    unsafe {
        put(&mut (*w).pass, pass);
        put(&mut (*w).from, from);
        put(&mut (*w).before, before);
        put(&mut (*w).had, had);
        put(&mut (*w).vma, read(mm, MM_MMAP.load()));
        put(&mut (*w).inside, 0);
        put(&mut (*w).vmas, 0);
        put(&mut (*w).bytes, 0);
        put(&mut (*w).last, 0);
    }
    let mut raced = 0u32;
    // SAFETY: as above.
    let from = unsafe { get(&(*w).from) };
    if from != 0 {
        // find_vma(mm, from) without the lock: the first VMA ending above `from`.
        // SAFETY: as above.
        unsafe {
            put(&mut (*w).vma, 0);
            put(&mut (*w).node, read(mm, MM_MM_RB.load()));
            for _ in 0..RB_DEPTH {
                let n = get(&(*w).node);
                if n == 0 {
                    break;
                }
                let v = n - VMA_VM_RB.load();
                let from = get(&(*w).from);
                if read::<u64>(v, VMA_VM_END.load()) > from {
                    put(&mut (*w).vma, v);
                    if read::<u64>(v, VMA_VM_START.load()) <= from {
                        put(&mut (*w).node, 0);
                        break;
                    }
                    put(&mut (*w).node, read(n, RB_LEFT.load()));
                } else {
                    put(&mut (*w).node, read(n, RB_RIGHT.load()));
                }
            }
            if get(&(*w).node) != 0 {
                raced = 1;
                // No walk: the steps below find no VMA.
                put(&mut (*w).vma, 0);
            }
        }
    }
    let avc_size = if fields == 0 { core::mem::size_of::<AvRecord>() } else { core::mem::size_of::<AvcRecord>() } as u64;
    for _ in 0..WALK_STEPS {
        // SAFETY: as above.
        unsafe {
            let vma = get(&(*w).vma);
            if vma == 0 {
                break;
            }
            if get(&(*w).inside) == 0 {
                if read::<u64>(vma, VMA_VM_MM.load()) != mm {
                    raced = 1;
                    break;
                }
                let head = vma + VMA_ANON_VMA_CHAIN.load();
                put(&mut (*w).head, head);
                put(&mut (*w).node, read(head, 0));
                put(&mut (*w).len, 0);
                put(&mut (*w).inside, 1);
                continue;
            }
            let node = get(&(*w).node);
            let len = get(&(*w).len);
            if node != get(&(*w).head) && node != 0 && len < CHAIN_COUNT_MAX as u64 {
                if len < CHAIN_EMIT_MAX as u64 {
                    let bytes = get(&(*w).bytes);
                    if bytes + avc_size + RESERVE > SEQ_BUDGET {
                        raced = 2;
                        break;
                    }
                    chain_entry(seq, vma, node, fields);
                    put(&mut (*w).bytes, bytes + avc_size);
                }
                put(&mut (*w).len, len + 1);
                put(&mut (*w).node, read(node, 0));
                continue;
            }
            let bytes = get(&(*w).bytes);
            if bytes + RESERVE + core::mem::size_of::<VmaRecord>() as u64 > SEQ_BUDGET {
                raced = 2;
                break;
            }
            let end = vma_record(seq, pid, tid, &comm, mm, vma, node != get(&(*w).head) && node != 0, len, false);
            put(&mut (*w).last, end);
            put(&mut (*w).bytes, bytes + core::mem::size_of::<VmaRecord>() as u64);
            put(&mut (*w).vmas, get(&(*w).vmas) + 1);
            put(&mut (*w).inside, 0);
            put(&mut (*w).vma, read(vma, VMA_VM_NEXT.load()));
        }
    }
    // SAFETY: as above.
    unsafe {
        let vma = get(&(*w).vma);
        let done = vma == 0 && raced == 0;
        // Out of steps or buffer with a VMA at hand, part of its chain written: the next pass
        // starts at it, and its record here says so (TRUNC_RESUMED: the decoder drops it and
        // those entries). Unless it is the first of this pass (a chain longer than the
        // steps): written now, its chain cut, and the walk goes on past it.
        if !done && raced != 1 && get(&(*w).inside) != 0 {
            let node = get(&(*w).node);
            let first = get(&(*w).vmas) == 0;
            let end = vma_record(seq, pid, tid, &comm, mm, vma, node != get(&(*w).head) && node != 0, get(&(*w).len), !first);
            if first {
                put(&mut (*w).last, end);
                put(&mut (*w).vmas, 1);
            }
        }
        let vmas = get(&(*w).vmas);
        let (pass, from, before, had) = (get(&(*w).pass), get(&(*w).from), get(&(*w).before), get(&(*w).had));
        let map_count = read::<i32>(mm, MM_MAP_COUNT.load()) as u32 as u64;
        let resume = !done && raced != 1 && vmas != 0;
        // A task with an entry records its end too, so later passes skip it.
        if had != 0 || resume {
            let next = if resume { get(&(*w).last) } else { RESUME_DONE };
            let r = Resume { pass, from, next, before, total: before + vmas, mm, tgid: pid as u64, map_count };
            if TASK_RESUME.insert(&tid, &r, 0).is_ok() && resume {
                return 0;
            }
        }
        if done {
            return 0;
        }
        // The list changed under the walk, or no entry could be stored: cut here.
        let rec = CutRecord { kind: REC_CUT, pid, tid, raced, mm, vmas: before + vmas, map_count };
        emit(seq, &rec);
    }
    0
}

#[inline(always)]
fn chain_entry(seq: *mut aya_ebpf::bindings::seq_file, vma: u64, node: u64, fields: u64) {
    let avc = node - AVC_SAME_VMA.load();
    let av: u64 = read(avc, AVC_ANON_VMA.load());
    if fields == 0 {
        emit(seq, &AvRecord { kind: REC_AV, _pad: 0, anon_vma: av });
        return;
    }
    let rec = AvcRecord {
        kind: REC_AVC,
        refcount: read(av, AV_REFCOUNT.load()),
        vma,
        anon_vma: av,
        root: read(av, AV_ROOT.load()),
        parent: read(av, AV_PARENT.load()),
        num_children: read_or_absent::<u64>(av, AV_NUM_CHILDREN.load()),
        num_active_vmas: read_or_absent::<u64>(av, AV_NUM_ACTIVE_VMAS.load()),
        degree: read_or_absent::<u32>(av, AV_DEGREE.load()),
    };
    emit(seq, &rec);
}

/// `cut`: the chain walk stopped before the head (the count bound, or the steps ran out);
/// `resumed`: the next pass writes this VMA again, whole. Returns the VMA's vm_end.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn vma_record(seq: *mut aya_ebpf::bindings::seq_file, pid: u32, tid: u32, comm: &[u8; 16], mm: u64, vma: u64, cut: bool, len: u64, resumed: bool) -> u64 {
    let truncated = if resumed {
        TRUNC_RESUMED
    } else if cut {
        2
    } else if len > CHAIN_EMIT_MAX as u64 {
        1
    } else {
        0
    };
    let rec = crate::iter::vma_record(|b, o| read(b, o), pid, tid, truncated, *comm, mm, vma, len);
    emit(seq, &rec);
    rec.vm_end
}
