//! lazyvma's kernel side. It observes and never decides: every program here copies
//! pointers, a few fields and timestamps, and the model in userspace does the rest.
//! Field offsets come from the running kernel's BTF, injected as globals at load
//! (Rust BPF gets no CO-RE relocations), see `offsets.rs`.
#![no_std]
// `atomic_cxchg`: core's atomics offer no compare-and-swap on the BPF target.
#![feature(core_intrinsics)]
#![allow(internal_features)]
#![no_main]

mod floor;
mod iter;
mod iter_task;
mod offsets;
mod probe;
// trace's always-on programs.
mod emit;
mod lock;
mod marker;
mod sched;
mod slab;
mod why;
// what the model is fed: VMA syscalls and the VMA each prepare works on.
mod syscall;
mod place;
// trace's function hooks (fentry/fexit, or kprobe/kretprobe where fentry cannot attach).
mod fault;
mod fork;
mod hook;
mod ksm;
mod mremap;
mod rmap;
mod teardown;
mod vma;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
