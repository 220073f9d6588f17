//! EAGER: today's kernel, rule for rule (spec §1). `Machine` is also the engine the LAZY
//! model runs on: a TREE VMA behaves exactly as here, and `crate::lazy` decides the rest.

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
