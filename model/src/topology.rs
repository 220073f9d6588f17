//! The anon_vma topology of a set of processes as read by one `iter/task_vma` pass.
//! Kernel addresses identify objects; they are only compared, never dereferenced.

use std::collections::BTreeMap;

/// One `struct anon_vma` as seen during the pass.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AnonVmaInfo {
    pub root: u64,
    pub parent: u64,
    pub refcount: i64,
    /// `num_children`; on kernels before 6.0 the single `degree` field, see `degree`.
    pub num_children: u64,
    pub num_active_vmas: u64,
    /// Pre-6.0 kernels: `degree`, with `num_children`/`num_active_vmas` zero.
    pub degree: Option<u64>,
}

/// One VMA.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VmaTopo {
    pub start: u64,
    pub end: u64,
    pub pgoff: u64,
    pub flags: u64,
    /// `vma->anon_vma`.
    pub anon_vma: Option<u64>,
    /// `vma->anon_vma_chain` as anon_vma addresses, newest first (root last), as far as
    /// the bounded walk went.
    pub chain: Vec<u64>,
    /// True length of the chain; larger than `chain.len()` when the walk was cut short.
    pub chain_len: u32,
}

/// One process (one mm; threads are folded into their leader).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessTopo {
    pub pid: u32,
    pub comm: String,
    pub mm: u64,
    pub cgroup_id: u64,
    pub vmas: Vec<VmaTopo>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Topology {
    pub processes: Vec<ProcessTopo>,
    /// Every anon_vma reached from any chain of `processes`, by address.
    pub anon_vmas: BTreeMap<u64, AnonVmaInfo>,
    /// What is kept of the pass's other processes where only some are seeded (`trace -p`):
    /// empty when `processes` is the whole pass.
    #[serde(default, skip_serializing_if = "Foreign::is_empty")]
    pub foreign: Foreign,
}

/// The processes of a pass outside the ones a seed may take, as far as the seed reads them
/// (`snapshot::classify`: a VMA is TREE when another mm links its anon_vma; `trace -p`'s
/// `others`: a seeded process sharing a tree with one not seeded is flagged), and only where
/// they meet the kept processes (the anon_vmas those reference, their trees' roots): the
/// scope's size, not the machine's (issue 9: 317 MiB of seed beside a 1 M-VMA workload).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Foreign {
    /// anon_vmas their chains link, sorted, deduplicated.
    pub linked: Vec<u64>,
    /// (root, pid), sorted by root, one per root: the root of each anon_vma tree their
    /// chains link (the anon_vma's `root` as the pass read it, itself when unread), with the
    /// first such process in pass order.
    pub roots: Vec<(u64, u32)>,
}

impl Foreign {
    pub fn is_empty(&self) -> bool {
        self.linked.is_empty() && self.roots.is_empty()
    }

    /// A chain of theirs links `av`.
    pub fn links(&self, av: u64) -> bool {
        self.linked.binary_search(&av).is_ok()
    }

    /// The first of them (pass order) linking the tree of `root`.
    pub fn root_pid(&self, root: u64) -> Option<u32> {
        self.roots.binary_search_by_key(&root, |e| e.0).ok().map(|at| self.roots[at].1)
    }
}

/// [`Foreign`] built a VMA at a time while a pass streams: 8 bytes a chain entry linked and
/// 16 a (root, process) pair, where a [`ProcessTopo`] held ~120 bytes a VMA with its chain
/// and the anon_vmas' info beside. Sorted once, by [`ForeignBuilder::finish`], which
/// `trace -p` calls after the pass's end marker: sorting as they grow (~2 M chain entries
/// beside manyvmas' 1 M VMAs) made the window between the markers ~15% longer.
#[derive(Default)]
pub struct ForeignBuilder {
    linked: Vec<u64>,
    /// (root, process ordinal in pass order).
    roots: Vec<(u64, u32)>,
    /// Per ordinal: its pid.
    pids: Vec<u32>,
}

impl ForeignBuilder {
    /// A new process (mm) of the pass, in pass order: its ordinal for [`ForeignBuilder::vma`].
    pub fn process(&mut self, pid: u32) -> u32 {
        self.pids.push(pid);
        (self.pids.len() - 1) as u32
    }

