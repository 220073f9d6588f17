//! The engine both halves run on: today's kernel mechanics, rule for rule (spec §1).
//! `Machine::eager` is the EAGER half (the kernel as it is); `Machine::lazy` runs the LAZY
//! half on the same mechanics: a TREE VMA behaves exactly as here, and `crate::lazy`
//! decides when a VMA leaves them (its fault path, eager's included, is `lazy/decide.rs`).

pub(crate) mod anon_vma;
mod fxhash;
mod machine;
mod merge;
mod slab;
pub(crate) mod vma;

pub(crate) use machine::{Core, Procs, EAGER, LAZY};
pub use machine::{Half, Machine, ModelError, VmaView};
pub(crate) use merge::Prop;
pub use vma::State;
