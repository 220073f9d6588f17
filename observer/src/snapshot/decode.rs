//! The record stream of one pass, read in chunks as the kernel writes it (never held
//! whole: ≥ 1 M VMAs are ~200 MB of records), handed on one VMA at a time with its chain;
//! and the [`Topology`] built from it for what needs every VMA (`--topology`, the seed).
use lazyvma_model::abi::{record_size, AvRecord, AvcRecord, CutRecord, VmaRecord, FIELD_ABSENT, REC_AV, REC_AVC, REC_CUT, TRUNC_RESUMED};
use lazyvma_model::topology::{AnonVmaInfo, ForeignBuilder, ProcessTopo, Topology, VmaTopo};
use std::collections::{HashMap, HashSet};
use std::io::Read;

#[derive(Debug, Default, serde::Serialize)]
pub struct PassStats {
    /// `iter/task_vma`, or `iter/task` on kernels without it.
    pub program: &'static str,
    pub bytes: usize,
    pub records: usize,
    /// The same VMA reported by more than one task (kept once).
    pub duplicate_vmas: usize,
    /// Processes whose VMA list the pass did not walk to its end (`iter/task` only).
    pub cut: Vec<Cut>,
    /// `iter/task`: the passes taken (a process cut in one is resumed in the next).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passes: Option<u64>,
}

/// A process the `iter/task` pass stopped walking early: its estimate is incomplete.
#[derive(Clone, Debug, serde::Serialize, PartialEq, Eq)]
pub struct Cut {
    pub pid: u32,
    pub tid: u32,
    /// VMA records written for it, and `mm->map_count` (the VMAs it has).
    pub vmas_seen: u64,
    pub map_count: u64,
    /// `steps`: the walk's bound ([`lazyvma_model::abi::WALK_STEPS`]); `changed`: a VMA left
    /// the mm during the walk (no mmap_lock is held), or the task was cut in one pass and
    /// gone (exited, exec'd) by the next; `buffer`: one task's records fill the kernel's
    /// 32 KiB seq_file buffer (`steps` and `buffer` only where no resume entry could be
    /// stored); `passes`: still unfinished after [`lazyvma_model::abi::WALK_PASSES`] passes.
    pub why: &'static str,
}

impl From<&CutRecord> for Cut {
    fn from(c: &CutRecord) -> Cut {
        Cut {
            pid: c.pid,
            tid: c.tid,
            vmas_seen: c.vmas,
            map_count: c.map_count,
            why: match c.raced {
                0 => "steps",
                1 => "changed",
                2 => "buffer",
                _ => "passes",
            },
        }
    }
}

pub fn comm(raw: &[u8; 16]) -> String {
    String::from_utf8_lossy(&raw[..raw.iter().position(|&b| b == 0).unwrap_or(16)]).into_owned()
}

fn opt(v: u64) -> Option<u64> {
    (v != FIELD_ABSENT).then_some(v)
}

fn read<T: Copy>(bytes: &[u8]) -> T {
    // SAFETY: callers check the length; the records are plain integers valid for any bit pattern.
    unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) }
}

