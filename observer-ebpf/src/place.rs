//! Whether a prepare may be placed at the thread's last fault address: only when it runs
//! inside that fault's handler. GUP (MADV_POPULATE_WRITE, mlock's populate, a FOLL_FORCE
//! write through /proc/PID/mem, process_vm_writev) and uprobes prepare with no fault of
//! their own, and the address left by an earlier fault would name another VMA. A user
//! page fault's prepare is told by the task's entry (an exception: no syscall number in its
//! user `pt_regs`), with no stack; inside a syscall the kernel stack tells: a kernel
//! fault's prepare has `exc_page_fault` below it. A prepare
//! outside a fault inside a VMA syscall is placed at that syscall's exit by the
//! anon_vma_chain it allocated (`avc->vma`); any other one is sent unplaced.
use crate::{
    hook::read,
    offsets::{AVC_ANON_VMA, AVC_VMA, VMA_VM_START},
    syscall::{on_vma, send_prepare, Found},
};
use aya_ebpf::{
    cty::c_void,
    helpers::generated::{bpf_find_vma, bpf_get_current_task_btf, bpf_get_stack, bpf_loop, bpf_task_pt_regs},
    macros::map,
    maps::{Array, LruHashMap, PerCpuArray},
};
use lazyvma_model::trace_abi::FOUND_HELD;

/// [start, end) of the page fault entry (`exc_page_fault`), from /proc/kallsyms; 0/0 when
/// unknown: then no prepare is placed by a fault address.
#[unsafe(no_mangle)]
static PLACE_FAULT_FN: [u64; 2] = [0, 0];

/// Frames read: a fault's prepare is ~10 frames above `exc_page_fault`.
const DEPTH: usize = 32;

#[map]
static PLACE_STACK: PerCpuArray<[u64; DEPTH]> = PerCpuArray::with_max_entries(1, 0);

/// Is this tracepoint (a prepare's slab allocation) inside a page fault's handler?
#[inline(always)]
pub fn in_fault(ctx: *mut c_void) -> bool {
    user_exception() || fault_below(ctx)
}

/// The task entered the kernel from user mode by an exception, not a syscall: its user
/// `pt_regs` carry no syscall number (x86 `orig_ax`, arm64 `syscallno`: -1), and the only
/// exception that prepares an anon_vma is a page fault, whose address
/// `exceptions:page_fault_user` recorded on entry. No stack is needed for the common case;
/// a syscall's prepares (GUP, or a kernel fault such as exec's `padzero`) are told by it.
#[inline(always)]
fn user_exception() -> bool {
    let at = crate::why::context(|c| &c.regs_syscall);
    if at == u64::MAX {
        return false;
    }
    // SAFETY: the current task (a trusted BTF pointer); the read tolerates any address.
    let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf().cast()) } as u64;
    regs != 0 && read::<i32>(regs, at) == -1
}

/// The kernel stack has `exc_page_fault` below this tracepoint.
#[inline(always)]
fn fault_below(ctx: *mut c_void) -> bool {
    // SAFETY: a read-only global patched by the loader.
    let [start, end] = unsafe { core::ptr::read_volatile(&PLACE_FAULT_FN) };
    if start == 0 || end <= start {
        return false;
    }
    let Some(buf) = PLACE_STACK.get_ptr_mut(0) else { return false };
    // SAFETY: `buf` is this CPU's DEPTH u64s; flags 0: the kernel stack.
    let n = unsafe { bpf_get_stack(ctx, buf.cast(), (DEPTH * 8) as u32, 0) };
    if n <= 0 {
        return false;
    }
    let frames = (n as usize / 8).min(DEPTH);
    let mut i = 0;
    while i < DEPTH {
        if i >= frames {
            break;
        }
        // SAFETY: i < DEPTH, inside this CPU's buffer.
        let ip = unsafe { (*buf)[i] };
        if ip >= start && ip < end {
            return true;
        }
        i += 1;
    }
    false
}

