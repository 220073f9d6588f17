//! lazyvma's reference model.
//!
//! * [`abi`], [`trace_abi`] — `#[repr(C)]` records shared with the BPF programs (`no_std`).
//! * [`topology`] — what a `snapshot` reads from the live kernel; [`snapshot`] — the
//!   eager/lazy estimate a snapshot's topology allows; [`seed`] builds a [`pair::Pair`]
//!   from a topology (processes already running).
//! * [`event`] — the model's input language; [`engine`] reproduces today's kernel
//!   (spec §1) for both halves, [`lazy`] the ANON_VMA_LAZY rules (spec §3) with [`knobs`];
//!   [`pair`] runs both side by side; [`scenario`] reads scenario files; [`sweep`]
//!   re-runs an event stream under every knob value; [`sizes`] is what each object kind
//!   weighs (object_size tells the kind, slab_size is the bytes).
#![cfg_attr(not(feature = "std"), no_std)]

pub mod abi;
pub mod hook_abi;
pub mod trace_abi;

#[cfg(feature = "std")]
pub mod counts;
#[cfg(feature = "std")]
pub mod engine;
#[cfg(feature = "std")]
pub mod event;
#[cfg(feature = "std")]
pub mod kernel;
#[cfg(feature = "std")]
pub mod knobs;
#[cfg(feature = "std")]
pub mod lazy;
#[cfg(feature = "std")]
pub mod pair;
#[cfg(feature = "std")]
pub mod scenario;
#[cfg(feature = "std")]
pub mod seed;
#[cfg(feature = "std")]
pub mod sizes;
#[cfg(feature = "std")]
pub mod snapshot;
#[cfg(feature = "std")]
pub mod snapshot_stream;
#[cfg(feature = "std")]
pub mod sweep;
#[cfg(feature = "std")]
pub mod topology;
