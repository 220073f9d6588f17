//! What the model needs besides the slab: the VMA-changing syscalls of every thread (args
//! kept at enter, one record at exit with the return value) and, at each
//! `__anon_vma_prepare` allocation inside a fault handler, the VMA at the thread's last
//! fault address (`place.rs`). Thin:
//! userspace decides what any of it means (`observer/src/trace/feed/`).
use crate::{
    emit::{bump, field, offset},
    hook::read,
    offsets::{VMA_ANON_VMA, VMA_VM_END, VMA_VM_FLAGS, VMA_VM_PGOFF, VMA_VM_START},
    slab::function_of,
};
use aya_ebpf::{
    cty::c_void,
    helpers::{bpf_get_current_pid_tgid, generated::{bpf_find_vma, bpf_get_current_task_btf}},
    macros::{btf_tracepoint, map, tracepoint},
    maps::LruHashMap,
    programs::{BtfTracePointContext, TracePointContext},
    EbpfContext,
};
use lazyvma_model::trace_abi::{FOUND_NOT_IN_FAULT, PrepareVma, SyscallEvent, CTR_LOST, CTR_SENT, EV_PREPARE_VMA, EV_SYSCALL, FN_PREPARE, SYS_ENTER, NO_FIELD, NO_SYSCALL, SYSCALL_EVENT_SIZE, SYS_COUNT, SYS_EXECVE, SYS_EXECVEAT};

/// This architecture's numbers for the `SYS_*` slots, set by userspace; `NO_SYSCALL` unused.
#[unsafe(no_mangle)]
static SYSCALL_IDS: [u64; SYS_COUNT] = [NO_SYSCALL; SYS_COUNT];
/// `vm_area_struct.vm_file` (BTF), set by userspace.
#[unsafe(no_mangle)]
static FEED_VM_FILE: u64 = u64::MAX;

/// `mmap_lock:mmap_lock_acquire_returned`'s `write` and `success` offsets (tracefs: 6.1
/// has `memcg_path`, 6.18 `memcg_id` before them), set by userspace.
#[unsafe(no_mangle)]
static FEED_LOCK_FIELDS: [u64; 2] = [NO_FIELD; 2];

/// tid → [slot, args[6], key] between a syscall's enter and exit; key: the first write
/// acquisition of mmap_lock (0: none yet).
#[map]
static SYSCALL_ARGS: LruHashMap<u32, [u64; 8]> = LruHashMap::with_max_entries(16384, 0);
/// tid → its last `exceptions:page_fault_user` address.
#[map]
static FAULT_ADDR: LruHashMap<u32, u64> = LruHashMap::with_max_entries(16384, 0);
/// Everything this file sends is for the traced processes only (`emit::FEED_TRACED`,
/// joined by their forks in `sched.rs`): the rest of the system's mmaps and faults would
/// flood the ring buffer.
fn traced() -> bool {
    crate::emit::is_traced((bpf_get_current_pid_tgid() >> 32) as u32)
}

fn now() -> u64 {
    // SAFETY: no arguments, no memory.
    unsafe { aya_ebpf::helpers::bpf_ktime_get_ns() }
}

fn tid() -> u32 {
    bpf_get_current_pid_tgid() as u32
}

