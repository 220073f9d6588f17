//! The processes a trace follows: the tree by fork, exec and exit (`pids`, with `Threads`
//! shared by serve), the command it launches, and forks that failed after copying the mm.
pub mod command;
pub mod failed_fork;
pub mod pids;
