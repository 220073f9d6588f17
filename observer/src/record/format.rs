//! The container: a preamble (magic, major, minor), then chunks `[len u32][crc32 u32][kind
//! u8][body]`, little-endian, len and crc covering kind + body. One chunk is written whole
//! or, after a kill, cut short: a reader can tell the two apart.
use crate::load::backend::{Backend, Choice};
use serde::{Deserialize, Serialize};

pub const MAGIC: &[u8; 8] = b"LZVMAREC";
/// A reader refuses a newer major (it reads every older one); it reads a newer minor,
/// skipping unknown chunk kinds and ignoring unknown header/trailer fields.
/// 2: slab events without a stack are the slim `SlabEvent` records, which a 1.x reader
/// would count as malformed.
/// 3: records chunks are LZ4-compressed (`RECORDS_LZ4`), which a 2.x reader would skip as
/// an unknown kind and so replay nothing: a major, so it refuses instead.
pub const MAJOR: u16 = 3;
/// 1.1: the SEED chunk (`trace -p`/`--cgroup`'s snapshot); 2.0 has it too.
/// 3.1: the seed is a SEED_SCOPE chunk (its topology the candidates' processes, the others
/// as `foreign`), which a 3.0 reader skips (then replays without a seed and says so) rather
/// than read as a whole pass, which would classify the candidates' VMAs that only others
/// share as LAZY.
/// 3.2: the seed is a SEED_PACKED chunk (its topology as `topology::packed` bytes, SEED_MORE
/// chunks after it when over one chunk), which a 3.1 reader skips as 3.0 skips SEED_SCOPE.
pub const MINOR: u16 = 2;
pub const PREAMBLE: usize = 12;
pub const CHUNK_HEAD: usize = 8;
/// Larger lengths are corruption, not data: the writer cuts record chunks at 1 MiB.
pub const MAX_CHUNK: usize = 64 << 20;

/// Chunk kinds.
pub const HEADER: u8 = 1;
pub const SYMBOLS: u8 = 2;
pub const RECORDS: u8 = 3;
pub const TRAILER: u8 = 4;
/// Minor 1: the snapshot a `-p`/`--cgroup` trace seeded its model from, before any records.
pub const SEED: u8 = 5;
/// Major 3: a `RECORDS` body as an LZ4 block, its length (u32, at most `MAX_CHUNK`) first.
/// The fork loop's records compress ~5× (32 KB a fork plain).
pub const RECORDS_LZ4: u8 = 6;
/// 3.1: `SEED` with the pass's processes outside the candidates reduced to
/// `Topology::foreign` (a `SEED` chunk's whole pass is reduced so on load).
pub const SEED_SCOPE: u8 = 7;
/// 3.2: `SEED_SCOPE`'s content in ~1/10 of the bytes (issue 9: the JSON of a 1 M-VMA scope
/// was 317 MiB, never recorded): `[meta length u32][SeedMeta JSON][packed topology]`
/// (`lazyvma_model::topology::packed`).
pub const SEED_PACKED: u8 = 8;
/// 3.2: the rest of a `SEED_PACKED` body over one chunk, in order, right after it.
pub const SEED_MORE: u8 = 9;

/// `RECORDS_LZ4`'s body for a `RECORDS` body.
pub fn compress(body: &[u8]) -> Vec<u8> {
    lz4_flex::block::compress_prepend_size(body)
}

/// A `RECORDS_LZ4` body back to the `RECORDS` body, refused (None) when its stated length
/// is over `MAX_CHUNK` (before allocating it), or the block does not decode to that length.
pub fn decompress(body: &[u8]) -> Option<Vec<u8>> {
    let n = u32::from_le_bytes(body.get(..4)?.try_into().ok()?) as usize;
    if n > MAX_CHUNK {
        return None;
    }
    let mut out = vec![0; n];
    match lz4_flex::block::decompress_into(&body[4..], &mut out) {
        Ok(got) if got == n => Some(out),
        _ => None,
    }
}

