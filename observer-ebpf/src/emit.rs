//! `trace`'s transport: one ring buffer, and per-CPU counters of what was sent and what
//! could not be reserved, so userspace can show every lost event.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use lazyvma_model::trace_abi::{TpOffsets, TraceEvent, CTR_COUNT, CTR_LOST, CTR_OBJECTS_FULL, CTR_SENT, NO_FIELD, SCOPE_SYSTEM, WAKE_SHIFT_NEVER};

/// Small here, so loading the object for `doctor` costs little; `trace` sets its size.
#[map]
pub static TRACE_EVENTS: RingBuf = RingBuf::with_byte_size(64 * 1024, 0);

/// The traced processes (tgid → 1) of a scoped trace (`-p`, `--cgroup`, `-- CMD`): set by
/// userspace for the roots before any program attaches, joined in BPF by their forks
/// (`sched.rs`). Checked first, before any other map work: the rest of the system costs
/// one lookup per event and sends nothing.
#[map]
pub static FEED_TRACED: LruHashMap<u32, u8> = LruHashMap::with_max_entries(65536, 0);

/// Scoped traces: every anon_vma / anon_vma_chain a traced process allocated and has not
/// freed (pointer → tgid), so its free is seen from any context (ksmd, a /proc reader's
/// mmput). Preallocated: an insert per allocation must not call the allocator (a
/// `BPF_F_NO_PREALLOC` map costs ~250 ns more per event); `trace` sizes it from the slab.
#[map]
pub static TRACE_OBJECTS: HashMap<u64, u32> = HashMap::with_max_entries(1, 0);
const E2BIG: i32 = 7;
const EEXIST: i32 = 17;
const BPF_NOEXIST: u64 = 1;

/// In front of `TRACE_OBJECTS`, for the `tp_btf` kmem programs (6.1+, where the verifier
/// takes `cmpxchg`): one direct-mapped slot per pointer hash, the pointer claimed by
/// compare-and-swap, its owner beside it. Hash map inserts and deletes were half of a
/// scoped trace's slab program cost (~115 of ~265 ns per allocation here); a slot is one
/// load and one store. A pointer whose slot is taken goes to `TRACE_OBJECTS` as before.
#[map]
static OBJECT_SLOTS: Array<u64> = Array::with_max_entries(1, 0);
#[map]
static OBJECT_OWNERS: Array<u32> = Array::with_max_entries(1, 0);
/// 64 − log2 of the slots (`trace` sizes both arrays); 0: no slots, `TRACE_OBJECTS` only.
#[unsafe(no_mangle)]
static TRACE_OBJECT_SHIFT: u64 = 0;
/// Pointers in `TRACE_OBJECTS` (slot taken): while 0, a free whose slot misses is of no
/// traced object and skips the hash map.
#[map]
static OBJECTS_SPILLED: Array<u64> = Array::with_max_entries(1, 0);

/// `SCOPE_SYSTEM` (every process but lazyvma) or `SCOPE_TRACED` (`FEED_TRACED` only).
#[unsafe(no_mangle)]
pub static TRACE_SCOPE: u32 = SCOPE_SYSTEM;
/// lazyvma's own tgid: never traced, in any scope.
#[unsafe(no_mangle)]
pub static TRACE_SELF_TGID: u32 = 0;
/// Wake the reader only when more than (ring size >> this) bytes wait; in between it wakes
/// on its own timer. `WAKE_SHIFT_NEVER`: the kernel's default (wake on each first record).
#[unsafe(no_mangle)]
pub static TRACE_WAKE_SHIFT: u32 = WAKE_SHIFT_NEVER;
/// The ring buffer's size in bytes (set with its `max_entries`).
#[unsafe(no_mangle)]
pub static TRACE_RING_BYTES: u64 = 64 * 1024;

#[inline(always)]
pub fn global<T: Copy>(g: &T) -> T {
    // SAFETY: a read-only global patched by the loader.
    unsafe { core::ptr::read_volatile(g) }
}

/// Whether the current process is in the trace's scope: lazyvma itself never is.
#[inline(always)]
pub fn in_scope() -> bool {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if tgid == global(&TRACE_SELF_TGID) {
        return false;
    }
    global(&TRACE_SCOPE) == SCOPE_SYSTEM || is_traced(tgid)
}

#[inline(always)]
pub fn is_self() -> bool {
    (bpf_get_current_pid_tgid() >> 32) as u32 == global(&TRACE_SELF_TGID)
}

