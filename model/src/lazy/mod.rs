//! LAZY (`ANON_VMA_LAZY`, spec §3): per-VMA states NONE / LAZY / TREE / TREE_PARENT and
//! the rules L1..L18 with the knobs of §3.3. The kernel mechanics a TREE VMA goes through
//! are the eager ones (`crate::engine`); this module decides when a VMA leaves them.

mod decide;
pub mod history;
pub mod rule;

pub use history::{History, Outcome};
pub use rule::{Rule, RuleCounts, Status};
