//! Loading the BPF object: offsets from BTF, the embedded object, attach backends; the
//! bytes per object every command prices with (`sizes`); and what the kernel tells a run,
//! read once and passed down (`facts`).
pub mod backend;
pub mod btf;
pub mod ebpf;
pub mod facts;
pub mod probe;
pub mod programs;
pub mod refusal;
pub mod sizes;
pub mod syscalls;