#[inline(always)]
pub fn is_traced(tgid: u32) -> bool {
    // A CPU runs one process's events in a row (a fork's hundreds of allocations): its last
    // member found answers without the hash lookup. Members are never removed here (only
    // the LRU evicts, the least used first), so a remembered one stays right; every
    // `TRACED_RECHECK` hits the map is asked again, which keeps the member fresh in the
    // LRU and forgets one evicted all the same.
    let Some(seen) = TRACED_SEEN.get_ptr_mut(0) else { return lookup_traced(tgid) };
    // SAFETY: this CPU's value; one 8-byte load and store, never torn.
    let s = unsafe { core::ptr::read_volatile(seen) };
    let hits = s >> 32;
    if s as u32 == tgid.wrapping_add(1) && hits < TRACED_RECHECK {
        // SAFETY: as above.
        unsafe { core::ptr::write_volatile(seen, s + (1 << 32)) };
        return true;
    }
    let traced = lookup_traced(tgid);
    // SAFETY: as above; 0 (no tgid + 1) remembers nothing.
    unsafe { core::ptr::write_volatile(seen, if traced { u64::from(tgid.wrapping_add(1)) } else { 0 }) };
    traced
}

#[inline(always)]
fn lookup_traced(tgid: u32) -> bool {
    // SAFETY: only presence is read.
    unsafe { FEED_TRACED.get(&tgid) }.is_some()
}

/// This CPU's last `FEED_TRACED` member found: (tgid + 1) | hits since << 32.
#[map]
static TRACED_SEEN: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);
const TRACED_RECHECK: u64 = 256;

#[inline(always)]
pub fn scoped() -> bool {
    global(&TRACE_SCOPE) != SCOPE_SYSTEM
}

/// A scoped trace's child of a traced parent joins the scope.
#[inline(always)]
pub fn join(child: u32) {
    let _ = FEED_TRACED.insert(&child, &1, 0);
}

/// A traced process allocated `ptr` (scoped traces only): its free counts wherever it runs.
/// `cas`: the program may claim a slot (`cmpxchg`: the `tp_btf` kmem programs, 6.1+);
/// the classic ones spill to `TRACE_OBJECTS` when the slots are in use.
#[inline(always)]
pub fn own_object(ptr: u64, tgid: u32, cas: bool) {
    if let Some((slot, owner)) = object_slot(ptr) {
        if cas {
            // SAFETY: both point into array values; the slot is claimed atomically.
            let was = unsafe { core::intrinsics::atomic_cxchg::<u64, { SEQ_CST }, { SEQ_CST }>(slot, 0, ptr).0 };
            // Free, or this pointer's own (a free of it went unseen): the owner is this one.
            if was == 0 || was == ptr {
                // SAFETY: the slot holds `ptr`: no other program writes this owner until
                // `ptr` is freed, which is after this allocation returns.
                unsafe { *owner = tgid };
                return;
            }
        }
        return spill(ptr, tgid);
    }
    // A full set is counted: a free of what is missing is seen only from a traced process.
    if TRACE_OBJECTS.insert(&ptr, &tgid, 0) == Err(-E2BIG) {
        bump(CTR_OBJECTS_FULL);
    }
}

const SEQ_CST: core::intrinsics::AtomicOrdering = core::intrinsics::AtomicOrdering::SeqCst;

/// `ptr`'s slot and owner, if the slots are in use.
#[inline(always)]
fn object_slot(ptr: u64) -> Option<(*mut u64, *mut u32)> {
    let shift = global(&TRACE_OBJECT_SHIFT);
    if shift == 0 {
        return None;
    }
    // Fibonacci hashing of the object's 8-byte units: neighbours in a slab page spread.
    let i = ((ptr >> 3).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> shift) as u32;
    Some((OBJECT_SLOTS.get_ptr_mut(i)?, OBJECT_OWNERS.get_ptr_mut(i)?))
}

/// A pointer whose slot is another's: into `TRACE_OBJECTS`, counted while it is there.
#[inline(always)]
fn spill(ptr: u64, tgid: u32) {
    match TRACE_OBJECTS.insert(&ptr, &tgid, BPF_NOEXIST) {
        Ok(()) => spilled(1),
        // Its own entry from a free that went unseen: replaced, already counted.
        Err(e) if e as i32 == -EEXIST => {
            let _ = TRACE_OBJECTS.insert(&ptr, &tgid, 0);
        }
        Err(_) => bump(CTR_OBJECTS_FULL),
    }
}

#[inline(always)]
fn spilled(delta: u64) {
    if let Some(n) = OBJECTS_SPILLED.get_ptr_mut(0) {
        // SAFETY: the array's one value; an atomic add (BPF_XADD, every kernel).
        unsafe { core::intrinsics::atomic_xadd::<u64, u64, { SEQ_CST }>(n, delta) };
    }
}