/// Every VMA record of `src` with the chain entries written before it (an [`AvRecord`]
/// comes as an [`AvcRecord`] of kind `REC_AV` holding the address alone). An unknown tag or
/// a partial record at the end is an error naming the byte offset: the stream is never
/// silently cut.
///
/// `ahead` is shown every chain entry's anon_vma of a read before any of its VMAs is
/// handed on: a hash index can prefetch them (its lookups are the pass's cache misses).
///
/// `src` is read on a thread of its own while the records already read are decoded here:
/// a read of the iterator runs the BPF program over the next VMAs (the pass's kernel time,
/// ~3/4 of it at 1 M VMAs), so the two overlap on a machine with a CPU to spare instead of
/// adding up. At most [`CHUNKS`] reads wait, so the memory stays a few chunks whatever the
/// pass's size.
pub fn each_vma(src: impl Read + Send, stats: &mut PassStats, ahead: impl FnMut(u64), f: impl FnMut(&VmaRecord, &[AvcRecord])) -> anyhow::Result<()> {
    let (full_tx, full) = std::sync::mpsc::sync_channel::<std::io::Result<(Vec<u8>, usize)>>(CHUNKS);
    let (empty_tx, empty) = std::sync::mpsc::channel::<Vec<u8>>();
    for _ in 0..CHUNKS + 1 {
        // Cannot fail: the receiver is alive.
        let _ = empty_tx.send(vec![0u8; CHUNK]);
    }
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut src = src;
            // Ends when the stream does, on an error, or when the decoder stopped (its
            // channel ends closed). A chunk takes several reads: one hand-over (a wake-up of
            // the other thread) per chunk, not per 32 KiB.
            while let Ok(mut b) = empty.recv() {
                let (mut got, mut end) = (0, false);
                let r = loop {
                    match src.read(&mut b[got..]) {
                        Ok(0) => {
                            end = true;
                            break Ok(got);
                        }
                        Ok(n) => {
                            got += n;
                            if b.len() - got < READ {
                                break Ok(got);
                            }
                        }
                        Err(e) => break Err(e),
                    }
                };
                let last = r.is_err() || (end && got == 0);
                if full_tx.send(r.map(|n| (b, n))).is_err() || last {
                    return;
                }
                if end {
                    let _ = full_tx.send(Ok((Vec::new(), 0)));
                    return;
                }
            }
        });
        // Dropped before the scope joins the reader: a decoder that stopped early (a bad
        // record) must not leave it waiting for a buffer.
        let (full, empty_tx) = (full, empty_tx);
        let r = decode_chunks(|| full.recv().unwrap_or(Ok((Vec::new(), 0))), |b| drop(empty_tx.send(b)), stats, ahead, f);
        drop((full, empty_tx));
        r
    })
}

/// Chunks in flight between [`each_vma`]'s reader and its decoder, and their size.
const CHUNKS: usize = 4;
const CHUNK: usize = 256 << 10;
/// A read of the iterator returns at most the kernel's seq_file buffer (32 KiB); the decoder
/// takes a chunk in pieces of this size, so the entries `ahead` prefetched are still cached
/// when their VMAs come.
const READ: usize = 32 << 10;

