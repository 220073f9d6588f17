//! `iter/task_vma`: per VMA, its anon_vma_chain entries (with the fields of the anon_vma
//! each links to), then one VMA record. Pointers are read with `bpf_probe_read_kernel`
//! at BTF-resolved offsets; the walk of the chain is bounded.
use aya_ebpf::helpers::{bpf_probe_read_kernel, generated::bpf_seq_write};
use lazyvma_model::abi::{AvcRecord, VmaRecord, CHAIN_COUNT_MAX, CHAIN_EMIT_MAX, FIELD_ABSENT, REC_AVC, REC_VMA};

use crate::offsets::*;

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
    let same_vma = AVC_SAME_VMA.load();
    let mut node: u64 = read(head, 0);
    let mut len: u32 = 0;
    while len < CHAIN_EMIT_MAX && node != head && node != 0 {
        let avc = node - same_vma;
        let av: u64 = read(avc, AVC_ANON_VMA.load());
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
        len += 1;
        node = read(node, 0);
    }
    let mut truncated = 0;
    if node != head && node != 0 {
        truncated = 1;
        while len < CHAIN_COUNT_MAX && node != head && node != 0 {
            len += 1;
            node = read(node, 0);
        }
        if node != head && node != 0 {
            truncated = 2;
        }
    }

    let mut comm = [0u8; 16];
    let off = TASK_COMM.load();
    if off != FIELD_ABSENT {
        // SAFETY: as `read`; comm is TASK_COMM_LEN (16) bytes.
        comm = unsafe { bpf_probe_read_kernel((task + off) as *const [u8; 16]) }.unwrap_or([0; 16]);
    }
    let rec = VmaRecord {
        kind: REC_VMA,
        pid: read::<i32>(task, TASK_TGID.load()) as u32,
        tid: read::<i32>(task, TASK_PID.load()) as u32,
        truncated,
        comm,
        vma,
        mm: read(vma, VMA_VM_MM.load()),
        vm_start: read(vma, VMA_VM_START.load()),
        vm_end: read(vma, VMA_VM_END.load()),
        vm_pgoff: read(vma, VMA_VM_PGOFF.load()),
        vm_flags: read(vma, VMA_VM_FLAGS.load()),
        anon_vma: read(vma, VMA_ANON_VMA.load()),
        chain_len: len as u64,
    };
    emit(seq, &rec);
    0
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
