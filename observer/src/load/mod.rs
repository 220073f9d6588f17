//! Loading the BPF object: offsets from BTF, the embedded object, attach backends.
pub mod backend;
pub mod btf;
pub mod ebpf;
pub mod probe;
pub mod programs;
pub mod refusal;