pub fn preamble() -> [u8; PREAMBLE] {
    let mut p = [0; PREAMBLE];
    p[..8].copy_from_slice(MAGIC);
    p[8..10].copy_from_slice(&MAJOR.to_le_bytes());
    p[10..].copy_from_slice(&MINOR.to_le_bytes());
    p
}

pub fn chunk(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(1 + body.len());
    payload.push(kind);
    payload.extend_from_slice(body);
    let mut c = Vec::with_capacity(CHUNK_HEAD + payload.len());
    c.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    c.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    c.extend_from_slice(&payload);
    c
}

/// Symbols body: `[addr u64][name len u16][name]` per kallsyms entry a lookup used.
pub fn symbols_body(entries: &[(u64, String)]) -> Vec<u8> {
    let mut b = Vec::new();
    for (addr, name) in entries {
        let name = &name.as_bytes()[..name.len().min(u16::MAX as usize)];
        b.extend_from_slice(&addr.to_le_bytes());
        b.extend_from_slice(&(name.len() as u16).to_le_bytes());
        b.extend_from_slice(name);
    }
    b
}

/// Everything the report needs besides the records, known when the programs are attached.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Header {
    pub lazyvma: String,
    /// The traced machine's name (None: a recording from before it was kept).
    #[serde(default)]
    pub host: Option<String>,
    pub kernel: String,
    pub arch: String,
    /// The object_sizes allocations were told apart by: every recording has them (and a
    /// reader from before `caches` needs them).
    pub sizes: ObjectSizes,
    /// The traced kernel's sizes as `load::sizes` read them (object_size, slab_size and the
    /// source per cache): the bytes a replay prices with. Absent before 2026-12-07: then
    /// `sizes`' object_sizes are the bytes, as the trace of that file reported them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caches: Option<lazyvma_model::sizes::Sizes>,
    /// "command", "pids", "cgroup" or "system".
    pub scope: String,
    pub pids: Vec<u32>,
    /// `--cgroup`: the directory whose members at start were traced (they are `pids`).
    #[serde(default)]
    pub cgroup: Option<String>,
    /// Why anon_vma root rwsem contention was not traced (None: it was).
    #[serde(default)]
    pub locks_unavailable: Option<String>,
    pub argv: Vec<String>,
    /// The traced processes at the start, in tree order: (tgid, parent's tgid).
    pub tree: Vec<(u32, Option<u32>)>,
    pub stacks: bool,
    pub backend: Vec<ChoiceRec>,
    pub tracepoints: Vec<String>,
    pub missing: Vec<(String, String)>,
    /// Some function hook attached / the rmap hook attached.
    pub ops: bool,
    pub rmap: bool,
    /// The model is fed (command and -p scopes), and from the prepare hook's VMA rather
    /// than the fault tracepoint's address (arm64).
    #[serde(default)]
    pub feed: bool,
    #[serde(default)]
    pub feed_from_hooks: bool,
    pub start_unix_ms: u64,
}

/// `kmem_cache.object_size` of the two caches, as the header has always kept them.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ObjectSizes {
    pub anon_vma: u64,
    pub anon_vma_chain: u64,
}

impl Header {
    /// The sizes the trace classified and priced with: `caches`, or for an older file the
    /// recorded object_sizes, priced at those and said to be so.
    pub fn sizes(&self) -> lazyvma_model::sizes::Sizes {
        if let Some(c) = &self.caches {
            return c.clone();
        }
        use lazyvma_model::sizes::{Size, Sizes};
        let old = |object_size: u64, cache: &str| Size {
            object_size,
            slab_size: object_size,
            source: format!("/sys/kernel/slab/{cache}/object_size (recording before slab sizes were kept: the object, not its slab slot)"),
        };
        // vm_area_struct was never recorded and a trace does not count it: the spec's.
        Sizes {
            anon_vma: old(self.sizes.anon_vma, "anon_vma"),
            anon_vma_chain: old(self.sizes.anon_vma_chain, "anon_vma_chain"),
            vm_area_struct: Sizes::spec_x86_64().vm_area_struct,
        }
    }
}