    /// One VMA of process `ord`: its chain as (anon_vma, root).
    pub fn vma(&mut self, ord: u32, chain: impl IntoIterator<Item = (u64, u64)>) {
        for (av, root) in chain {
            self.linked.push(av);
            // A chain's entries share one root, and neighbouring VMAs often do: one pair.
            if self.roots.last() != Some(&(root, ord)) {
                self.roots.push((root, ord));
            }
        }
    }

    /// What meets `kept`: the anon_vmas its VMAs and chains reference, the roots of their
    /// trees (`kept.anon_vmas`' `root`, the anon_vma itself when unread). Allocates for the
    /// others only (a few bytes each), not for `kept`, which may be the 1 M VMAs.
    pub fn finish(mut self, kept: &Topology) -> Foreign {
        self.linked.sort_unstable();
        self.linked.dedup();
        compact_roots(&mut self.roots);
        let (mut met_linked, mut met_roots) = (vec![false; self.linked.len()], vec![false; self.roots.len()]);
        for v in kept.processes.iter().flat_map(|p| &p.vmas) {
            if !self.linked.is_empty() {
                for a in v.anon_vma.iter().chain(&v.chain) {
                    if let Ok(i) = self.linked.binary_search(a) {
                        met_linked[i] = true;
                    }
                }
            }
            if !self.roots.is_empty() {
                for a in &v.chain {
                    let r = kept.anon_vmas.get(a).map_or(*a, |i| i.root);
                    if let Ok(i) = self.roots.binary_search_by_key(&r, |e| e.0) {
                        met_roots[i] = true;
                    }
                }
            }
        }
        let mut met = met_linked.into_iter();
        self.linked.retain(|_| met.next() == Some(true));
        self.linked.shrink_to_fit();
        let mut met = met_roots.into_iter();
        self.roots.retain(|_| met.next() == Some(true));
        let pids = self.pids;
        Foreign { linked: self.linked, roots: self.roots.into_iter().map(|(r, ord)| (r, pids[ord as usize])).collect() }
    }
}

/// Sorted by root, one per root: the lowest ordinal (the first process in pass order).
fn compact_roots(roots: &mut Vec<(u64, u32)>) {
    roots.sort_unstable();
    roots.dedup_by_key(|e| e.0);
}

impl Topology {
    /// Keeps whole only the processes `keep` takes; the others go into [`Topology::foreign`]
    /// (as far as they meet the kept ones), and the anon_vmas only they reached go. A seed of
    /// the kept processes reads the same off either form. (A topology already reduced keeps
    /// its foreign part; a process moved now comes after those in pass order.)
    pub fn reduce(&mut self, keep: impl Fn(u32) -> bool) {
        let mut b = ForeignBuilder::default();
        let (kept, gone): (Vec<ProcessTopo>, Vec<ProcessTopo>) = std::mem::take(&mut self.processes).into_iter().partition(|p| keep(p.pid));
        self.processes = kept;
        let prior = std::mem::take(&mut self.foreign);
        for p in &gone {
            let ord = b.process(p.pid);
            for v in &p.vmas {
                b.vma(ord, v.chain.iter().map(|a| (*a, self.anon_vmas.get(a).map_or(*a, |i| i.root))));
            }
        }
        drop(gone);
        let mut f = b.finish(self);
        // Kept processes reference only what they did: the earlier part is filtered already.
        f.linked.extend(prior.linked);
        f.linked.sort_unstable();
        f.linked.dedup();
        // The earlier part first: a stable sort keeps its pid where both have a root.
        let mut roots = prior.roots;
        roots.extend(f.roots);
        roots.sort_by_key(|e| e.0);
        roots.dedup_by_key(|e| e.0);
        f.roots = roots;
        self.foreign = f;
        let mut reached: Vec<u64> = self.processes.iter().flat_map(|p| &p.vmas).flat_map(|v| v.chain.iter().copied()).collect();
        reached.sort_unstable();
        reached.dedup();
        self.anon_vmas.retain(|a, _| reached.binary_search(a).is_ok());
    }
}

/// A [`Topology`] as bytes (`trace -o`'s seed, recording format 3.2): the JSON of a pass of
/// 1 M VMAs was 317 MiB, over a recording chunk's 64 MiB, and built whole beside the pass
/// (~830 MB at `trace -p -o`'s peak). Here a VMA is ~15 bytes: LEB128 varints, each VMA's
/// bounds as gaps from the one before, anon_vmas named by their position in the sorted
/// table (the anon_vma map's keys, written first), an address outside it written whole.
/// Read back it is the same `Topology` (`unpack(&pack(t)) == t`, whatever `t` holds).
pub mod packed {
    use super::{AnonVmaInfo, Foreign, ProcessTopo, Topology, VmaTopo};

