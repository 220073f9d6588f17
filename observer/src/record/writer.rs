//! Writes a recording as the trace runs: record chunks cut every interval (`flush`) and at
//! 1 MiB, each written whole and flushed to the kernel, so a kill -9 loses at most the
//! chunk being built. The symbols the records' lookups used go in a chunk just before them.
use super::format::{self, Header, Trailer};
use crate::trace::symbols::Symbols;
use anyhow::Context;
use std::{
    fs::File,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
    time::Instant,
};

const FLUSH_BYTES: usize = 1 << 20;
/// A records body starts with the ms since the header: a cut-short replay's elapsed time.
const STAMP: usize = 8;

pub struct Writer {
    path: PathBuf,
    out: BufWriter<File>,
    body: Vec<u8>,
    start: Instant,
    pub records: u64,
    pub bytes: u64,
    pub chunks: u64,
    /// The stamp of the records chunk last written, until taken (a timeline point).
    pub flushed: Option<u64>,
    /// A write failed inside `record` (which cannot return it): every later call reports it.
    failed: Option<String>,
}

impl Writer {
    /// Opened before anything is attached, so a bad path fails at once.
    pub fn create(path: &Path) -> anyhow::Result<Writer> {
        let file = File::create(path).with_context(|| format!("cannot create recording {}", path.display()))?;
        let mut w = Writer {
            path: path.to_owned(),
            out: BufWriter::new(file),
            body: vec![0; STAMP],
            start: Instant::now(),
            records: 0,
            bytes: 0,
            chunks: 0,
            flushed: None,
            failed: None,
        };
        w.write(&format::preamble())?;
        Ok(w)
    }

    fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        if let Some(e) = &self.failed {
            anyhow::bail!("{e}");
        }
        let res = self.out.write_all(bytes).and_then(|_| self.out.flush());
        if let Err(e) = res {
            let e = format!("writing recording {}: {e}", self.path.display());
            self.failed = Some(e.clone());
            anyhow::bail!(e);
        }
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    fn chunk(&mut self, kind: u8, body: &[u8]) -> anyhow::Result<()> {
        self.write(&format::chunk(kind, body))?;
        self.chunks += 1;
        Ok(())
    }

    pub fn header(&mut self, h: &Header) -> anyhow::Result<()> {
        self.start = Instant::now();
        self.chunk(format::HEADER, &serde_json::to_vec(h)?)
    }

    /// The seed's input, taken before any record was read (so before any records chunk).
    /// `Ok(Some(bytes))`: too large for one chunk (a reader would call it corruption), not written.
    pub fn seed(&mut self, s: &format::SeedRec) -> anyhow::Result<Option<usize>> {
        let body = serde_json::to_vec(s)?;
        if body.len() + 1 > format::MAX_CHUNK {
            return Ok(Some(body.len()));
        }
        self.chunk(format::SEED, &body)?;
        Ok(None)
    }

    /// One ring-buffer record, before the tracer counts it: a chunk cut here holds only
    /// records already counted, so every symbol they used is known.
    pub fn record(&mut self, bytes: &[u8], syms: &Symbols) {
        if self.body.len() + 4 + bytes.len() > FLUSH_BYTES {
            // The error stays in `failed` for the next `flush`.
            let _ = self.flush(syms);
        }
        self.body.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        self.body.extend_from_slice(bytes);
        self.records += 1;
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
            self.chunk(format::RECORDS, &body)?;
            self.flushed = Some(ms);
        }
        match &self.failed {
            Some(e) => anyhow::bail!("{e}"),
            None => Ok(()),
        }
    }

    /// The last records and the trailer; `trailer.records` is set here.
    pub fn finish(mut self, syms: &Symbols, mut trailer: Trailer) -> anyhow::Result<Writer> {
        self.flush(syms)?;
        trailer.records = self.records;
        self.chunk(format::TRAILER, &serde_json::to_vec(&trailer)?)?;
        Ok(self)
    }
}