/// `load::backend::Choice` with owned strings: the header keeps what `trace -j`'s
/// `backend_detail` prints.
pub use crate::report::trace_doc::BackendChoice as ChoiceRec;

const BACKENDS: [Backend; 5] = [Backend::Fentry, Backend::Kprobe, Backend::Tracepoint, Backend::TracepointOnly, Backend::Unavailable];

impl ChoiceRec {
    /// Choice borrows `'static` names; a replay is one short process, so its few dozen
    /// strings are leaked rather than the report's types made generic.
    pub fn choice(&self) -> Result<Choice, String> {
        let leak = |s: &String| -> &'static str { Box::leak(s.clone().into_boxed_str()) };
        let backend =
            BACKENDS.into_iter().find(|b| b.name() == self.backend).ok_or_else(|| format!("unknown backend `{}` for hook {}", self.backend, self.hook))?;
        Ok(Choice {
            hook: leak(&self.hook),
            backend,
            functions: self.functions.iter().map(leak).collect(),
            tracepoints: self.tracepoints.iter().map(leak).collect(),
            note: self.note.as_ref().map(leak),
            reason: self.reason.clone(),
        })
    }
}

/// The seed's input as `trace/feed/seed.rs::pass` left it: a replay installs it where the live
/// trace did (before the first record) and meets the same start/end markers in the records.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SeedRec {
    /// The traced lazyvma's own tgid: only its markers bracket the pass.
    pub tgid: u32,
    /// The candidates' processes whole, the others as `foreign` (a `SEED` chunk's: the
    /// whole pass, reduced on load by `SeedRec::scope`).
    pub topology: lazyvma_model::topology::Topology,
    /// The processes to seed, and those already refused when the pass was taken, with why.
    pub candidates: Vec<u32>,
    pub reasons: std::collections::BTreeMap<u32, String>,
    /// µs between the pass's two markers (absent before 1.1's later writers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass_us: Option<u64>,
}

impl SeedRec {
    /// A `SEED` chunk's whole pass as a `SEED_SCOPE` chunk holds it: the candidates (refused
    /// or not) whole, the others reduced to what the seed reads of them.
    pub fn scope(mut self) -> SeedRec {
        let keep: std::collections::HashSet<u32> = self.candidates.iter().copied().collect();
        self.topology.reduce(|pid| keep.contains(&pid));
        self
    }
}

/// What a `SEED_PACKED` chunk holds beside the packed topology (`SeedRec` less it).
#[derive(Serialize, Deserialize)]
struct SeedMeta<'a> {
    tgid: u32,
    candidates: std::borrow::Cow<'a, [u32]>,
    reasons: std::borrow::Cow<'a, std::collections::BTreeMap<u32, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pass_us: Option<u64>,
}

/// A seed as a `SEED_PACKED` body, read off the pass where the trace holds it (a copy of a
/// 1 M-VMA topology was ~170 MB at `trace -p -o`'s peak).
pub fn seed_body(
    tgid: u32,
    topology: &lazyvma_model::topology::Topology,
    candidates: &[u32],
    reasons: &std::collections::BTreeMap<u32, String>,
    pass_us: Option<u64>,
) -> Vec<u8> {
    use std::borrow::Cow;
    let meta = SeedMeta { tgid, candidates: Cow::Borrowed(candidates), reasons: Cow::Borrowed(reasons), pass_us };
    // Cannot fail: integers and strings.
    let meta = serde_json::to_vec(&meta).unwrap_or_default();
    let topo = lazyvma_model::topology::packed::pack(topology);
    let mut b = Vec::with_capacity(4 + meta.len() + topo.len());
    b.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    b.extend_from_slice(&meta);
    b.extend_from_slice(&topo);
    b
}