/// [`each_vma`]'s decoder: `next` gives the next read (`(buffer, bytes)`, 0 bytes at the
/// end), `done` takes its buffer back.
fn decode_chunks(
    mut next: impl FnMut() -> std::io::Result<(Vec<u8>, usize)>,
    mut done: impl FnMut(Vec<u8>),
    stats: &mut PassStats,
    mut ahead: impl FnMut(u64),
    mut f: impl FnMut(&VmaRecord, &[AvcRecord]),
) -> anyhow::Result<()> {
    let err = |e: String| anyhow::anyhow!("iter/task_vma stream: {e}");
    // A piece of a chunk, after what the previous piece left of a record (less than one).
    let mut buf = vec![0u8; READ + 256];
    let (mut have, mut at) = (0usize, 0usize);
    let mut chain: Vec<AvcRecord> = Vec::with_capacity(lazyvma_model::abi::CHAIN_EMIT_MAX as usize);
    // The chunk being taken: its buffer, its bytes, how far it was taken.
    let mut cur: Option<(Vec<u8>, usize, usize)> = None;
    loop {
        let n = loop {
            match &mut cur {
                Some((b, len, from)) if *from < *len => {
                    let k = (*len - *from).min(READ);
                    buf[have..have + k].copy_from_slice(&b[*from..*from + k]);
                    *from += k;
                    break k;
                }
                _ => {
                    if let Some((b, _, _)) = cur.take() {
                        done(b);
                    }
                    let (b, len) = next().map_err(|e| anyhow::anyhow!("reading the iter/task_vma stream: {e}"))?;
                    if len == 0 {
                        break 0;
                    }
                    cur = Some((b, len, 0));
                }
            }
        };
        // What one piece added (≤ 32 KB, ~2,000 entries: their lines stay in cache).
        have += n;
        let mut at_rec = 0;
        while have - at_rec >= 4 {
            let Some(size) = record_size(read::<u32>(&buf[at_rec..])) else { break };
            if have - at_rec < size {
                break;
            }
            match read::<u32>(&buf[at_rec..]) {
                REC_AVC => ahead(read::<AvcRecord>(&buf[at_rec..]).anon_vma),
                REC_AV => ahead(read::<AvRecord>(&buf[at_rec..]).anon_vma),
                _ => {}
            }
            at_rec += size;
        }
        let mut off = 0;
        while have - off >= 4 {
            let rec = &buf[off..have];
            let kind = read::<u32>(rec);
            let Some(size) = record_size(kind) else {
                return Err(err(format!("unknown record kind {kind} at offset {}", at + off)));
            };
            if rec.len() < size {
                break;
            }
            match kind {
                REC_AVC => chain.push(read(rec)),
                REC_AV => chain.push(AvcRecord { kind, anon_vma: read::<AvRecord>(rec).anon_vma, ..Default::default() }),
                REC_CUT => stats.cut.push(Cut::from(&read::<CutRecord>(rec))),
                // A VMA the iter/task pass stopped in: the next pass writes it whole.
                _ if read::<VmaRecord>(rec).truncated == TRUNC_RESUMED => chain.clear(),
                _ => {
                    f(&read(rec), &chain);
                    chain.clear();
                }
            }
            stats.records += 1;
            off += size;
        }
        buf.copy_within(off..have, 0);
        have -= off;
        at += off;
        if n == 0 {
            break;
        }
    }
    stats.bytes = at + have;
    if have > 0 {
        let what = if have < 4 { format!("{have} stray bytes") } else { "record cut short".into() };
        return Err(err(format!("{what} at offset {at}")));
    }
    if !chain.is_empty() {
        anyhow::bail!("iter/task_vma stream ends with {} chain entries and no VMA record", chain.len());
    }
    Ok(())
}

/// VMAs grouped per mm (threads and CLONE_VM siblings fold into the first task seen),
/// each with its chain, and every anon_vma seen.
#[derive(Default)]
pub struct TopoBuilder {
    pub topo: Topology,
    by_mm: HashMap<u64, usize>,
    seen: HashSet<u64>,
    pub duplicates: usize,
}

impl TopoBuilder {
    pub fn vma(&mut self, v: &VmaRecord, avcs: &[AvcRecord]) {
        for a in avcs {
            self.topo.anon_vmas.entry(a.anon_vma).or_insert(AnonVmaInfo {
                root: a.root,
                parent: a.parent,
                refcount: i64::from(a.refcount),
                num_children: opt(a.num_children).unwrap_or(0),
                num_active_vmas: opt(a.num_active_vmas).unwrap_or(0),
                degree: opt(a.degree),
            });
        }
        if !self.seen.insert(v.vma) {
            self.duplicates += 1;
            return;
        }
        let topo = &mut self.topo;
        let idx = *self.by_mm.entry(v.mm).or_insert_with(|| {
            topo.processes.push(ProcessTopo { pid: v.pid, comm: comm(&v.comm), mm: v.mm, ..Default::default() });
            topo.processes.len() - 1
        });
        topo.processes[idx].vmas.push(vma_topo(v, avcs));
    }
}

pub fn vma_topo(v: &VmaRecord, avcs: &[AvcRecord]) -> VmaTopo {
    VmaTopo {
        start: v.vm_start,
        end: v.vm_end,
        pgoff: v.vm_pgoff,
        flags: v.vm_flags,
        anon_vma: (v.anon_vma != 0).then_some(v.anon_vma),
        chain: avcs.iter().map(|a| a.anon_vma).collect(),
        chain_len: v.chain_len as u32,
    }
}

