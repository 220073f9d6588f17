//! Reads a recording whole and checks it before anything is replayed: a file cut short
//! (no trailer; the last chunk short, or its crc bad with nothing after it) is read up to
//! its last complete chunk; anything else wrong is an error naming the file and offset.
use super::format::{self, Header, SeedRec, Trailer, CHUNK_HEAD, MAJOR, MAX_CHUNK, PREAMBLE};
use std::ops::Range;

#[derive(Debug, thiserror::Error)]
#[error("recording {path}: {what} at offset {offset}")]
pub struct ReadError {
    pub path: String,
    pub offset: usize,
    pub what: String,
}

pub struct Recording {
    /// The file's bytes, then the compressed records chunks' plain bodies.
    data: Vec<u8>,
    /// The file's length.
    file_bytes: usize,
    pub major: u16,
    pub minor: u16,
    pub header: Header,
    /// The kallsyms entries the recorded run's lookups used.
    pub symbols: Vec<(u64, String)>,
    records: Vec<Range<usize>>,
    pub trailer: Option<Trailer>,
    /// `-p`/`--cgroup` (minor 1+): the snapshot the live trace seeded its model from.
    pub seed: Option<SeedRec>,
    /// Complete chunks read.
    pub chunks: usize,
    /// The stamp of the last records chunk: ms since the header.
    pub last_ms: u64,
    /// Bytes after the last complete chunk (a chunk cut short).
    pub lost_bytes: usize,
    /// Per records chunk: the records read up to its end, and its stamp (the timeline).
    pub stamps: Vec<(usize, u64)>,
}

impl Recording {
    pub fn records(&self) -> impl Iterator<Item = &[u8]> {
        self.records.iter().map(|r| &self.data[r.clone()])
    }

    /// Record `i` (in order), `None` past the last.
    pub fn record(&self, i: usize) -> Option<&[u8]> {
        self.records.get(i).map(|r| &self.data[r.clone()])
    }

    pub fn record_count(&self) -> usize {
        self.records.len()
    }

    pub fn bytes(&self) -> usize {
        self.file_bytes
    }

    pub fn complete(&self) -> bool {
        self.trailer.is_some()
    }
}

fn u16_at(d: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(d[at..at + 2].try_into().expect("2 bytes"))
}

