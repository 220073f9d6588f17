//! The observer as a library: what the `lazyvma` binary runs (`cli`), and what its tests,
//! the bench's floor and any other tool can call without driving the binary. Data flows
//! kernel → `load` (BPF object, kernel facts) → `trace` / `snapshot` (records, passes) →
//! `report` (the typed document and its renderers); `serve` exposes both as OpenMetrics;
//! `record` reads and writes recordings.
pub mod cgroup;
pub mod cli;
pub mod escape;
pub mod exit;
pub mod interrupt;
pub mod load;
pub mod record;
pub mod report;
pub mod safe_out;
pub mod serve;
pub mod snapshot;
pub mod sys;
pub mod trace;