/// The whole [`Topology`] of a pass read from `src`.
pub fn topology(src: impl Read + Send) -> anyhow::Result<(Topology, PassStats)> {
    let mut stats = PassStats::default();
    let mut b = TopoBuilder::default();
    each_vma(src, &mut stats, |_| {}, |v, c| b.vma(v, c))?;
    stats.duplicate_vmas = b.duplicates;
    // A doubling array is up to half idle; the seed holds these until the trace ends.
    for p in &mut b.topo.processes {
        p.vmas.shrink_to_fit();
    }
    Ok((b.topo, stats))
}

/// The pass as `trace -p` seeds from it: the processes `keep` takes (by the pid of the first
/// task seen with their mm, as [`topology`] names them) whole, as [`topology`] gives them;
/// the others only as far as the seed reads them ([`Topology::foreign`]), kept so while the
/// pass streams: beside a workload of 1 M VMAs outside the scope, the pass held ~120 bytes a
/// VMA and its anon_vmas' info, and a recording's seed was over its 64 MiB chunk.
///
/// An anon_vma linked by both keeps the info of the first record of a kept process that
/// links it ([`topology`]: of any process). The fields are read per chain entry, so the two
/// differ only where the anon_vma changed during the pass (the pass is no atomic view
/// either way). Duplicate VMAs are counted for the kept processes only.
pub fn scope_topology(src: impl Read + Send, keep: impl Fn(u32) -> bool) -> anyhow::Result<(ScopePass, PassStats)> {
    let mut stats = PassStats::default();
    let mut b = TopoBuilder::default();
    let mut f = ForeignBuilder::default();
    // Per mm: its ordinal among the others, None when kept.
    let mut mms: HashMap<u64, Option<u32>> = HashMap::new();
    each_vma(
        src,
        &mut stats,
        |_| {},
        |v, c| {
            let ord = *mms.entry(v.mm).or_insert_with(|| (!keep(v.pid)).then(|| f.process(v.pid)));
            match ord {
                None => b.vma(v, c),
                Some(o) => f.vma(o, c.iter().map(|a| (a.anon_vma, a.root))),
            }
        },
    )?;
    stats.duplicate_vmas = b.duplicates;
    for p in &mut b.topo.processes {
        p.vmas.shrink_to_fit();
    }
    Ok((ScopePass { topo: b.topo, foreign: f }, stats))
}

/// [`scope_topology`]'s pass before its other processes are sorted ([`ScopePass::finish`]):
/// `trace -p` does that after its end marker, outside the window the pass races in.
pub struct ScopePass {
    topo: Topology,
    foreign: ForeignBuilder,
}