/// Takes `ptr` out of the set: its owner, if a traced process allocated it.
#[inline(always)]
fn take_object(ptr: u64) -> Option<u32> {
    if let Some((slot, owner)) = object_slot(ptr) {
        // SAFETY: array values. A slot holding `ptr` stays its own until this free ends
        // (the tracepoint runs before the object is released): plain loads and a store.
        unsafe {
            if *slot == ptr {
                let tgid = *owner;
                *slot = 0;
                return Some(tgid);
            }
        }
        // SAFETY: the array's one value, read.
        if OBJECTS_SPILLED.get(0).is_none_or(|n| unsafe { core::ptr::read_volatile(n) } == 0) {
            return None;
        }
        // SAFETY: the value is copied out at once.
        let tgid = unsafe { TRACE_OBJECTS.get(&ptr) }.copied()?;
        if TRACE_OBJECTS.remove(&ptr).is_ok() {
            spilled(u64::MAX);
        }
        return Some(tgid);
    }
    // SAFETY: the value is copied out at once.
    let tgid = unsafe { TRACE_OBJECTS.get(&ptr) }.copied()?;
    let _ = TRACE_OBJECTS.remove(&ptr);
    Some(tgid)
}

/// A free in a scoped trace: where it counts, and whether a traced process allocated the
/// object during the trace; `None`: not the scope's. The freeing process counts if traced,
/// else the allocating one (ksmd, a /proc reader's mmput). Either way the object leaves the set.
#[inline(always)]
pub fn free_owner(ptr: u64) -> Option<(u32, bool)> {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if tgid != global(&TRACE_SELF_TGID) && is_traced(tgid) {
        // Without slots only whether it was there matters: one delete.
        let owned = if global(&TRACE_OBJECT_SHIFT) == 0 { TRACE_OBJECTS.remove(&ptr).is_ok() } else { take_object(ptr).is_some() };
        return Some((tgid, owned));
    }
    take_object(ptr).map(|owner| (owner, true))
}

/// Submit flags: no wakeup until enough waits for a batch (BPF_RB_NO_WAKEUP), then a
/// forced one (BPF_RB_FORCE_WAKEUP); the kernel's default when batching is off.
#[inline(always)]
pub fn wake_flags() -> u64 {
    let shift = global(&TRACE_WAKE_SHIFT);
    if shift == WAKE_SHIFT_NEVER {
        return 0;
    }
    let avail = TRACE_EVENTS.query(BPF_RB_AVAIL_DATA);
    if avail > global(&TRACE_RING_BYTES) >> shift { BPF_RB_FORCE_WAKEUP } else { BPF_RB_NO_WAKEUP }
}
const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;
const BPF_RB_AVAIL_DATA: u64 = 0;

#[map]
pub static TRACE_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(CTR_COUNT, 0);

/// Tracepoint field offsets from tracefs `format` files, set by userspace before load.
#[unsafe(no_mangle)]
pub static TRACE_TP_OFFSETS: TpOffsets = TpOffsets::UNSET;

/// One field offset; volatile so the loader's value is read, not the default.
#[inline(always)]
pub fn offset(f: impl FnOnce(&TpOffsets) -> &u64) -> u64 {
    // SAFETY: a read-only global patched by the loader.
    unsafe { core::ptr::read_volatile(f(&TRACE_TP_OFFSETS)) }
}

/// Reads a tracepoint field at an injected offset; 0 when the kernel has no such field.
#[inline(always)]
pub fn field<T: Default>(ctx: &aya_ebpf::programs::TracePointContext, off: u64) -> T {
    if off == NO_FIELD {
        return T::default();
    }
    // SAFETY: bpf_probe_read_kernel of the tracepoint record; a failed read yields 0.
    unsafe { ctx.read_at::<T>(off as usize) }.unwrap_or_default()
}

pub fn bump(slot: u32) {
    if let Some(p) = TRACE_COUNTERS.get_ptr_mut(slot) {
        // SAFETY: this CPU's slot; BPF programs do not migrate CPU while running.
        unsafe { *p += 1 };
    }
}

/// Reserve one event, let `fill` write it (after the common fields), commit. A full ring
/// buffer is counted in `CTR_LOST`, never dropped silently. False when lost.
#[inline(always)]
pub fn emit(kind: u32, fill: impl FnOnce(&mut TraceEvent)) -> bool {
    let Some(mut slot) = TRACE_EVENTS.reserve::<TraceEvent>(0) else {
        bump(CTR_LOST);
        return false;
    };
    let id = bpf_get_current_pid_tgid();
    // SAFETY: ktime has no preconditions.
    let ktime = unsafe { bpf_ktime_get_ns() };
    let ev = slot.write(TraceEvent { kind, pid: id as u32, tgid: (id >> 32) as u32, ktime, ..TraceEvent::default() });
    fill(ev);
    slot.submit(wake_flags());
    bump(CTR_SENT);
    true
}