    fn put(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn zigzag(v: i64) -> u64 {
        ((v << 1) ^ (v >> 63)) as u64
    }

    fn unzigzag(v: u64) -> i64 {
        (v >> 1) as i64 ^ -((v & 1) as i64)
    }

    /// An anon_vma address: 2 × (position + 1) in `keys`, or 1 and the address whole.
    fn put_ref(out: &mut Vec<u8>, keys: &[u64], a: u64) {
        match keys.binary_search(&a) {
            Ok(i) => put(out, (i as u64 + 1) << 1),
            Err(_) => {
                put(out, 1);
                out.extend_from_slice(&a.to_le_bytes());
            }
        }
    }

    /// `t` as bytes.
    pub fn pack(t: &Topology) -> Vec<u8> {
        let keys: Vec<u64> = t.anon_vmas.keys().copied().collect();
        let vmas: usize = t.processes.iter().map(|p| p.vmas.len()).sum();
        let mut out = Vec::with_capacity(16 * keys.len() + 16 * vmas + 64);
        put(&mut out, keys.len() as u64);
        let mut prev = 0u64;
        for &k in &keys {
            put(&mut out, k.wrapping_sub(prev));
            prev = k;
        }
        for i in t.anon_vmas.values() {
            put_ref(&mut out, &keys, i.root);
            put_ref(&mut out, &keys, i.parent);
            put(&mut out, zigzag(i.refcount));
            put(&mut out, i.num_children);
            put(&mut out, i.num_active_vmas);
            match i.degree {
                None => put(&mut out, 0),
                Some(d) => {
                    put(&mut out, 1);
                    put(&mut out, d);
                }
            }
        }
        put(&mut out, t.processes.len() as u64);
        for p in &t.processes {
            put(&mut out, u64::from(p.pid));
            put(&mut out, p.comm.len() as u64);
            out.extend_from_slice(p.comm.as_bytes());
            out.extend_from_slice(&p.mm.to_le_bytes());
            put(&mut out, p.cgroup_id);
            put(&mut out, p.vmas.len() as u64);
            let mut prev_end = 0u64;
            for v in &p.vmas {
                put(&mut out, v.start.wrapping_sub(prev_end));
                put(&mut out, v.end.wrapping_sub(v.start));
                // An anonymous VMA's pgoff is its start's page number: 0 here, one byte.
                put(&mut out, zigzag(v.pgoff.wrapping_sub(v.start >> 12) as i64));
                put(&mut out, v.flags);
                match v.anon_vma {
                    None => put(&mut out, 0),
                    Some(a) => put_ref(&mut out, &keys, a),
                }
                put(&mut out, u64::from(v.chain_len));
                put(&mut out, v.chain.len() as u64);
                for &a in &v.chain {
                    put_ref(&mut out, &keys, a);
                }
                prev_end = v.end;
            }
        }
        put(&mut out, t.foreign.linked.len() as u64);
        let mut prev = 0u64;
        for &a in &t.foreign.linked {
            put(&mut out, a.wrapping_sub(prev));
            prev = a;
        }
        put(&mut out, t.foreign.roots.len() as u64);
        let mut prev = 0u64;
        for &(r, pid) in &t.foreign.roots {
            put(&mut out, r.wrapping_sub(prev));
            put(&mut out, u64::from(pid));
            prev = r;
        }
        out
    }

    struct Reader<'a> {
        b: &'a [u8],
        at: usize,
    }

    impl Reader<'_> {
        fn err(&self, what: &str) -> String {
            format!("packed topology: {what} at byte {}", self.at)
        }

        fn get(&mut self) -> Result<u64, String> {
            let mut v = 0u64;
            for shift in (0..64).step_by(7) {
                let Some(&byte) = self.b.get(self.at) else { return Err(self.err("cut short")) };
                self.at += 1;
                if shift == 63 && byte > 1 {
                    return Err(self.err("a varint over 64 bits"));
                }
                v |= u64::from(byte & 0x7f) << shift;
                if byte & 0x80 == 0 {
                    return Ok(v);
                }
            }
            Err(self.err("a varint over 64 bits"))
        }

        fn u32(&mut self) -> Result<u32, String> {
            let v = self.get()?;
            u32::try_from(v).map_err(|_| self.err(&format!("{v} over 32 bits")))
        }

