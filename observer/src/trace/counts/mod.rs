//! What the trace counts per process and phase: slab allocations and frees (`slab`, with the
//! kernel's counts), root rwsem waits, KSM and THP events, the hook ops, per-cgroup rows and
//! the live-object timeline.
pub mod bycgroup;
pub mod ksm;
pub mod locks;
pub mod opstats;
pub mod slab;
pub mod timeline;