/// A VMA syscall's prepares outside a fault (MADV_POPULATE_WRITE, mmap's MAP_POPULATE):
/// each allocation's pointer, size and time, placed at the syscall's exit.
const PENDING: usize = 16;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Pending {
    n: u64,
    ptr: [u64; PENDING],
    bytes_req: [u64; PENDING],
    key: [u64; PENDING],
}

/// tid → its pending prepares (only inside a VMA syscall, which `trace_sys_exit` ends).
#[map]
static PLACE_PENDING: LruHashMap<u32, Pending> = LruHashMap::with_max_entries(4096, 0);

/// A zeroed `Pending`, never written: a thread's first entry is copied from it, not built
/// on the stack (392 bytes, most of the 512 the verifier allows a program's frames).
#[map]
static PLACE_EMPTY: Array<Pending> = Array::with_max_entries(1, 0);

/// Keep a prepare's allocation for the syscall's exit; false when there is no room (then
/// it is sent unplaced at once).
#[inline(always)]
pub fn defer(tid: u32, ptr: u64, bytes_req: u64, key: u64) -> bool {
    if PLACE_PENDING.get_ptr_mut(&tid).is_none() {
        // SAFETY: the map's one value, only read (copied by the insert).
        let Some(empty) = (unsafe { PLACE_EMPTY.get(0) }) else { return false };
        if PLACE_PENDING.insert(&tid, empty, 0).is_err() {
            return false;
        }
    }
    let Some(p) = PLACE_PENDING.get_ptr_mut(&tid) else { return false };
    // SAFETY: this thread's entry; only this thread writes it.
    unsafe {
        let i = (*p).n as usize;
        if i >= PENDING {
            return false;
        }
        (*p).ptr[i] = ptr;
        (*p).bytes_req[i] = bytes_req;
        (*p).key[i] = key;
        (*p).n += 1;
    }
    true
}

/// At a VMA syscall's exit: each pending anon_vma_chain names its VMA (`avc->vma`, set when
/// the prepare linked it). It counts only if that VMA is still the current mm's VMA at its
/// own start and still holds the chain's anon_vma: then the record carries that VMA, as a
/// fault's would; otherwise (an anon_vma, a chain already freed) it is sent unplaced.
/// One `bpf_loop` step per entry: an unrolled loop of `bpf_find_vma` calls is more than
/// the verifier will walk.
#[inline(always)]
pub fn resolve(tid: u32) {
    let Some(p) = PLACE_PENDING.get_ptr(&tid) else { return };
    // SAFETY: this thread's entry.
    let n = unsafe { (*p).n }.min(PENDING as u64);
    let mut t = tid;
    // SAFETY: `t` lives on this stack for the loop; the callback reads it only.
    unsafe { bpf_loop(n as u32, resolve_one as *const () as *mut c_void, (&mut t as *mut u32).cast(), 0) };
    let _ = PLACE_PENDING.remove(&tid);
}

#[inline(never)]
extern "C" fn resolve_one(i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is `resolve`'s tid.
    let tid = unsafe { *(ctx as *const u32) };
    let Some(p) = PLACE_PENDING.get_ptr(&tid) else { return 1 };
    let i = i as usize;
    if i >= PENDING {
        return 1;
    }
    // SAFETY: this thread's entry, i < PENDING.
    let (ptr, bytes_req, key) = unsafe { ((*p).ptr[i], (*p).bytes_req[i], (*p).key[i]) };
    let vma: u64 = read(ptr, AVC_VMA.load());
    let av: u64 = read(ptr, AVC_ANON_VMA.load());
    let start: u64 = read(vma, VMA_VM_START.load());
    let mut s = Found::default();
    let r = if vma == 0 || av == 0 {
        -2
    } else {
        // SAFETY: the current task (trusted BTF pointer); `s` lives on this stack.
        unsafe { bpf_find_vma(bpf_get_current_task_btf(), start, on_vma as *const () as *mut c_void, (&mut s as *mut Found).cast(), 0) }
    };
    let placed = r == 0 && s.vma == vma && s.anon_vma == av;
    if placed {
        send_prepare(1, s.start, bytes_req, key, &s);
    } else {
        send_prepare(FOUND_HELD, 0, bytes_req, key, &Found::default());
    }
    0
}