        fn bytes(&mut self, n: u64) -> Result<&[u8], String> {
            let n = usize::try_from(n).ok().filter(|&n| n <= self.b.len() - self.at).ok_or_else(|| self.err("cut short"))?;
            self.at += n;
            Ok(&self.b[self.at - n..self.at])
        }

        fn u64le(&mut self) -> Result<u64, String> {
            Ok(u64::from_le_bytes(self.bytes(8)?.try_into().expect("8 bytes")))
        }

        /// A count of items each at least `min` bytes long: never more than the bytes left
        /// allow (a damaged count allocates nothing).
        fn count(&mut self, min: usize) -> Result<usize, String> {
            let n = self.get()?;
            usize::try_from(n).ok().filter(|&n| n <= (self.b.len() - self.at) / min).ok_or_else(|| self.err(&format!("count {n} beyond the bytes left")))
        }

        fn addr(&mut self, keys: &[u64], x: u64) -> Result<u64, String> {
            match x {
                0 => Err(self.err("an anon_vma reference of 0")),
                1 => self.u64le(),
                _ => keys
                    .get((x >> 1) as usize - 1)
                    .copied()
                    .filter(|_| x & 1 == 0)
                    .ok_or_else(|| self.err(&format!("anon_vma reference {x} outside the table"))),
            }
        }

