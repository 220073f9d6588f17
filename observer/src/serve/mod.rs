//! `lazyvma serve`: the always-on trace and a snapshot pass every interval, exposed as
//! OpenMetrics for Prometheus. The threads here observe; `metrics` is the only shared state.
pub mod events;
pub mod follow;
pub mod http;
pub mod metrics;
pub mod passes;
pub mod scope;
pub mod text;
