//! `iter/task_vma`: per VMA, its anon_vma_chain entries (with the fields of the anon_vma
//! each links to), then one VMA record. Pointers are read with `bpf_probe_read_kernel`
//! at BTF-resolved offsets.
//!
//! The chain walk is one `bpf_loop` (5.17+) whose callback the verifier checks once,
//! whatever the chain length: the unrolled bounded loops it replaces cost the 6.1 verifier
//! more than its 1M-instruction budget (E2BIG). Bounds, as before ([`CHAIN_EMIT_MAX`],
//! [`CHAIN_COUNT_MAX`]): the first 64 entries of a chain are written, the walk counts up
//! to 1024; `truncated` says which bound was hit, `chain_len` is exact below the second.
//!
//! [`ITER_AV_FIELDS`] = 0 (the estimate): a chain entry is its anon_vma's address alone
//! ([`AvRecord`], 16 bytes) and the anon_vma is never read: a third of the pass's time at
//! 1 M VMAs went to those reads.
use aya_ebpf::helpers::{bpf_probe_read_kernel, generated::{bpf_loop, bpf_seq_write}};
use aya_ebpf::Global;
use core::ffi::c_void;
use lazyvma_model::abi::{AvRecord, AvcRecord, VmaRecord, CHAIN_COUNT_MAX, CHAIN_EMIT_MAX, FIELD_ABSENT, REC_AV, REC_AVC, REC_VMA};

use crate::offsets::*;

/// 1: chain entries carry their anon_vma's fields ([`AvcRecord`]: the topology a seed or
/// `--topology` needs); 0: [`AvRecord`]. Set by userspace before load.
#[unsafe(no_mangle)]
pub static ITER_AV_FIELDS: Global<u64> = Global::new(1);

#[inline(always)]
fn read<T: Copy + Default>(base: u64, off: u64) -> T {
    if off == FIELD_ABSENT {
        return T::default();
    }
    // SAFETY: probe_read_kernel tolerates any address; a fault yields the default.
    unsafe { bpf_probe_read_kernel((base + off) as *const T) }.unwrap_or_default()
}

#[inline(always)]
fn emit<T>(seq: *mut aya_ebpf::bindings::seq_file, rec: &T) {
    // SAFETY: `seq` is the verifier-typed meta->seq; `rec` lives on our stack.
    unsafe { bpf_seq_write(seq.cast(), (rec as *const T).cast(), core::mem::size_of::<T>() as u32) };
}

/// The walk's state, on the program's stack, shared with the callback by pointer.
#[repr(C)]
struct Walk {
    seq: *mut aya_ebpf::bindings::seq_file,
    vma: u64,
    head: u64,
    node: u64,
    /// Entries seen so far (the callback's index + 1: no counter the verifier must track).
    len: u64,
    /// Set when the walk came back to the head (or hit a NULL): the chain was seen whole.
    done: u64,
    /// [`ITER_AV_FIELDS`], read once per VMA.
    fields: u64,
}

/// One chain entry per call; 1 stops the loop. Returns constants only (the verifier
/// wants a callback's return in [0, 1]).
#[inline(never)]
extern "C" fn walk_one(index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: ctx is the `Walk` on the caller's stack that bpf_loop was given.
    let w = unsafe { &mut *(ctx as *mut Walk) };
    let node = w.node;
    if node == w.head || node == 0 {
        w.done = 1;
        return 1;
    }
    if index < CHAIN_EMIT_MAX as u64 {
        let avc = node - AVC_SAME_VMA.load();
        let av: u64 = read(avc, AVC_ANON_VMA.load());
        if w.fields == 0 {
            emit(w.seq, &AvRecord { kind: REC_AV, _pad: 0, anon_vma: av });
            w.len = index + 1;
            w.node = read(node, 0);
            return 0;
        }
        let rec = AvcRecord {
            kind: REC_AVC,
            refcount: read(av, AV_REFCOUNT.load()),
            vma: w.vma,
            anon_vma: av,
            root: read(av, AV_ROOT.load()),
            parent: read(av, AV_PARENT.load()),
            num_children: read_or_absent::<u64>(av, AV_NUM_CHILDREN.load()),
            num_active_vmas: read_or_absent::<u64>(av, AV_NUM_ACTIVE_VMAS.load()),
            degree: read_or_absent::<u32>(av, AV_DEGREE.load()),
        };
        emit(w.seq, &rec);
    }
    w.len = index + 1;
    w.node = read(node, 0);
    0
}

