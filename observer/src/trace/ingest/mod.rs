//! What lazyvma loads into the kernel and reads back: the BPF object and its maps and ring
//! buffer (`bpf`), the hooks' attach and backend choice (`attach`, `hooks`), tracefs formats,
//! the count map's per-CPU front, per-program costs, and turning records into meaning: the
//! hook decoder (`ops`), reasons and kernel symbols.
pub mod attach;
pub mod bpf;
pub mod format;
pub mod front;
pub mod hooks;
pub mod ops;
pub mod reason;
pub mod stats;
pub mod symbols;
