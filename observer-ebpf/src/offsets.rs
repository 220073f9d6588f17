//! Kernel field offsets, set by userspace from BTF before load (`EbpfLoader::override_global`).
//! A value of `u64::MAX` means "field absent on this kernel". The names are the contract
//! with `observer/src/load/btf.rs` (`GLOBALS`), which sets every one of them or fails.
use aya_ebpf::Global;

macro_rules! offsets {
    ($($name:ident),* $(,)?) => {
        $(
            #[unsafe(no_mangle)]
            pub static $name: Global<u64> = Global::new(u64::MAX);
        )*
    };
}

offsets!(
    VMA_VM_START,
    VMA_VM_END,
    VMA_VM_PGOFF,
    VMA_VM_FLAGS,
    VMA_VM_MM,
    VMA_ANON_VMA,
    VMA_ANON_VMA_CHAIN,
    AV_ROOT,
    AV_PARENT,
    AV_REFCOUNT,
    AV_NUM_CHILDREN,
    AV_NUM_ACTIVE_VMAS,
    AV_DEGREE,
    AVC_SAME_VMA,
    AVC_ANON_VMA,
    AVC_VMA,
    TASK_PID,
    TASK_TGID,
    TASK_COMM,
    TASK_MM,
    // The iter/task pass (kernels before iter/task_vma); absent where the list is gone (6.1+).
    TASK_FILES,
    TASK_GROUP_LEADER,
    MM_MMAP,
    MM_MAP_COUNT,
    VMA_VM_NEXT,
    // Where a resumed iter/task walk finds its next VMA: find_vma's descent of mm->mm_rb.
    MM_MM_RB,
    VMA_VM_RB,
    RB_LEFT,
    RB_RIGHT,
);