/// A `SEED_PACKED` body (with its `SEED_MORE` continuations) back to the seed.
pub fn seed_from_body(b: &[u8]) -> Result<SeedRec, String> {
    let n = b.get(..4).map(|n| u32::from_le_bytes(n.try_into().expect("4 bytes")) as usize).ok_or("cut short before its meta")?;
    let meta = b.get(4..).and_then(|r| r.get(..n)).ok_or("cut short in its meta")?;
    let meta: SeedMeta = serde_json::from_slice(meta).map_err(|e| format!("meta: {e}"))?;
    let topology = lazyvma_model::topology::packed::unpack(&b[4 + n..])?;
    Ok(SeedRec { tgid: meta.tgid, topology, candidates: meta.candidates.into_owned(), reasons: meta.reasons.into_owned(), pass_us: meta.pass_us })
}

/// How the trace ended; absent when the recording was cut short.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Trailer {
    pub ended_by: String,
    pub exit_status: Option<i32>,
    pub signal: Option<i32>,
    pub elapsed_ms: u64,
    pub sent: u64,
    pub lost: u64,
    /// Records written: a replay that reads another number says so.
    pub records: u64,
    /// The lock programs' own counters (seeded, set full, lost), when they were loaded.
    #[serde(default)]
    pub lock_counters: Option<crate::trace::counts::locks::Counters>,
    /// The kernel's slab count map, when `trace` counted there (never in a recording).
    #[serde(default)]
    pub kernel_counts: Option<MapStats>,
}

/// The kernel's slab count map over a run, in `trace -j`'s `kernel_counts`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MapStats {
    /// Slab events sent to userspace because the map was full (counted all the same).
    pub full: u64,
    /// Keys of exited processes deleted from the map.
    pub retired: u64,
}

/// A plain header for tests.
#[cfg(test)]
pub fn tests_header() -> Header {
    Header {
        lazyvma: "0.1.0".into(),
        host: None,
        kernel: "6.18.44".into(),
        arch: "x86_64".into(),
        sizes: ObjectSizes { anon_vma: 96, anon_vma_chain: 64 },
        caches: Some(lazyvma_model::sizes::Sizes::spec_x86_64()),
        scope: "command".into(),
        pids: vec![],
        cgroup: None,
        locks_unavailable: None,
        argv: vec!["true".into()],
        tree: vec![(100, None)],
        stacks: true,
        backend: vec![],
        tracepoints: vec!["kmem:kmem_cache_alloc".into()],
        missing: vec![],
        ops: false,
        rmap: false,
        feed: false,
        feed_from_hooks: false,
        start_unix_ms: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header from before `caches` (every recording until 2026-12-07) still reads, and its
    /// replay prices at the recorded object_sizes, as its trace did, saying so; a newer
    /// header's `caches` are the trace's own sizes.
    #[test]
    fn a_header_without_caches_prices_at_its_object_sizes() {
        let mut v = serde_json::to_value(tests_header()).unwrap();
        assert_eq!(v["caches"]["anon_vma"]["slab_size"], 104);
        assert_eq!(tests_header().sizes(), lazyvma_model::sizes::Sizes::spec_x86_64());
        v.as_object_mut().unwrap().remove("caches");
        let old: Header = serde_json::from_value(v).unwrap();
        let s = old.sizes();
        assert_eq!((s.anon_vma.object_size, s.anon_vma.slab_size, s.anon_vma_chain.slab_size), (96, 96, 64));
        assert!(s.anon_vma.source.starts_with("/sys/kernel/slab/anon_vma/object_size (recording before slab sizes"), "{}", s.anon_vma.source);
        // An older reader's view: the object_sizes stay where they always were.
        assert_eq!(serde_json::to_value(&old).unwrap()["sizes"], serde_json::json!({ "anon_vma": 96, "anon_vma_chain": 64 }));
    }
}
