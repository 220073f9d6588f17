//! `lazyvma replay FILE`: a recording read (framing, crc, header, symbols, seed, trailer)
//! and every record decoded as the tracer decodes it. Each input is tried as it is and with
//! its chunks' crcs made right, so the fuzzer gets past the checksum to what it guards.
#![no_main]
#![allow(dead_code, unused_imports)]

#[path = "../../observer/src/record"]
mod record {
    pub mod format;
    pub mod reader;
}
#[path = "../../observer/src/load"]
mod load {
    pub mod backend;
    pub mod btf;
    pub mod probe;
    pub mod refusal;
}
#[path = "../../observer/src/trace"]
mod trace {
    pub mod counts {
        pub mod locks;
    }
    pub mod ingest {
        pub mod format;
    }
    pub mod tree {
        pub mod pids;
    }
}
#[path = "../../observer/src/sys.rs"]
mod sys;
#[path = "../../observer/src/report"]
mod report {
    pub mod hist;
    pub mod lazy_rules;
    pub mod schema;
    pub mod trace_doc;
}

use record::format::{CHUNK_HEAD, PREAMBLE};

fn read(data: Vec<u8>) {
    if let Ok(rec) = record::reader::read("fuzz.lzr", data) {
        for r in rec.records() {
            let _ = lazyvma_model::trace_abi::decode_any(r);
        }
    }
}

/// The chunk framing walked as the reader does, each crc recomputed.
fn fix_crcs(mut d: Vec<u8>) -> Vec<u8> {
    let mut pos = PREAMBLE;
    while pos + CHUNK_HEAD <= d.len() {
        let len = u32::from_le_bytes(d[pos..pos + 4].try_into().unwrap()) as usize;
        let Some(end) = (pos + CHUNK_HEAD).checked_add(len).filter(|&e| e <= d.len() && len > 0) else { break };
        let crc = crc32fast::hash(&d[pos + CHUNK_HEAD..end]);
        d[pos + 4..pos + 8].copy_from_slice(&crc.to_le_bytes());
        pos = end;
    }
    d
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    read(data.to_vec());
    read(fix_crcs(data.to_vec()));
});
