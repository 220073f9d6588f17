//! The processes a trace follows: the tree by fork, exec and exit (`pids`, with `Threads`
//! shared by serve), the command it launches, forks that failed after copying the mm, and
//! what /proc says of a process (`procfs`, serve's scope too).
pub mod command;
pub mod failed_fork;
pub mod pids;
pub mod procfs;