#[inline(always)]
fn slot_of(id: u64) -> Option<usize> {
    let mut i = 0;
    while i < SYS_COUNT {
        // SAFETY: a read-only global patched by the loader.
        if id == unsafe { core::ptr::read_volatile(&SYSCALL_IDS[i]) } {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// `raw_syscalls:sys_enter`: `long id` at 8, `unsigned long args[6]` at 16 on every arch.
#[tracepoint]
pub fn trace_sys_enter(ctx: TracePointContext) -> u32 {
    let id: u64 = field(&ctx, 8);
    if let Some(slot) = slot_of(id) {
        sys_enter(slot, |i| field(&ctx, 16 + 8 * i as u64));
    }
    0
}

/// `sys_enter(struct pt_regs *regs, long id)`: the classic record copies the six
/// arguments of every syscall on the machine; this reads them only for a recorded one.
#[btf_tracepoint]
pub fn trace_sys_enter_btf(ctx: BtfTracePointContext) -> i32 {
    if let Some(slot) = slot_of(ctx.arg(1)) {
        let regs: u64 = ctx.arg(0);
        // SAFETY: a read-only global patched by the loader.
        sys_enter(slot, |i| read::<u64>(regs, unsafe { core::ptr::read_volatile(&FEED_ARG_REGS[i]) }));
    }
    0
}

/// Where each syscall argument is in `pt_regs` (BTF: x86 di, si, dx, r10, r8, r9; arm64
/// regs[0..6]), set by userspace for `trace_sys_enter_btf`.
#[unsafe(no_mangle)]
static FEED_ARG_REGS: [u64; 6] = [NO_FIELD; 6];

#[inline(always)]
fn sys_enter(slot: usize, arg: impl Fn(usize) -> u64) {
    if !traced() {
        return;
    }
    let mut v = [slot as u64, 0, 0, 0, 0, 0, 0, 0];
    if slot == SYS_EXECVE || slot == SYS_EXECVEAT {
        // The argv copy faults the new stack by GUP: no fault address may be left over.
        let _ = FAULT_ADDR.remove(&tid());
        send(v[0] as u32 | SYS_ENTER, [0; 6], 0, now());
        let _ = SYSCALL_ARGS.insert(&tid(), &v, 0);
        return;
    }
    let mut i = 0;
    while i < 6 {
        v[i + 1] = arg(i);
        i += 1;
    }
    let _ = SYSCALL_ARGS.insert(&tid(), &v, 0);
}

/// `raw_syscalls:sys_exit`: `long id` at 8, `long ret` at 16. The id is the enter's
/// (`syscall_get_nr`, orig_ax / syscallno, which the syscall does not change).
#[tracepoint]
pub fn trace_sys_exit(ctx: TracePointContext) -> u32 {
    sys_exit(field(&ctx, 8), field(&ctx, 16), true);
    0
}

/// Where `bpf_loop` is refused (before 5.17): no prepare was deferred to the exit there
/// (the feed's prepare program needs `bpf_find_vma`, 5.17 too), so none is placed.
#[tracepoint]
pub fn trace_sys_exit_plain(ctx: TracePointContext) -> u32 {
    sys_exit(field(&ctx, 8), field(&ctx, 16), false);
    0
}

/// `sys_exit(struct pt_regs *regs, long ret)`: the number from `regs` (`TRACE_CONTEXT`'s
/// orig_ax / syscallno, an int on arm64, the low half of orig_ax on x86).
#[btf_tracepoint]
pub fn trace_sys_exit_btf(ctx: BtfTracePointContext) -> i32 {
    let id = read::<i32>(ctx.arg(0), crate::why::context(|c| &c.regs_syscall)) as i64 as u64;
    sys_exit(id, ctx.arg(1), true);
    0
}

/// `trace_sys_exit_btf` where `bpf_loop` is missing (5.17; 5.10 refuses its callback as
/// "number of funcs in func_info doesn't match number of subprogs"): as `_plain`.
#[btf_tracepoint]
pub fn trace_sys_exit_btf_plain(ctx: BtfTracePointContext) -> i32 {
    let id = read::<i32>(ctx.arg(0), crate::why::context(|c| &c.regs_syscall)) as i64 as u64;
    sys_exit(id, ctx.arg(1), false);
    0
}

#[inline(always)]
fn sys_exit(id: u64, ret: i64, place: bool) {
    // Only a recorded syscall has an entry: the number first, before any map work.
    if slot_of(id).is_none() {
        return;
    }
    let t = tid();
    // SAFETY: the value is copied out before the entry is removed.
    let Some(v) = (unsafe { SYSCALL_ARGS.get(&t) }).copied() else { return };
    let _ = SYSCALL_ARGS.remove(&t);
    // Its prepares outside a fault, placed before the syscall's own record.
    if place {
        crate::place::resolve(t);
    }
    // A syscall that never took mmap_lock for write changed no VMA: its exit orders it.
    let key = if v[7] != 0 { v[7] } else { now() };
    send(v[0] as u32, [v[1], v[2], v[3], v[4], v[5], v[6]], ret, key);
}

/// `mmap_lock:mmap_lock_acquire_returned`: a traced thread inside a VMA syscall took
/// mmap_lock for write. Its first such acquisition is when the syscall changes the VMA
/// tree (munmap's later downgrade, brk's too, only release it), so it orders the syscall
/// against the other threads' syscalls and faults; the exit record comes after the unlock.
#[tracepoint]
pub fn trace_mmap_lock(ctx: TracePointContext) -> u32 {
    // SAFETY: a read-only global patched by the loader.
    let [write, success] = unsafe { core::ptr::read_volatile(&FEED_LOCK_FIELDS) };
    if write == NO_FIELD || success == NO_FIELD {
        return 0;
    }
    // Read locks and failed tries (most of the machine's acquisitions) before any map work.
    let (w, ok): (u8, u8) = (field(&ctx, write), field(&ctx, success));
    if w == 0 || ok == 0 {
        return 0;
    }
    // Only traced threads have an entry (sys_enter filters), so this is the scope filter.
    let Some(v) = SYSCALL_ARGS.get_ptr_mut(&tid()) else { return 0 };
    // SAFETY: the map's value for this thread, only this thread writes it.
    unsafe {
        if (*v)[7] == 0 {
            (*v)[7] = now();
        }
    }
    0
}

#[inline(always)]
fn send(slot: u32, args: [u64; 6], ret: i64, key: u64) {
    let Some(mut rec) = crate::emit::TRACE_EVENTS.reserve::<SyscallEvent>(0) else {
        bump(CTR_LOST);
        return;
    };
    let id = bpf_get_current_pid_tgid();
    rec.write(SyscallEvent { kind: EV_SYSCALL, pid: id as u32, tgid: (id >> 32) as u32, slot, args, ret, key });
    rec.submit(crate::emit::wake_flags());
    bump(CTR_SENT);
}
const _: () = assert!(SYSCALL_EVENT_SIZE == 80);

/// `exceptions:page_fault_user` (x86): `unsigned long address` at 8.
#[tracepoint]
pub fn trace_user_fault(ctx: TracePointContext) -> u32 {
    user_fault(field(&ctx, 8));
    0
}

/// `page_fault_user(unsigned long address, struct pt_regs *regs, unsigned long error_code)`.
#[btf_tracepoint]
pub fn trace_user_fault_btf(ctx: BtfTracePointContext) -> i32 {
    user_fault(ctx.arg(0));
    0
}

#[inline(always)]
fn user_fault(addr: u64) {
    if traced() {
        let _ = FAULT_ADDR.insert(&tid(), &addr, 0);
    }
}

/// `exceptions:page_fault_kernel`: the kernel writing user memory (exec's `padzero` of the
/// .data tail prepares that VMA). Kernel addresses are not the model's business.
#[tracepoint]
pub fn trace_kernel_fault(ctx: TracePointContext) -> u32 {
    kernel_fault(field(&ctx, 8));
    0
}

/// `page_fault_kernel`, the same prototype as `page_fault_user`.
#[btf_tracepoint]
pub fn trace_kernel_fault_btf(ctx: BtfTracePointContext) -> i32 {
    kernel_fault(ctx.arg(0));
    0
}

#[inline(always)]
fn kernel_fault(addr: u64) {
    if addr < USER_TOP && traced() {
        let _ = FAULT_ADDR.insert(&tid(), &addr, 0);
    }
}

/// Above every user address (x86-64 5-level paging's 2^56).
const USER_TOP: u64 = 1 << 56;

/// A VMA as `bpf_find_vma`'s callback copies it: what the model needs, and the VMA itself
/// (place.rs checks it is the one an anon_vma_chain names).
#[repr(C)]
#[derive(Default)]
pub(crate) struct Found {
    pub vma: u64,
    pub start: u64,
    pub end: u64,
    pub pgoff: u64,
    pub flags: u64,
    pub file: u64,
    pub anon_vma: u64,
}

/// `bpf_find_vma`'s callback: copy what the model needs.
#[inline(never)]
pub(crate) extern "C" fn on_vma(_task: *mut c_void, vma: *mut c_void, out: *mut c_void) -> i64 {
    let v = vma as u64;
    let out = out as *mut Found;
    // SAFETY: `out` is the caller's stack `Found` (the helper passes it through).
    unsafe {
        (*out).vma = v;
        (*out).start = read(v, VMA_VM_START.load());
        (*out).end = read(v, VMA_VM_END.load());
        (*out).pgoff = read(v, VMA_VM_PGOFF.load());
        (*out).flags = read(v, VMA_VM_FLAGS.load());
        (*out).file = read(v, vm_file_offset());
        (*out).anon_vma = read(v, VMA_ANON_VMA.load());
    }
    0
}

/// `kmem:kmem_cache_alloc` from `__anon_vma_prepare`: which VMA is being prepared. Inside a
/// fault handler: the VMA at the fault's address; outside one (GUP, uprobes) inside a VMA
/// syscall: placed at its exit (`place.rs`); otherwise unplaced, never a stale address.
#[tracepoint]
pub fn trace_prepare_vma(ctx: TracePointContext) -> u32 {
    let call_site: u64 = field(&ctx, offset(|o| &o.alloc_call_site));
    if function_of(call_site) != Some(FN_PREPARE) || !traced() {
        return 0;
    }
    prepare(ctx.as_ptr(), field(&ctx, offset(|o| &o.alloc_ptr)), field(&ctx, offset(|o| &o.alloc_bytes_req)));
    0
}

/// The same from `trace_slab_alloc_btf` (6.1+), which found the call site in
/// `__anon_vma_prepare`: one program on the machine's every allocation, not two. Its own
/// frame (a BPF subprogram), not inlined: the allocation program's stack stays small for
/// what it does on every event (the verifier caps a call chain's frames at 512 bytes).
#[inline(never)]
pub fn prepare_vma_btf(ctx: *mut c_void) {
    let ctx = &BtfTracePointContext::new(ctx);
    if !traced() {
        return;
    }
    let bytes_req = crate::slab::cache_field_btf(ctx, 0);
    prepare(ctx.as_ptr(), crate::slab::void_ptr_arg(ctx, 1), bytes_req);
}

#[inline(always)]
fn prepare(ctx: *mut c_void, ptr: u64, bytes_req: u64) {
    // SAFETY: the value is copied out.
    let last = unsafe { FAULT_ADDR.get(&tid()) }.copied().unwrap_or(0);
    if !crate::place::in_fault(ctx) {
        // SAFETY: the slot is copied out.
        let slot = unsafe { SYSCALL_ARGS.get(&tid()) }.map(|v| v[0] as usize);
        let exec = slot == Some(SYS_EXECVE) || slot == Some(SYS_EXECVEAT);
        if slot.is_some() && !exec && crate::place::defer(tid(), ptr, bytes_req, now()) {
            return;
        }
        send_prepare(if last != 0 { FOUND_NOT_IN_FAULT } else { 0 }, 0, bytes_req, now(), &Found::default());
        return;
    }
    let addr = last;
    let mut f = Found::default();
    let found = if addr == 0 {
        0
    } else {
        // SAFETY: the current task (trusted BTF pointer); `f` lives on this stack.
        let r = unsafe {
            bpf_find_vma(bpf_get_current_task_btf(), addr, on_vma as *const () as *mut c_void, (&mut f as *mut Found).cast(), 0)
        };
        if r == 0 { 1 } else { ((-r) as u32) << 8 }
    };
    send_prepare(found, addr, bytes_req, now(), &f);
}

/// `vm_area_struct.vm_file`'s offset (`FEED_VM_FILE`).
#[inline(always)]
pub fn vm_file_offset() -> u64 {
    // SAFETY: a read-only global patched by the loader.
    unsafe { core::ptr::read_volatile(&FEED_VM_FILE) }
}

#[inline(always)]
pub(crate) fn send_prepare(found: u32, addr: u64, bytes_req: u64, key: u64, f: &Found) {
    let Some(mut slot) = crate::emit::TRACE_EVENTS.reserve::<PrepareVma>(0) else {
        bump(CTR_LOST);
        return;
    };
    let id = bpf_get_current_pid_tgid();
    slot.write(PrepareVma {
        kind: EV_PREPARE_VMA,
        pid: id as u32,
        tgid: (id >> 32) as u32,
        found,
        addr,
        bytes_req,
        start: f.start,
        end: f.end,
        pgoff: f.pgoff,
        flags: f.flags,
        file: f.file,
        anon_vma: f.anon_vma,
        key,
    });
    slot.submit(crate::emit::wake_flags());
    bump(CTR_SENT);
}