fn u32_at(d: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(d[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(d: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(d[at..at + 8].try_into().expect("8 bytes"))
}

pub fn read(path: &str, data: Vec<u8>) -> Result<Recording, ReadError> {
    let err = |offset: usize, what: String| ReadError { path: path.into(), offset, what };
    if data.len() < PREAMBLE || &data[..8] != format::MAGIC {
        let what = if format::MAGIC.starts_with(&data[..data.len().min(8)]) {
            "not a lazyvma recording (cut short before its header)"
        } else {
            "not a lazyvma recording (bad magic)"
        };
        return Err(err(0, what.into()));
    }
    let (major, minor) = (u16_at(&data, 8), u16_at(&data, 10));
    if !(1..=MAJOR).contains(&major) {
        return Err(err(8, format!("format version {major}.{minor}; this lazyvma reads 1.x to {MAJOR}.x")));
    }
    // (kind, body) of each complete chunk, by offset.
    let mut chunks: Vec<(usize, u8, Range<usize>)> = Vec::new();
    let mut pos = PREAMBLE;
    let mut cut = None;
    while pos < data.len() {
        if data.len() - pos < CHUNK_HEAD {
            cut = Some(pos);
            break;
        }
        let len = u32_at(&data, pos) as usize;
        if len == 0 || len > MAX_CHUNK {
            return Err(err(pos, format!("chunk {} has length {len}", chunks.len() + 1)));
        }
        let end = pos + CHUNK_HEAD + len;
        if end > data.len() {
            cut = Some(pos);
            break;
        }
        let payload = pos + CHUNK_HEAD..end;
        if crc32fast::hash(&data[payload.clone()]) != u32_at(&data, pos + 4) {
            if end == data.len() {
                cut = Some(pos);
                break;
            }
            return Err(err(pos, format!("chunk {} fails its crc", chunks.len() + 1)));
        }
        chunks.push((pos, data[payload.start], payload.start + 1..end));
        pos = end;
    }
    let Some(&(at, kind, ref body)) = chunks.first() else {
        return Err(err(PREAMBLE, "no complete header chunk (cut short?)".into()));
    };
    if kind != format::HEADER {
        return Err(err(at, format!("the first chunk is of kind {kind}, not the header")));
    }
    let header: Header = serde_json::from_slice(&data[body.clone()]).map_err(|e| err(at, format!("header undecodable: {e}")))?;
    let mut rec = Recording {
        data: Vec::new(),
        file_bytes: data.len(),
        major,
        minor,
        header,
        symbols: Vec::new(),
        records: Vec::new(),
        trailer: None,
        seed: None,
        chunks: chunks.len(),
        last_ms: 0,
        lost_bytes: cut.map_or(0, |c| data.len() - c),
        stamps: Vec::new(),
    };
    // Compressed records go back to plain bodies after the file's bytes, so a record is a
    // range of `data` either way.
    let mut data = data;
    for (i, (at, kind, body)) in chunks.iter_mut().enumerate().skip(1) {
        // The preamble is outside every crc: a 3.x file whose major was damaged to 1 or 2
        // would skip its records as a newer minor's chunks and read as complete.
        if *kind == format::RECORDS_LZ4 && major < 3 {
            return Err(err(*at, format!("chunk {} holds LZ4 records, which format {major}.{minor} does not have (a damaged version?)", i + 1)));
        }
        if *kind == format::RECORDS_LZ4 {
            let plain = format::decompress(&data[body.clone()]).ok_or_else(|| err(*at, format!("records chunk {} does not decompress", i + 1)))?;
            *body = data.len()..data.len() + plain.len();
            *kind = format::RECORDS;
            data.extend_from_slice(&plain);
        }
    }
    // A SEED_PACKED chunk's body, joined with the SEED_MORE chunks right after it: decoded
    // at the first chunk of another kind (or the end).
    let mut packed: Option<(usize, Range<usize>, Vec<u8>)> = None;
    for (i, (at, kind, body)) in chunks.iter().enumerate().skip(1) {
        let (at, b) = (*at, body.clone());
        if rec.trailer.is_some() {
            return Err(err(at, format!("chunk {} follows the trailer", i + 1)));
        }
        if *kind == format::SEED_MORE {
            let (_, first, more) = packed.as_mut().ok_or_else(|| err(at, format!("seed chunk {} continues no seed", i + 1)))?;
            if more.is_empty() {
                more.extend_from_slice(&data[first.clone()]);
            }
            more.extend_from_slice(&data[b]);
            continue;
        }
        if let Some((at, first, more)) = packed.take() {
            let body = if more.is_empty() { &data[first] } else { &more[..] };
            rec.seed = Some(format::seed_from_body(body).map_err(|e| err(at, format!("seed undecodable: {e}")))?);
        }
        let seen = rec.seed.is_some() || packed.is_some();
        match *kind {
            format::HEADER => return Err(err(at, format!("chunk {} is a second header", i + 1))),
            format::SYMBOLS => symbols(&data, b, &mut rec.symbols).map_err(|o| err(o, format!("symbols chunk {} malformed", i + 1)))?,
            format::RECORDS => {
                rec.last_ms = records(&data, b, &mut rec.records).map_err(|o| err(o, format!("records chunk {} malformed", i + 1)))?;
                rec.stamps.push((rec.records.len(), rec.last_ms));
            }
            // Written before the first record: anywhere else its place in the stream is lost.
            format::SEED | format::SEED_SCOPE | format::SEED_PACKED if seen => return Err(err(at, format!("chunk {} is a second seed", i + 1))),
            format::SEED | format::SEED_SCOPE | format::SEED_PACKED if !rec.records.is_empty() => {
                return Err(err(at, format!("seed chunk {} follows records", i + 1)))
            }
            format::SEED_PACKED => packed = Some((at, b, Vec::new())),
            format::SEED | format::SEED_SCOPE => {
                let s: SeedRec = serde_json::from_slice(&data[b]).map_err(|e| err(at, format!("seed undecodable: {e}")))?;
                // Before 3.1 the whole pass: held as a 3.1 trace holds it.
                rec.seed = Some(if *kind == format::SEED { s.scope() } else { s });
            }
            format::TRAILER => {
                rec.trailer = Some(serde_json::from_slice(&data[b]).map_err(|e| err(at, format!("trailer undecodable: {e}")))?);
            }
            // A newer minor version's chunk: skipped (docs/recording.md).
            _ => {}
        }
    }
    if let Some((at, first, more)) = packed.take() {
        let body = if more.is_empty() { &data[first] } else { &more[..] };
        rec.seed = Some(format::seed_from_body(body).map_err(|e| err(at, format!("seed undecodable: {e}")))?);
    }
    if let (Some(_), Some(c)) = (&rec.trailer, cut) {
        return Err(err(c, "bytes after the trailer".into()));
    }
    rec.data = data;
    Ok(rec)
}

/// Err: the offset of the malformed entry.
fn symbols(d: &[u8], b: Range<usize>, out: &mut Vec<(u64, String)>) -> Result<(), usize> {
    let mut p = b.start;
    while p < b.end {
        if b.end - p < 10 {
            return Err(p);
        }
        let (addr, n) = (u64_at(d, p), u16_at(d, p + 8) as usize);
        let name = d.get(p + 10..p + 10 + n).filter(|_| p + 10 + n <= b.end).ok_or(p)?;
        out.push((addr, std::str::from_utf8(name).map_err(|_| p)?.to_string()));
        p += 10 + n;
    }
    Ok(())
}

/// The chunk's stamp; Err: the offset of the malformed record.
fn records(d: &[u8], b: Range<usize>, out: &mut Vec<Range<usize>>) -> Result<u64, usize> {
    if b.len() < 8 {
        return Err(b.start);
    }
    let stamp = u64_at(d, b.start);
    let mut p = b.start + 8;
    while p < b.end {
        if b.end - p < 4 {
            return Err(p);
        }
        let n = u32_at(d, p) as usize;
        if n > b.end - p - 4 {
            return Err(p);
        }
        out.push(p + 4..p + 4 + n);
        p += 4 + n;
    }
    Ok(stamp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::writer::Writer;
    use crate::trace::ingest::symbols::Symbols;
    use proptest::prelude::*;

    fn header() -> Header {
        format::tests_header()
    }

    fn trailer() -> Trailer {
        Trailer {
            ended_by: "command exit".into(),
            exit_status: Some(0),
            signal: None,
            elapsed_ms: 7,
            sent: 5,
            lost: 0,
            records: 0,
            lock_counters: None,
            kernel_counts: None,
        }
    }

    /// A recording made by the real writer: 5 records over 2 record chunks, with symbols.
    fn sample() -> Vec<u8> {
        let path = std::env::temp_dir().join(format!("lazyvma-reader-{}-{:?}.rec", std::process::id(), std::thread::current().id()));
        let mut syms = Symbols::parse("ffffffff81000000 T a\nffffffff81000100 T b\nffffffff81000200 T c\n").unwrap();
        syms.track();
        let mut w = Writer::create(&path).unwrap();
        w.header(&header()).unwrap();
        for i in 0..5u8 {
            syms.name(0xffffffff81000100 + i as u64);
            w.record(&[i; 40], &syms);
            if i == 2 {
                w.flush(&syms).unwrap();
            }
        }
        w.finish(&syms, trailer()).unwrap();
        let data = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        data
    }

    /// Offsets where each chunk ends.
    fn ends(d: &[u8]) -> Vec<usize> {
        let mut p = PREAMBLE;
        let mut v = vec![];
        while p < d.len() {
            p += CHUNK_HEAD + u32_at(d, p) as usize;
            v.push(p);
        }
        v
    }

    #[test]
    fn a_whole_recording_reads_back() {
        let r = read("s", sample()).unwrap();
        assert_eq!(r.header, header());
        assert_eq!(r.trailer, Some(Trailer { records: 5, ..trailer() }));
        assert_eq!(r.records().map(|b| b[0]).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
        assert!(r.records().all(|b| b.len() == 40));
        // b named the frames, c bounds b (a frame past b's end would have no name).
        assert_eq!(r.symbols, vec![(0xffffffff81000100, "b".to_string()), (0xffffffff81000200, "c".to_string())]);
        // header, symbols, records, records, trailer
        assert_eq!((r.chunks, r.lost_bytes), (5, 0));
    }

    #[test]
    fn a_cut_reads_up_to_the_last_complete_chunk() {
        let d = sample();
        let e = ends(&d);
        // Cut inside the second records chunk: the first one's 3 records remain.
        let r = read("s", d[..e[3] - 5].to_vec()).unwrap();
        assert_eq!((r.record_count(), r.chunks, r.lost_bytes, r.complete()), (3, 3, e[3] - 5 - e[2], false));
        // At a chunk boundary: nothing lost but no trailer.
        let r = read("s", d[..e[3]].to_vec()).unwrap();
        assert_eq!((r.record_count(), r.lost_bytes, r.complete()), (5, 0, false));
        // The last chunk whole but its crc bad, nothing after: a cut too.
        let mut bad = d.clone();
        *bad.last_mut().unwrap() ^= 1;
        let r = read("s", bad).unwrap();
        assert_eq!((r.record_count(), r.lost_bytes, r.complete()), (5, d.len() - e[3], false));
    }

    #[test]
    fn corruption_is_an_error_naming_file_and_offset() {
        let d = sample();
        let e = ends(&d);
        let msg = |d: Vec<u8>| read("f.rec", d).err().map(|e| e.to_string()).unwrap_or_default();
        let mut bad = d.clone();
        bad[e[2] + 20] ^= 0x40;
        assert_eq!(msg(bad), format!("recording f.rec: chunk 4 fails its crc at offset {}", e[2]));
        let mut bad = d.clone();
        bad[0] = b'X';
        assert_eq!(msg(bad), "recording f.rec: not a lazyvma recording (bad magic) at offset 0");
        let mut bad = d.clone();
        bad[8] = 4;
        assert_eq!(msg(bad), format!("recording f.rec: format version 4.{}; this lazyvma reads 1.x to 3.x at offset 8", format::MINOR));
        // A 1.x file (before the slim slab records and LZ4: plain records chunks) is read.
        let mut old = format::preamble().to_vec();
        old[8] = 1;
        let mut p = PREAMBLE;
        while p < d.len() {
            let end = p + CHUNK_HEAD + u32_at(&d, p) as usize;
            old.extend_from_slice(&match d[p + CHUNK_HEAD] {
                format::RECORDS_LZ4 => format::chunk(format::RECORDS, &format::decompress(&d[p + CHUNK_HEAD + 1..end]).unwrap()),
                _ => d[p..end].to_vec(),
            });
            p = end;
        }
        assert_eq!(read("f.rec", old).map(|r| (r.major, r.record_count(), r.complete())).ok(), Some((1, 5, true)));
        // This 3.x file with its major damaged to 1 or 2 (the preamble has no crc): its LZ4
        // records are no 1.x or 2.x chunk, never skipped as a newer minor's.
        for major in [1, 2] {
            let mut damaged = d.clone();
            damaged[8] = major;
            assert!(msg(damaged).contains(&format!("holds LZ4 records, which format {major}.{} does not have", format::MINOR)));
        }
        assert!(msg(d[..PREAMBLE + 3].to_vec()).contains("no complete header chunk"));
        let mut more = d.clone();
        more.extend_from_slice(&format::chunk(format::RECORDS, &[0; 8]));
        assert!(msg(more).contains("chunk 6 follows the trailer"));
        let mut hdr = format::preamble().to_vec();
        hdr.extend_from_slice(&format::chunk(format::HEADER, b"{}"));
        assert!(msg(hdr).contains("header undecodable"));
        assert!(msg(b"hello world, not a recording".to_vec()).contains("bad magic"));
    }

    #[test]
    fn compressed_records_are_bounded_and_checked() {
        let plain: Vec<u8> = (0..4000u32).map(|i| (i % 7) as u8).collect();
        let z = format::compress(&plain);
        assert!(z.len() < plain.len() / 4, "{} bytes", z.len());
        assert_eq!(format::decompress(&z).as_deref(), Some(&plain[..]));
        // A stated length over MAX_CHUNK is refused before it is allocated.
        let mut big = z.clone();
        big[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(format::decompress(&big), None);
        // A block that decodes to less than it states, and a body too short for the length.
        let mut short = z.clone();
        short[..4].copy_from_slice(&4001u32.to_le_bytes());
        assert_eq!(format::decompress(&short), None);
        assert_eq!(format::decompress(&[1, 2]), None);
        // In a file: the chunk is named.
        let mut d = format::preamble().to_vec();
        d.extend_from_slice(&format::chunk(format::HEADER, &serde_json::to_vec(&header()).unwrap()));
        d.extend_from_slice(&format::chunk(format::RECORDS_LZ4, &short));
        let e = read("f.rec", d).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.starts_with("recording f.rec: records chunk 2 does not decompress at offset"), "{e}");
    }

    #[test]
    fn a_newer_minor_version_and_unknown_chunks_are_read() {
        let mut d = sample();
        d[10] = 7;
        let t = d.split_off(ends(&d)[3]);
        d.extend_from_slice(&format::chunk(42, b"later"));
        d.extend_from_slice(&t);
        let r = read("s", d).unwrap();
        assert_eq!((r.minor, r.record_count(), r.complete()), (7, 5, true));
    }

    fn seed_rec() -> SeedRec {
        let mut topology = lazyvma_model::topology::Topology::default();
        topology.processes.push(lazyvma_model::topology::ProcessTopo { pid: 100, ..Default::default() });
        SeedRec { tgid: 7, topology, candidates: vec![100, 200], reasons: [(200, "thread 201 was running".to_string())].into(), pass_us: None }
    }

    /// `sample()` with a seed chunk after the header (the writer's order).
    fn seeded() -> Vec<u8> {
        let d = sample();
        let e = ends(&d);
        let mut out = d[..e[0]].to_vec();
        out.extend_from_slice(&format::chunk(format::SEED, &serde_json::to_vec(&seed_rec()).unwrap()));
        out.extend_from_slice(&d[e[0]..]);
        out
    }

    #[test]
    fn a_seed_reads_back_and_must_come_before_the_records() {
        let r = read("s", seeded()).unwrap();
        assert_eq!((&r.seed, r.record_count(), r.complete()), (&Some(seed_rec()), 5, true));
        // A recording without one (format 1.0, or not -p) has none.
        assert_eq!(read("s", sample()).unwrap().seed, None);
        let d = sample();
        let e = ends(&d);
        let seed = format::chunk(format::SEED, &serde_json::to_vec(&seed_rec()).unwrap());
        let mut late = d[..e[2]].to_vec();
        late.extend_from_slice(&seed);
        late.extend_from_slice(&d[e[2]..]);
        assert!(read("f", late).err().unwrap().to_string().contains("seed chunk 4 follows records"));
        let mut two = seeded();
        let at = ends(&two)[1];
        two.splice(at..at, seed.iter().copied());
        assert!(read("f", two).err().unwrap().to_string().contains("chunk 3 is a second seed"));
        let mut bad = d[..e[0]].to_vec();
        bad.extend_from_slice(&format::chunk(format::SEED, b"{}"));
        assert!(read("f", bad).err().unwrap().to_string().contains("seed undecodable"));
    }

    /// A 3.2 seed: one `SEED_PACKED` chunk, or its body cut across `SEED_MORE` chunks after
    /// it, reads back as the seed written; a continuation of nothing or a damaged body is
    /// an error.
    #[test]
    fn a_packed_seed_reads_back_whole_or_in_pieces() {
        let s = seed_rec();
        let body = format::seed_body(s.tgid, &s.topology, &s.candidates, &s.reasons, Some(5));
        let want = SeedRec { pass_us: Some(5), ..s };
        let d = sample();
        let e = ends(&d);
        let with = |chunks: &[(u8, &[u8])]| {
            let mut f = d[..e[0]].to_vec();
            for (k, b) in chunks {
                f.extend_from_slice(&format::chunk(*k, b));
            }
            f.extend_from_slice(&d[e[0]..]);
            read("s", f)
        };
        let r = with(&[(format::SEED_PACKED, &body)]).unwrap();
        assert_eq!((r.seed.as_ref(), r.record_count()), (Some(&want), 5));
        let (a, rest) = body.split_at(3);
        let (b, c) = rest.split_at(rest.len() / 2);
        let r = with(&[(format::SEED_PACKED, a), (format::SEED_MORE, b), (format::SEED_MORE, c)]).unwrap();
        assert_eq!(r.seed.as_ref(), Some(&want));
        assert!(with(&[(format::SEED_MORE, &body)]).err().unwrap().to_string().contains("seed chunk 2 continues no seed"));
        assert!(with(&[(format::SEED_PACKED, a)]).err().unwrap().to_string().contains("seed undecodable"));
        assert!(with(&[(format::SEED_PACKED, &body), (format::SEED_PACKED, &body)]).err().unwrap().to_string().contains("chunk 3 is a second seed"));
    }

    /// A 3.0 seed chunk held the whole pass: read, it is reduced to the candidates' size as a
    /// 3.1 trace writes it (`SEED_SCOPE`), which reads back as written.
    #[test]
    fn a_whole_pass_seed_is_reduced_on_load() {
        use lazyvma_model::topology::{AnonVmaInfo, ProcessTopo, VmaTopo};
        let mut whole = seed_rec();
        let vma = |av: u64, chain: Vec<u64>| VmaTopo { anon_vma: Some(av), chain_len: chain.len() as u32, chain, ..Default::default() };
        let t = &mut whole.topology;
        t.processes[0].vmas.push(vma(0xa, vec![0xa]));
        t.processes.push(ProcessTopo { pid: 300, vmas: vec![vma(0xb, vec![0xb, 0xa])], ..Default::default() });
        t.processes.push(ProcessTopo { pid: 400, vmas: vec![vma(0xc, vec![0xc])], ..Default::default() });
        for (av, root) in [(0xa, 0xa), (0xb, 0xa), (0xc, 0xc)] {
            t.anon_vmas.insert(av, AnonVmaInfo { root, parent: root, refcount: 1, ..Default::default() });
        }
        let d = sample();
        let e = ends(&d);
        for kind in [format::SEED, format::SEED_SCOPE] {
            let body = if kind == format::SEED { whole.clone() } else { whole.clone().scope() };
            let mut f = d[..e[0]].to_vec();
            f.extend_from_slice(&format::chunk(kind, &serde_json::to_vec(&body).unwrap()));
            f.extend_from_slice(&d[e[0]..]);
            let s = read("s", f).unwrap().seed.unwrap();
            let t = &s.topology;
            assert_eq!(t.processes.iter().map(|p| p.pid).collect::<Vec<_>>(), [100], "kind {kind}");
            assert_eq!((t.anon_vmas.len(), t.foreign.linked.as_slice(), t.foreign.roots.as_slice()), (1, &[0xa][..], &[(0xa, 300)][..]));
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(d in proptest::collection::vec(any::<u8>(), 0..300), magic in any::<bool>()) {
            let mut d = d;
            if magic {
                let mut p = format::preamble().to_vec();
                p.extend_from_slice(&d);
                d = p;
            }
            let _ = read("r", d);
        }

        #[test]
        fn truncations_replay_a_prefix_or_fail_cleanly(cut in 0usize..2000) {
            let d = sample();
            let cut = cut.min(d.len());
            match read("r", d[..cut].to_vec()) {
                Ok(r) => {
                    prop_assert_eq!(r.complete(), cut == d.len());
                    prop_assert!(r.records().enumerate().all(|(i, b)| b == [i as u8; 40]));
                }
                Err(e) => prop_assert!(cut < ends(&d)[0], "{e}"),
            }
        }

        #[test]
        fn bit_flips_never_panic_and_never_pass_silently(at in 0usize..2000, bit in 0u8..8) {
            let d = sample();
            let at = at % d.len();
            let mut bad = d.clone();
            bad[at] ^= 1 << bit;
            if let Ok(r) = read("r", bad) {
                // Only a flip the reader cannot see as wrong is tolerated: in the last
                // chunk (then a cut) or the version's minor, or a length now past the end.
                prop_assert!(!r.complete() || (10..12).contains(&at), "flip at {at} read as complete");
            }
        }
    }
}
