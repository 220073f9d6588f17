//! anon_vma root rwsem contention: `lock:contention_begin/end` reported only when the lock is
//! `&anon_vma->rwsem` of a root anon_vma in `LOCK_ANON_VMAS`. The set is filled by the slab
//! programs (`__anon_vma_prepare`'s allocations, the roots' frees) and, at start, by
//! `lock_seed_task_vma` for the roots that already exist. Begin and end are paired in userspace.
use crate::emit::{emit, field};
use crate::offsets::{AV_ROOT, TASK_TGID, VMA_ANON_VMA};
use aya_ebpf::{
    helpers::bpf_probe_read_kernel,
    macros::{map, tracepoint},
    maps::{HashMap, PerCpuArray},
    programs::TracePointContext,
};
use lazyvma_model::trace_abi::{LockOffsets, FN_PREPARE, EV_LOCK_BEGIN, EV_LOCK_END, LOCK_CTR_COUNT, LOCK_CTR_LOST, LOCK_CTR_SEEDED, LOCK_CTR_SET_FULL, NO_FIELD};

/// anon_vma address → tgid that allocated it (or was first seen using it). Not preallocated
/// (tracing programs may use such maps since 6.1): a host with a million anon_vmas pays for
/// what it holds, not for the bound `trace` sets from the slab's count.
#[map]
pub static LOCK_ANON_VMAS: HashMap<u64, u32> = HashMap::with_max_entries(1024, BPF_F_NO_PREALLOC);

const BPF_F_NO_PREALLOC: u32 = 1;

#[map]
pub static LOCK_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(LOCK_CTR_COUNT, 0);

#[unsafe(no_mangle)]
pub static LOCK_OFFSETS: LockOffsets = LockOffsets::UNSET;

const BPF_NOEXIST: u64 = 1;
const E2BIG: i32 = 7;

#[inline(always)]
fn lo(f: impl FnOnce(&LockOffsets) -> &u64) -> u64 {
    // SAFETY: a read-only global patched by the loader.
    unsafe { core::ptr::read_volatile(f(&LOCK_OFFSETS)) }
}

fn bump(slot: u32) {
    if let Some(p) = LOCK_COUNTERS.get_ptr_mut(slot) {
        // SAFETY: this CPU's slot.
        unsafe { *p += 1 };
    }
}

#[inline(always)]
fn insert(av: u64, owner: u32, flags: u64) -> bool {
    match LOCK_ANON_VMAS.insert(av, owner, flags) {
        Ok(()) => true,
        // A full set is counted: contentions on what is missing go unseen, never silently.
        Err(e) if e == -E2BIG => {
            bump(LOCK_CTR_SET_FULL);
            false
        }
        Err(_) => false,
    }
}

/// Called by `trace_slab_alloc` for every object allocated from the rmap.c functions. Only
/// roots enter the set: rmap locks `anon_vma->root->rwsem`, always, and only
/// `__anon_vma_prepare` allocates a root (`anon_vma_fork`'s new anon_vma takes its parent's
/// root). A fork of a 64-VMA process so inserts nothing, where it inserted 64.
#[inline(always)]
pub fn remember(ptr: u64, func: u32, bytes_req: u64, tgid: u32) {
    let size = lo(|o| &o.av_size);
    if func == FN_PREPARE && size != NO_FIELD && bytes_req == size {
        insert(ptr, tgid, 0);
    }
}

/// Whether the lock programs' set is kept (their offsets were given): only then do
/// `remember` and `forget` need the object's address.
#[inline(always)]
pub fn tracks() -> bool {
    lo(|o| &o.av_size) != NO_FIELD
}