        fn reference(&mut self, keys: &[u64]) -> Result<u64, String> {
            let x = self.get()?;
            self.addr(keys, x)
        }
    }

    /// [`pack`]'s bytes back to the topology; an error names the byte where they are bad.
    pub fn unpack(b: &[u8]) -> Result<Topology, String> {
        let mut r = Reader { b, at: 0 };
        let n = r.count(1)?;
        let mut keys = Vec::with_capacity(n);
        let mut prev = 0u64;
        for k in 0..n {
            let a = prev.wrapping_add(r.get()?);
            if k > 0 && a <= prev {
                return Err(r.err("anon_vma addresses not increasing"));
            }
            keys.push(a);
            prev = a;
        }
        let mut infos = Vec::with_capacity(n);
        for _ in 0..n {
            let root = r.reference(&keys)?;
            let parent = r.reference(&keys)?;
            let refcount = unzigzag(r.get()?);
            let (num_children, num_active_vmas) = (r.get()?, r.get()?);
            let degree = match r.get()? {
                0 => None,
                1 => Some(r.get()?),
                _ => return Err(r.err("a degree tag other than 0 or 1")),
            };
            infos.push(AnonVmaInfo { root, parent, refcount, num_children, num_active_vmas, degree });
        }
        let mut t = Topology { anon_vmas: keys.iter().copied().zip(infos).collect(), ..Default::default() };
        let procs = r.count(12)?;
        t.processes.reserve(procs);
        for _ in 0..procs {
            let pid = r.u32()?;
            let len = r.get()?;
            let comm = String::from_utf8(r.bytes(len)?.to_vec()).map_err(|_| r.err("a comm not UTF-8"))?;
            let mm = r.u64le()?;
            let cgroup_id = r.get()?;
            let n = r.count(7)?;
            let mut vmas = Vec::with_capacity(n);
            let mut prev_end = 0u64;
            for _ in 0..n {
                let start = prev_end.wrapping_add(r.get()?);
                let end = start.wrapping_add(r.get()?);
                let pgoff = (start >> 12).wrapping_add(unzigzag(r.get()?) as u64);
                let flags = r.get()?;
                let anon_vma = match r.get()? {
                    0 => None,
                    x => Some(r.addr(&keys, x)?),
                };
                let chain_len = r.u32()?;
                let len = r.count(1)?;
                let chain = (0..len).map(|_| r.reference(&keys)).collect::<Result<Vec<u64>, String>>()?;
                vmas.push(VmaTopo { start, end, pgoff, flags, anon_vma, chain, chain_len });
                prev_end = end;
            }
            t.processes.push(ProcessTopo { pid, comm, mm, cgroup_id, vmas });
        }
        let n = r.count(1)?;
        let mut linked = Vec::with_capacity(n);
        let mut prev = 0u64;
        for _ in 0..n {
            prev = prev.wrapping_add(r.get()?);
            linked.push(prev);
        }
        let n = r.count(2)?;
        let mut roots = Vec::with_capacity(n);
        let mut prev = 0u64;
        for _ in 0..n {
            prev = prev.wrapping_add(r.get()?);
            roots.push((prev, r.u32()?));
        }
        t.foreign = Foreign { linked, roots };
        if r.at != b.len() {
            return Err(r.err(&format!("{} bytes after the topology", b.len() - r.at)));
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first process per root and the links are what a plain pass over everything gives.
    #[test]
    fn the_builder_keeps_the_first_process_of_each_root() {
        let mut kept = Topology::default();
        let vmas = (0..40u64).map(|i| VmaTopo { anon_vma: Some(i * 7), chain: vec![i * 7, i * 3], chain_len: 2, ..Default::default() }).collect();
        kept.processes.push(ProcessTopo { pid: 1, vmas, ..Default::default() });
        let (mut b, mut plain) = (ForeignBuilder::default(), Vec::new());
        for pid in 100..120u32 {
            let ord = b.process(pid);
            for i in 0..1000u64 {
                let (av, root) = ((i * 13 + u64::from(pid)) % 300, (i * 5 + u64::from(pid) * 11) % 120);
                b.vma(ord, [(av, root)]);
                plain.push((av, root, pid));
            }
        }
        let f = b.finish(&kept);
        let refs: Vec<u64> = kept.processes[0].vmas.iter().flat_map(|v| v.chain.clone()).collect();
        let mut linked: Vec<u64> = plain.iter().map(|e| e.0).filter(|a| refs.contains(a)).collect();
        linked.sort_unstable();
        linked.dedup();
        assert_eq!(f.linked, linked);
        let mut roots: Vec<(u64, u32)> = Vec::new();
        for &(_, r, pid) in &plain {
            if refs.contains(&r) && !roots.iter().any(|e| e.0 == r) {
                roots.push((r, pid));
            }
        }
        roots.sort_unstable();
        assert_eq!(f.roots, roots);
        assert!(!f.roots.is_empty() && f.roots.iter().any(|e| e.1 != 100));
    }

    /// Every field, an address outside the table, a VMA out of order, the foreign part:
    /// read back as written; every cut or damaged byte an error, never a panic.
    #[test]
    fn a_packed_topology_reads_back_as_written() {
        let mut t = Topology::default();
        let high = 0xffff_8880_0000_0000u64;
        for (k, a) in [high + 0x100, high + 0x168, high + 0x9_0000].into_iter().enumerate() {
            let degree = (k == 2).then_some(5);
            t.anon_vmas.insert(
                a,
                AnonVmaInfo {
                    root: high + 0x100,
                    parent: if k == 1 { 0xdead } else { a },
                    refcount: -3 + k as i64,
                    num_children: k as u64,
                    num_active_vmas: u64::MAX,
                    degree,
                },
            );
        }
        let v = |start: u64, end: u64, pgoff: u64, anon_vma: Option<u64>, chain: Vec<u64>| VmaTopo {
            start,
            end,
            pgoff,
            flags: 0x100073,
            anon_vma,
            chain_len: chain.len() as u32 + 1,
            chain,
        };
        t.processes.push(ProcessTopo {
            pid: 42,
            comm: "a ☃".into(),
            mm: high + 0x7777,
            cgroup_id: 9,
            vmas: vec![
                v(0x7f00_0000_0000, 0x7f00_0000_4000, 0x7_f000_0000, Some(high + 0x168), vec![high + 0x168, high + 0x100]),
                v(0x1000, 0x2000, 3, None, vec![]),
                v(0x5000, 0x3000, u64::MAX, Some(7), vec![7, high + 0x9_0000]),
            ],
        });
        t.processes.push(ProcessTopo { pid: u32::MAX, ..Default::default() });
        t.foreign = Foreign { linked: vec![3, high + 0x100], roots: vec![(high, 1), (high + 0x100, u32::MAX)] };
        let b = packed::pack(&t);
        assert_eq!(packed::unpack(&b), Ok(t.clone()));
        assert_eq!(packed::unpack(&packed::pack(&Topology::default())), Ok(Topology::default()));
        for n in 0..b.len() {
            assert!(packed::unpack(&b[..n]).is_err(), "cut at {n}");
            let mut bad = b.clone();
            bad[n] ^= 0xff;
            let _ = packed::unpack(&bad);
        }
        let mut long = b.clone();
        long.push(0);
        assert!(packed::unpack(&long).unwrap_err().contains("1 bytes after the topology"));
        assert!(packed::unpack(&[0xff; 12]).unwrap_err().contains("over 64 bits"));
    }
}