#[unsafe(link_section = "iter/task_vma")]
#[unsafe(no_mangle)]
pub extern "C" fn snapshot_task_vma(ctx: *const u64) -> i32 {
    // ctx[0] = struct bpf_iter_meta * (seq first), ctx[1] = task, ctx[2] = vma.
    // meta->seq must be a direct, BTF-typed load: bpf_seq_write wants a PTR_TO_BTF_ID.
    let seq = unsafe { *(*ctx as *const *mut aya_ebpf::bindings::seq_file) };
    // task and vma go through probe_read so they become plain scalars we may add
    // run-time offsets to (variable arithmetic on PTR_TO_BTF_ID is refused).
    let task: u64 = unsafe { bpf_probe_read_kernel(ctx.add(1)) }.unwrap_or(0);
    let vma: u64 = unsafe { bpf_probe_read_kernel(ctx.add(2)) }.unwrap_or(0);
    if task == 0 || vma == 0 {
        return 0;
    }

    let head = vma + VMA_ANON_VMA_CHAIN.load();
    let mut w = Walk { seq, vma, head, node: read(head, 0), len: 0, done: 0, fields: ITER_AV_FIELDS.load() };
    // SAFETY: walk_one matches bpf_loop's callback ABI; `w` outlives the call.
    unsafe { bpf_loop(CHAIN_COUNT_MAX, walk_one as *mut c_void, (&mut w as *mut Walk).cast(), 0) };
    let truncated = if w.done == 0 {
        2
    } else if w.len > CHAIN_EMIT_MAX as u64 {
        1
    } else {
        0
    };

    let mut comm = [0u8; 16];
    let off = TASK_COMM.load();
    if off != FIELD_ABSENT {
        // SAFETY: as `read`; comm is TASK_COMM_LEN (16) bytes.
        comm = unsafe { bpf_probe_read_kernel((task + off) as *const [u8; 16]) }.unwrap_or([0; 16]);
    }
    let (pid, tid) = (read::<i32>(task, TASK_TGID.load()) as u32, read::<i32>(task, TASK_PID.load()) as u32);
    let rec = vma_record(|b, o| read(b, o), pid, tid, truncated, comm, read(vma, VMA_VM_MM.load()), vma, w.len);
    emit(seq, &rec);
    0
}

/// One VMA's record as both passes write it (`iter/task` in iter_task.rs too): the VMA's own
/// fields read at `vma` with the caller's `read` (each pass keeps the read its verifier
/// prefers: iter_task.rs's ignores the helper's return, a branch fewer per field).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn vma_record(read: impl Fn(u64, u64) -> u64, pid: u32, tid: u32, truncated: u32, comm: [u8; 16], mm: u64, vma: u64, chain_len: u64) -> VmaRecord {
    VmaRecord {
        kind: REC_VMA,
        pid,
        tid,
        truncated,
        comm,
        vma,
        mm,
        vm_start: read(vma, VMA_VM_START.load()),
        vm_end: read(vma, VMA_VM_END.load()),
        vm_pgoff: read(vma, VMA_VM_PGOFF.load()),
        vm_flags: read(vma, VMA_VM_FLAGS.load()),
        anon_vma: read(vma, VMA_ANON_VMA.load()),
        chain_len,
    }
}

/// A field that may be missing on this kernel stays [`FIELD_ABSENT`] in the record.
#[inline(always)]
fn read_or_absent<T: Copy + Default + Into<u64>>(base: u64, off: u64) -> u64 {
    if off == FIELD_ABSENT {
        FIELD_ABSENT
    } else {
        read::<T>(base, off).into()
    }
}