impl ScopePass {
    pub fn finish(self) -> Topology {
        let mut topo = self.topo;
        topo.foreign = self.foreign.finish(&topo);
        topo
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lazyvma_model::abi::REC_VMA;

    fn bytes<T>(v: &T) -> &[u8] {
        // SAFETY: plain integer records.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
    }

    /// Hands out at most `n` bytes per read, as the kernel's seq_file does.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = self.1.min(self.0.len()).min(out.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn records_across_reads_and_garbage() {
        let a = AvcRecord { kind: REC_AVC, refcount: 2, vma: 7, anon_vma: 8, ..Default::default() };
        let v = VmaRecord { kind: REC_VMA, pid: 1, chain_len: 1, vma: 7, anon_vma: 8, mm: 3, ..Default::default() };
        let mut s = Vec::new();
        for i in 0..5000u64 {
            s.extend_from_slice(bytes(&a));
            s.extend_from_slice(bytes(&VmaRecord { vma: i, ..v }));
        }
        for chunk in [1, 7, 100, 1 << 20] {
            let (t, st) = topology(Trickle(&s, chunk)).unwrap();
            assert_eq!((t.processes.len(), t.processes[0].vmas.len(), st.records, st.bytes), (1, 5000, 10000, s.len()));
            assert_eq!(t.processes[0].vmas[4].chain, vec![8]);
        }
        let cut = topology(&s[..s.len() - 1]).unwrap_err().to_string();
        assert!(cut.contains(&format!("record cut short at offset {}", s.len() - 96)), "{cut}");
        assert!(topology(&[9u8, 0, 0, 0][..]).unwrap_err().to_string().contains("unknown record kind 9 at offset 0"));
        assert!(topology(&s[..66]).unwrap_err().to_string().contains("2 stray bytes at offset 64"));
        assert!(topology(bytes(&a)).unwrap_err().to_string().contains("ends with 1 chain entries"));
        // A VMA is handed on with the entries before it, each record whole (an AvRecord
        // as an AvcRecord holding the address alone).
        let av = AvRecord { kind: REC_AV, anon_vma: 9, ..Default::default() };
        let mut s = bytes(&a).to_vec();
        s.extend_from_slice(bytes(&av));
        s.extend_from_slice(bytes(&v));
        let mut got = vec![];
        each_vma(&s[..], &mut PassStats::default(), |_| {}, |v, c| got.push((*v, c.to_vec()))).unwrap();
        assert_eq!(got, vec![(v, vec![a, AvcRecord { kind: REC_AV, anon_vma: 9, ..Default::default() }])]);
        // A VMA an iter/task pass stopped in goes, with its entries; the next pass's copy stays.
        let mut s = bytes(&a).to_vec();
        s.extend_from_slice(bytes(&VmaRecord { truncated: TRUNC_RESUMED, ..v }));
        s.extend_from_slice(bytes(&av));
        s.extend_from_slice(bytes(&v));
        let mut got = vec![];
        each_vma(&s[..], &mut PassStats::default(), |_| {}, |v, c| got.push((*v, c.len()))).unwrap();
        assert_eq!(got, vec![(v, 1)]);
    }

    /// The scope's form of a pass reads, for the kept processes, as the whole pass reduced.
    #[test]
    fn the_scope_s_pass_is_the_whole_pass_reduced() {
        let avc = |vma: u64, av: u64, root: u64| AvcRecord { kind: REC_AVC, refcount: 1, vma, anon_vma: av, root, parent: root, ..Default::default() };
        let vma =
            |pid: u32, mm: u64, vma: u64, av: u64, len: u64| VmaRecord { kind: REC_VMA, pid, chain_len: len, vma, anon_vma: av, mm, ..Default::default() };
        let mut s = Vec::new();
        // 1 (kept) and its child 2 (not) share A's tree; 3 (not) shares nothing; 4 (kept)
        // is a thread of 3's mm: 3 named it first, so it is not kept either.
        s.extend_from_slice(bytes(&avc(10, 0xa, 0xa)));
        s.extend_from_slice(bytes(&vma(1, 100, 10, 0xa, 1)));
        s.extend_from_slice(bytes(&avc(20, 0xb, 0xa)));
        s.extend_from_slice(bytes(&avc(20, 0xa, 0xa)));
        s.extend_from_slice(bytes(&vma(2, 200, 20, 0xb, 2)));
        s.extend_from_slice(bytes(&avc(30, 0xc, 0xc)));
        s.extend_from_slice(bytes(&vma(3, 300, 30, 0xc, 1)));
        s.extend_from_slice(bytes(&avc(31, 0xc, 0xc)));
        s.extend_from_slice(bytes(&vma(4, 300, 31, 0xc, 1)));
        s.extend_from_slice(bytes(&avc(10, 0xa, 0xa)));
        s.extend_from_slice(bytes(&vma(1, 100, 10, 0xa, 1)));
        let keep = |p: u32| p == 1 || p == 4;
        let (t, st) = scope_topology(&s[..], keep).unwrap();
        let t = t.finish();
        let (mut whole, _) = topology(&s[..]).unwrap();
        whole.reduce(keep);
        assert_eq!(t, whole);
        assert_eq!((t.processes.len(), t.foreign.linked.as_slice(), t.foreign.roots.as_slice(), st.duplicate_vmas), (1, &[0xa][..], &[(0xa, 2)][..], 1));
    }
}
