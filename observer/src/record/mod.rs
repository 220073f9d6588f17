//! `trace -o`: a recording of one trace, and its replay without root or BPF. The records
//! are stored as the ring buffer gave them (opaque bytes, so new record kinds need nothing
//! here), next to what the report needs that is not in them. Byte layout: docs/recording.md.
pub mod format;
pub mod meta;
pub mod reader;
pub mod writer;
