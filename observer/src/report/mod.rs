//! The versioned report document and everything that reads, merges and renders it.
pub mod cgroup;
pub mod from_snapshot;
pub mod hist;
pub mod lazy_rules;
pub mod load;
pub mod merge;
pub mod render_html;
pub mod render_rules;
pub mod render_text;
pub mod schema;
pub mod slabinfo;
pub mod svg;
pub mod trace_doc;
pub mod write;

/// This machine's name, as `uname -n` gives it.
pub fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "unknown".into())
}

pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