/// Called by `trace_slab_free` before the object is freed (its fields are intact): only a
/// root can be in the set (`remember`), so a non-root's free costs one read, not a hash
/// delete. Removing what is not there is harmless. Without the lock programs' offsets
/// (serve, or trace where they are unavailable) the set stays empty: nothing is done.
#[inline(always)]
pub fn forget(ptr: u64) {
    if lo(|o| &o.av_size) == NO_FIELD {
        return;
    }
    let root: u64 = read(ptr, AV_ROOT.load());
    // A read that failed (0) or a root: delete; an anon_vma whose root is another never
    // entered the set (the start-up seed adds each VMA's anon_vma, but locks only find roots).
    if root == 0 || root == ptr {
        let _ = LOCK_ANON_VMAS.remove(ptr);
    }
}

/// The anon_vma whose rwsem is `lock`, with its owner, if the set knows it.
#[inline(always)]
fn known(lock: u64) -> Option<(u64, u32)> {
    let off = lo(|o| &o.av_rwsem);
    if off == NO_FIELD || lock < off {
        return None;
    }
    let av = lock - off;
    // SAFETY: a plain u32 value copied out at once.
    let owner = unsafe { LOCK_ANON_VMAS.get(av) }.map(|owner| *owner)?;
    // A scoped trace: the anon_vma's owner or the waiter must be traced.
    if crate::emit::scoped() && !crate::emit::is_traced(owner) && !crate::emit::in_scope() {
        return None;
    }
    Some((av, owner))
}

#[tracepoint]
pub fn trace_lock_begin(ctx: TracePointContext) -> u32 {
    let lock: u64 = field(&ctx, lo(|o| &o.begin_lock));
    let Some((av, owner)) = known(lock) else { return 0 };
    let flags: u32 = field(&ctx, lo(|o| &o.begin_flags));
    let sent = emit(EV_LOCK_BEGIN, |ev| {
        ev.ptr = av;
        ev.arg = flags;
        ev.bytes_req = owner as u64;
    });
    if !sent {
        bump(LOCK_CTR_LOST);
    }
    0
}

#[tracepoint]
pub fn trace_lock_end(ctx: TracePointContext) -> u32 {
    let lock: u64 = field(&ctx, lo(|o| &o.end_lock));
    let Some((av, owner)) = known(lock) else { return 0 };
    let ret: i32 = field(&ctx, lo(|o| &o.end_ret));
    let sent = emit(EV_LOCK_END, |ev| {
        ev.ptr = av;
        ev.arg = ret as u32;
        ev.bytes_req = owner as u64;
    });
    if !sent {
        bump(LOCK_CTR_LOST);
    }
    0
}

#[inline(always)]
fn read<T: Copy + Default>(base: u64, off: u64) -> T {
    if off == u64::MAX || base == 0 {
        return T::default();
    }
    // SAFETY: probe_read_kernel tolerates any address; a fault yields the default.
    unsafe { bpf_probe_read_kernel((base + off) as *const T) }.unwrap_or_default()
}

/// One pass at start: every VMA's root anon_vma enters the set (only roots are locked, see
/// `remember`). A root shared by several processes keeps the first tgid seen (BPF_NOEXIST).
/// The task's mmap_lock is held during the walk, so none of these can be freed under us.
#[unsafe(link_section = "iter/task_vma")]
#[unsafe(no_mangle)]
pub extern "C" fn lock_seed_task_vma(ctx: *const u64) -> i32 {
    // ctx[1] = task, ctx[2] = vma, read as scalars (see iter.rs).
    let task: u64 = unsafe { bpf_probe_read_kernel(ctx.add(1)) }.unwrap_or(0);
    let vma: u64 = unsafe { bpf_probe_read_kernel(ctx.add(2)) }.unwrap_or(0);
    if task == 0 || vma == 0 {
        return 0;
    }
    let av: u64 = read(vma, VMA_ANON_VMA.load());
    if av == 0 {
        return 0;
    }
    let tgid = read::<i32>(task, TASK_TGID.load()) as u32;
    let root: u64 = read(av, AV_ROOT.load());
    if insert(if root != 0 { root } else { av }, tgid, BPF_NOEXIST) {
        bump(LOCK_CTR_SEEDED);
    }
    0
}
