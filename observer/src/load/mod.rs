//! Loading the BPF object: offsets from BTF, the embedded object, attach backends; and the
//! bytes per object every command prices with (`sizes`).
pub mod backend;
pub mod btf;
pub mod ebpf;
pub mod probe;
pub mod programs;
pub mod refusal;
pub mod sizes;
