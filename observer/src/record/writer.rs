//! Writes a recording as the trace runs: record chunks cut every interval (`flush`) and at
//! 1 MiB, each written whole and flushed to the kernel, so a kill -9 loses at most the
//! chunk being built. The symbols the records' lookups used go in a chunk just before them.
//! The file is a temporary one (crate::safe_out) until `commit`, once the run has started: a
//! failed start (a typo'd command, a bad --btf) leaves an existing recording as it was.
//! A write that fails (disk full) ends the recording at its last whole chunk, not the trace.
use super::format::{self, Header, Trailer};
use crate::trace::ingest::symbols::Symbols;
use anyhow::Context;
use std::{
    fs::File,
    io::Write,
    path::{Path, PathBuf},
    time::Instant,
};

const FLUSH_BYTES: usize = 1 << 20;
/// A records body starts with the ms since the header: a cut-short replay's elapsed time.
const STAMP: usize = 8;

pub struct Writer {
    path: PathBuf,
    out: File,
    pending: crate::safe_out::Pending,
    body: Vec<u8>,
    start: Instant,
    /// Records in the chunks written.
    pub records: u64,
    /// Records in `body`, not yet written.
    body_records: u64,
    pub bytes: u64,
    pub chunks: u64,
    /// The stamp of the records chunk last written, until taken (a timeline point).
    pub flushed: Option<u64>,
    /// The first write that failed: the file was cut back to its last whole chunk and
    /// nothing more is written (the trace goes on; its report says so).
    pub failed: Option<String>,
}

impl Writer {
    /// Opened before anything is attached, so a bad path fails at once.
    pub fn create(path: &Path) -> anyhow::Result<Writer> {
        let (file, pending) = crate::safe_out::open(path).with_context(|| format!("cannot create recording {}", path.display()))?;
        let mut w = Writer {
            path: path.to_owned(),
            out: file,
            pending,
            body: vec![0; STAMP],
            start: Instant::now(),
            records: 0,
            body_records: 0,
            bytes: 0,
            chunks: 0,
            flushed: None,
            failed: None,
        };
        w.write(&format::preamble());
        match w.failed.take() {
            Some(e) => anyhow::bail!(e),
            None => Ok(w),
        }
    }

    /// Make the recording appear at its path (replacing one there): the run has started.
    pub fn commit(&mut self) -> anyhow::Result<()> {
        self.pending.commit().with_context(|| format!("recording {}", self.path.display()))
    }

    /// Whole or not at all: a torn chunk is cut off, so a reader sees the last whole one.
    fn write(&mut self, bytes: &[u8]) {
        self.write_parts(&[bytes]);
    }

    /// `write` of the parts' concatenation, without making it.
    fn write_parts(&mut self, parts: &[&[u8]]) {
        if self.failed.is_some() {
            return;
        }
        if let Err(e) = parts.iter().try_for_each(|b| self.out.write_all(b)) {
            let _ = self.out.set_len(self.bytes);
            self.failed = Some(format!("writing recording {}: {e}", self.path.display()));
            eprintln!(
                "lazyvma: {}; the recording ends at its last whole chunk ({} bytes), the trace goes on",
                self.failed.as_deref().unwrap_or(""),
                self.bytes
            );
            return;
        }
        self.bytes += parts.iter().map(|b| b.len() as u64).sum::<u64>();
    }

    fn chunk(&mut self, kind: u8, body: &[u8]) -> anyhow::Result<()> {
        self.write(&format::chunk(kind, body));
        if self.failed.is_none() {
            self.chunks += 1;
        }
        Ok(())
    }

    pub fn header(&mut self, h: &Header) -> anyhow::Result<()> {
        self.start = Instant::now();
        self.chunk(format::HEADER, &serde_json::to_vec(h)?)
    }

    /// The seed's input (`format::seed_body`), taken before any record was read (so before
    /// any records chunk): one `SEED_PACKED` chunk, and `SEED_MORE` chunks after it for what
    /// is over one chunk. Each written from the body in place (no copy of it is made).
    pub fn seed(&mut self, body: &[u8]) {
        let mut kind = format::SEED_PACKED;
        for piece in body.chunks(format::MAX_CHUNK - 1) {
            let mut crc = crc32fast::Hasher::new();
            crc.update(&[kind]);
            crc.update(piece);
            let mut head = [0u8; format::CHUNK_HEAD + 1];
            head[..4].copy_from_slice(&(piece.len() as u32 + 1).to_le_bytes());
            head[4..8].copy_from_slice(&crc.finalize().to_le_bytes());
            head[8] = kind;
            self.write_parts(&[&head, piece]);
            if self.failed.is_none() {
                self.chunks += 1;
            }
            kind = format::SEED_MORE;
        }
    }

    /// One ring-buffer record, before the tracer counts it: a chunk cut here holds only
    /// records already counted, so every symbol they used is known.
    pub fn record(&mut self, bytes: &[u8], syms: &Symbols) {
        if self.failed.is_some() {
            return;
        }
        if self.body.len() + 4 + bytes.len() > FLUSH_BYTES {
            let _ = self.flush(syms);
        }
        self.body.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        self.body.extend_from_slice(bytes);
        self.body_records += 1;
    }

    /// Write the symbols used so far, then the records built so far.
    pub fn flush(&mut self, syms: &Symbols) -> anyhow::Result<()> {
        let used = syms.take_used();
        if !used.is_empty() {
            self.chunk(format::SYMBOLS, &format::symbols_body(&used))?;
        }
        if self.body.len() > STAMP {
            let ms = self.start.elapsed().as_millis() as u64;
            let mut body = std::mem::replace(&mut self.body, vec![0; STAMP]);
            body[..STAMP].copy_from_slice(&ms.to_le_bytes());
            self.chunk(format::RECORDS_LZ4, &format::compress(&body))?;
            if self.failed.is_none() {
                self.records += std::mem::take(&mut self.body_records);
                self.flushed = Some(ms);
            }
        }
        Ok(())
    }

    /// The last records and the trailer; `trailer.records` is set here. A recording whose
    /// writes failed has no trailer: a replay says it was cut short.
    pub fn finish(mut self, syms: &Symbols, mut trailer: Trailer) -> anyhow::Result<Writer> {
        self.flush(syms)?;
        trailer.records = self.records;
        self.chunk(format::TRAILER, &serde_json::to_vec(&trailer)?)?;
        self.commit()?;
        Ok(self)
    }

    /// One line for stderr: what the recording holds.
    pub fn summary(&self) -> String {
        let cut = self.failed.as_ref().map_or(String::new(), |e| format!(" (cut short, no trailer: {e})"));
        format!("recording {}: {} records in {} chunks, {} bytes{cut}", self.path.display(), self.records, self.chunks, self.bytes)
    }
}
