//! lazyvma's reference model.
//!
//! * [`abi`] — `#[repr(C)]` records shared with the BPF programs (`no_std`).
//! * [`topology`] — what a `snapshot` reads from the live kernel.
//! * [`snapshot`] — the eager/lazy estimate a snapshot's topology allows.
#![cfg_attr(not(feature = "std"), no_std)]

pub mod abi;
pub mod hook_abi;
pub mod trace_abi;

#[cfg(feature = "std")]
pub mod knobs;
#[cfg(feature = "std")]
pub mod snapshot;
#[cfg(feature = "std")]
pub mod topology;
