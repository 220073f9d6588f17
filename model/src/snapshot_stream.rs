//! [`snapshot::estimate`](crate::snapshot::estimate) made while the pass streams in, in
//! a few bytes per VMA instead of a [`Topology`](crate::topology::Topology) (≥ 1 M VMAs
//! held ~800 MB).
//!
//! A VMA's lazy state waits for the end of the pass (whether another mm links its
//! anon_vma may show later), so each VMA keeps 4 bytes: its anon_vma's dense index and
//! two bits. Everything else folds in at once:
//! * per anon_vma (a compact `u64 → u32` index): the first mm whose chain links it and
//!   whether more than one does, whether any chain links it, and whether a lazy chain links
//!   it whatever the states (a chain longer than one keeps every entry but a head that is
//!   its own `vma->anon_vma`);
//! * per process: VMAs, eager chain entries, truncated chains, and its runs of VMAs.
//!
//! The same VMA reported by two tasks (a thread with its own files table, a CLONE_VM
//! sibling, or a walk restarted after a VMA changed) is kept once: VMA addresses are kept
//! until the end, and looked up only for an mm seen before under another task, or when a
//! task's VMAs stop ascending.
use std::collections::{BTreeMap, HashMap, HashSet};

use crate::knobs::Knobs;
use crate::snapshot::{check_knobs, Estimate, LazyState, LiveObjects, ProcessEstimate, SnapshotError};

/// One VMA record of the pass, its chain as far as the walk wrote it.
pub struct VmaIn<'a> {
    pub tid: u32,
    pub mm: u64,
    pub vma: u64,
    pub start: u64,
    pub end: u64,
    pub anon_vma: Option<u64>,
    pub chain: &'a [u64],
    pub chain_len: u32,
}

const NONE: u32 = u32::MAX;
/// Per-VMA bits above the anon_vma index: its chain's head is its anon_vma; chain_len > 1;
/// chain_len == 1.
const HEAD_IS_AV: u32 = 1 << 31;
const LONG: u32 = 1 << 30;
const ONE: u32 = 1 << 29;
const IDX: u32 = ONE - 1;

/// Per anon_vma, packed with its first mm: linked by a second mm, by any chain, by a
/// lazy chain whatever the states.
const MULTI: u32 = 1 << 31;
const IN_CHAIN: u32 = 1 << 30;
const UNCOND: u32 = 1 << 29;
const MM: u32 = (1 << 29) - 1;

/// Kernel addresses (slab objects of the direct map: 8-aligned, and on a machine with less
/// than 32 GiB of it sharing their bits above 35) kept in 4 bytes, `(addr >> 3) as u32`,
/// while every address so far is 8-aligned with the first one's `addr >> 35`; else whole.
/// 4 bytes a VMA and 6 an anon_vma less at 1 M VMAs (~11 MB of ~60 MB peak).
#[derive(Default)]
struct Narrow {
    hi: Option<u64>,
}

impl Narrow {
    fn fits(&self, addr: u64) -> bool {
        addr & 7 == 0 && self.hi.is_none_or(|h| h == addr >> 35)
    }

    /// Its 4 bytes (the caller checked [`Narrow::fits`]); the first address sets `hi`.
    fn narrow(&mut self, addr: u64) -> u32 {
        self.hi.get_or_insert(addr >> 35);
        (addr >> 3) as u32
    }

    fn wide(&self, k: u32) -> u64 {
        self.hi.unwrap_or(0) << 35 | u64::from(k) << 3
    }
}

/// VMA addresses in the order kept, [`Narrow`] while they fit.
#[derive(Default)]
struct Addrs {
    form: Narrow,
    narrow: Vec<u32>,
    /// Every address whole, once one did not fit (`narrow` is then empty).
    wide: Option<Vec<u64>>,
}

impl Addrs {
    fn push(&mut self, a: u64) {
        if self.wide.is_none() && !self.form.fits(a) {
            self.wide = Some(std::mem::take(&mut self.narrow).into_iter().map(|k| self.form.wide(k)).collect());
        }
        match &mut self.wide {
            Some(w) => w.push(a),
            None => {
                let k = self.form.narrow(a);
                self.narrow.push(k);
            }
        }
    }

    fn len(&self) -> usize {
        self.wide.as_ref().map_or(self.narrow.len(), Vec::len)
    }

    fn get(&self, i: usize) -> u64 {
        match &self.wide {
            Some(w) => w[i],
            None => self.form.wide(self.narrow[i]),
        }
    }
}

/// No value: an empty slot (values are dense indices below 2^29).
const EMPTY: u32 = u32::MAX;

/// `u64 → dense u32` by linear probing over two flat arrays, grown at 3/4 full: 8 bytes a
/// slot with [`Narrow`] keys (12 with whole ones; a std map takes 17 and a power of two as
/// many slots).
struct Index {
    form: Narrow,
    narrow: Vec<u32>,
    /// Every key whole, once one did not fit (`narrow` is then empty).
    wide: Option<Vec<u64>>,
    vals: Vec<u32>,
    len: usize,
}

impl Index {
    fn with_capacity(n: usize) -> Index {
        let slots = (n * 4 / 3 + 1).max(1 << 10);
        Index { form: Narrow::default(), narrow: vec![0; slots], wide: None, vals: vec![EMPTY; slots], len: 0 }
    }

    /// The hash of the key's 4 KiB page, its high bits scaled to the slot count (no power of
    /// two needed), then the key's place in its page in 64-byte steps: the keys of one page
    /// share a window of 64 slots. anon_vmas are slab objects (104 bytes here, 39 to a page)
    /// allocated together for VMAs next to each other (one after the other as a process
    /// writes them, all at once at fork), and the pass meets them in the same order: a page's
    /// lookups fall in a few cache lines instead of one miss each. Objects of one page
    /// ≥ 64 bytes apart never share a slot; a probe goes on past the window as before.
    fn slot(&self, key: u64) -> usize {
        let n = self.vals.len();
        let page = ((u128::from((key >> 12).wrapping_mul(0x9E37_79B9_7F4A_7C15)) * n as u128) >> 64) as usize;
        let i = page + ((key & 0xfff) >> 6) as usize;
        // n ≥ 1024 > 63: one wrap at most.
        if i >= n {
            i - n
        } else {
            i
        }
    }

    fn next(&self, i: usize) -> usize {
        if i + 1 == self.vals.len() {
            0
        } else {
            i + 1
        }
    }

    fn prefetch(&self, key: u64) {
        #[cfg(target_arch = "x86_64")]
        {
            let i = self.slot(key);
            let k = match &self.wide {
                Some(w) => w.as_ptr().wrapping_add(i).cast::<i8>(),
                None => self.narrow.as_ptr().wrapping_add(i).cast::<i8>(),
            };
            // SAFETY: a prefetch reads nothing and cannot fault, whatever the address.
            unsafe {
                use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
                _mm_prefetch::<_MM_HINT_T0>(k);
                _mm_prefetch::<_MM_HINT_T0>(self.vals.as_ptr().wrapping_add(i).cast());
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = key;
    }

    /// The slot holding `key`, or the empty one where it would go.
    fn find(&self, key: u64) -> usize {
        let mut i = self.slot(key);
        match &self.wide {
            Some(w) => {
                while self.vals[i] != EMPTY && w[i] != key {
                    i = self.next(i);
                }
            }
            None => {
                // A key that does not fit is in no slot: the first empty one.
                let k = if self.form.fits(key) { Some((key >> 3) as u32) } else { None };
                while self.vals[i] != EMPTY && Some(self.narrow[i]) != k {
                    i = self.next(i);
                }
            }
        }
        i
    }

    fn get(&self, key: u64) -> Option<u32> {
        Some(self.vals[self.find(key)]).filter(|&v| v != EMPTY)
    }

    /// The index of `key`, `next` if it is new.
    fn insert(&mut self, key: u64, next: u32) -> (u32, bool) {
        if (self.len + 1) * 4 > self.vals.len() * 3 {
            self.grow();
        }
        if self.wide.is_none() && !self.form.fits(key) {
            let form = &self.form;
            self.wide = Some(std::mem::take(&mut self.narrow).into_iter().map(|k| form.wide(k)).collect());
        }
        let i = self.find(key);
        if self.vals[i] != EMPTY {
            return (self.vals[i], false);
        }
        match &mut self.wide {
            Some(w) => w[i] = key,
            None => self.narrow[i] = self.form.narrow(key),
        }
        self.vals[i] = next;
        self.len += 1;
        (next, true)
    }

    fn key(&self, i: usize) -> u64 {
        match &self.wide {
            Some(w) => w[i],
            None => self.form.wide(self.narrow[i]),
        }
    }

    fn grow(&mut self) {
        let mut new = Index::with_capacity(self.vals.len() * 3 / 2);
        if self.wide.is_some() {
            new.wide = Some(vec![0; new.vals.len()]);
            new.narrow = vec![];
        }
        new.form.hi = self.form.hi;
        for i in (0..self.vals.len()).filter(|&i| self.vals[i] != EMPTY) {
            new.insert(self.key(i), self.vals[i]);
        }
        *self = new;
    }
}

struct Proc {
    pid: u32,
    comm: String,
    vmas: u64,
    eager_avc: u64,
    /// Lazy chain entries whatever the states: a TREE_PARENT VMA's.
    lazy_avc: u64,
    truncated: u64,
    /// Addresses of its VMAs, once a duplicate became possible.
    seen: Option<HashSet<u64>>,
}

/// A run of consecutive VMAs of one task: `(process, first VMA's position)`.
type Run = (u32, u32);

pub struct Stream {
    mms: HashMap<u64, u32>,
    procs: Vec<Proc>,
    runs: Vec<Run>,
    /// (tid, mm) of the current run, its last VMA's end.
    cur: Option<(u32, u64, u64)>,
    /// The current run checks every VMA against its process's `seen`.
    checking: bool,
    index: Index,
    /// Per anon_vma: first mm | MULTI | IN_CHAIN | UNCOND.
    avs: Vec<u32>,
    /// Per VMA kept: anon_vma index (or NONE) | HEAD_IS_AV | LONG | ONE; and its address
    /// (dropped at the end).
    vmas: Vec<u32>,
    addrs: Addrs,
    /// VMAs of chain length ≤ 1 whose one entry is not its anon_vma: (position, entry).
    odd: Vec<(u32, u32)>,
    chain_lens: BTreeMap<u32, u64>,
    duplicates: u64,
    /// The current VMA's chain as indices.
    scratch: Vec<u32>,
}

/// What the pass gave besides the [`Estimate`]: per process (estimate order) its VMAs by
/// lazy state and its truncated chains, the chain-length histogram of VMAs with an
/// anon_vma, and the duplicates dropped.
pub struct Streamed {
    pub estimate: Estimate,
    pub states: Vec<[u64; 4]>,
    pub truncated: Vec<u64>,
    pub chain_lens: BTreeMap<u32, u64>,
    pub duplicates: u64,
    /// Per anon_vma index: first mm and flags, and the index, kept to classify more VMAs.
    links: Links,
}

/// Whether an anon_vma is linked from the chains of an mm other than a given one.
pub struct Links {
    index: Index,
    avs: Vec<u32>,
    mms: HashMap<u64, u32>,
}

impl Links {
    /// `crate::snapshot::classify`'s state of a VMA of the mm `mm`.
    pub fn state(&self, mm: u64, anon_vma: Option<u64>, chain_len: u32) -> LazyState {
        let Some(av) = anon_vma else { return LazyState::None };
        let m = self.mms.get(&mm).copied().unwrap_or(NONE);
        crate::snapshot::state_of(self.index.get(av).is_some_and(|i| shared(self.avs[i as usize], m)), chain_len)
    }
}

/// Whether an anon_vma whose flags are `f` is linked from the chains of an mm other than
/// process `m`'s.
fn shared(f: u32, m: u32) -> bool {
    f & MM != MM && (f & MULTI != 0 || f & MM != m)
}

impl Streamed {
    pub fn links(&self) -> &Links {
        &self.links
    }

    /// mm → its process's index in `estimate.processes`.
    pub fn mms(&self) -> &HashMap<u64, u32> {
        &self.links.mms
    }
}

impl Stream {
    /// `anon_vmas`: a guess at how many the pass will see (the slab's count), to size the
    /// index once.
    pub fn new(anon_vmas: usize) -> Stream {
        Stream {
            mms: HashMap::new(),
            procs: vec![],
            runs: vec![],
            cur: None,
            checking: false,
            index: Index::with_capacity(anon_vmas),
            avs: Vec::with_capacity(anon_vmas),
            vmas: vec![],
            addrs: Addrs::default(),
            odd: vec![],
            chain_lens: BTreeMap::new(),
            duplicates: 0,
            scratch: vec![],
        }
    }

    /// An anon_vma address the pass is about to hand on: its index slot is fetched meanwhile.
    pub fn ahead(&self, addr: u64) {
        self.index.prefetch(addr);
    }

    /// VMAs dropped so far as reported before.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    fn av(&mut self, addr: u64) -> u32 {
        let (i, new) = self.index.insert(addr, self.avs.len() as u32);
        if new {
            self.avs.push(MM);
        }
        i
    }

    /// One VMA; `who` names its process (pid, comm) if its mm is new. Returns false for a
    /// duplicate (dropped).
    pub fn vma(&mut self, v: &VmaIn, who: impl FnOnce() -> (u32, String)) -> bool {
        // The current run's mm (most VMAs) needs no hashing: its process is the run's.
        let known = match (self.cur, self.runs.last()) {
            (Some((_, mm, _)), Some(&(m, _))) if mm == v.mm => Some(m),
            _ => self.mms.get(&v.mm).copied(),
        };
        let (m, new) = match known {
            Some(m) => (m, false),
            None => {
                let (pid, comm) = who();
                self.procs.push(Proc { pid, comm, vmas: 0, eager_avc: 0, lazy_avc: 0, truncated: 0, seen: None });
                self.mms.insert(v.mm, self.procs.len() as u32 - 1);
                (self.procs.len() as u32 - 1, true)
            }
        };
        let pos = self.vmas.len() as u32;
        match self.cur {
            Some((tid, mm, last_end)) if tid == v.tid && mm == v.mm => {
                if !self.checking && v.start < last_end {
                    // The walk restarted over a changed VMA: it may come again.
                    self.checking = true;
                    self.fill_seen(m);
                }
            }
            _ => {
                // A new task: its mm seen before under another task holds the same VMAs.
                self.checking = !new;
                if self.checking {
                    self.fill_seen(m);
                }
                self.runs.push((m, pos));
            }
        }
        self.cur = Some((v.tid, v.mm, v.end));
        if self.checking && !self.procs[m as usize].seen.as_mut().expect("filled").insert(v.vma) {
            self.duplicates += 1;
            return false;
        }
        self.add(m, v);
        true
    }

    /// The addresses of every VMA of process `m` kept so far.
    fn fill_seen(&mut self, m: u32) {
        if self.procs[m as usize].seen.is_some() {
            return;
        }
        let mut seen = HashSet::new();
        let mut runs = self.runs.iter().map(|r| (r.0, r.1 as usize)).peekable();
        while let Some((p, from)) = runs.next() {
            let to = runs.peek().map_or(self.addrs.len(), |r| r.1);
            if p == m {
                seen.extend((from..to).map(|i| self.addrs.get(i)));
            }
        }
        self.procs[m as usize].seen = Some(seen);
    }

    fn add(&mut self, m: u32, v: &VmaIn) {
        let pos = self.vmas.len();
        let p = &mut self.procs[m as usize];
        p.vmas += 1;
        p.eager_avc += u64::from(v.chain_len);
        p.truncated += u64::from(v.chain.len() < v.chain_len as usize);
        // Each entry looked up once (the index is the pass's cache misses).
        let mut idx = std::mem::take(&mut self.scratch);
        idx.clear();
        for &c in v.chain {
            let i = self.av(c);
            idx.push(i);
            let f = &mut self.avs[i as usize];
            *f |= IN_CHAIN;
            if *f & MM == MM {
                *f = (*f & !MM) | m;
            } else if *f & MM != m {
                *f |= MULTI;
            }
        }
        let head_is_av = v.anon_vma.is_some() && v.chain.first() == v.anon_vma.as_ref();
        let mut rec = NONE;
        if let Some(a) = v.anon_vma {
            rec = if head_is_av { idx[0] | HEAD_IS_AV } else { self.av(a) };
            *self.chain_lens.entry(v.chain_len).or_insert(0) += 1;
            if v.chain_len > 1 {
                rec |= LONG;
                // TREE or TREE_PARENT: every entry but a head that is its own anon_vma.
                for &i in &idx[usize::from(head_is_av)..] {
                    self.avs[i as usize] |= UNCOND;
                }
                self.procs[m as usize].lazy_avc += u64::from(v.chain_len) - u64::from(head_is_av);
            } else {
                rec |= if v.chain_len == 1 { ONE } else { 0 };
                if let Some(&c) = idx.first().filter(|_| !head_is_av) {
                    self.odd.push((pos as u32, c));
                }
            }
        }
        self.scratch = idx;
        self.vmas.push(rec);
        self.addrs.push(v.vma);
    }

    pub fn finish(mut self, knobs: &Knobs) -> Result<Streamed, SnapshotError> {
        check_knobs(knobs)?;
        self.addrs = Addrs::default();
        for p in &mut self.procs {
            p.seen = None;
        }
        let n = self.procs.len();
        let mut est = Estimate::default();
        let mut truncated = Vec::with_capacity(n);
        let mut states = vec![[0u64; 4]; n];
        let mut lazy_avc = vec![0u64; n];
        let (mut own_eager, mut own_lazy) = (vec![0u64; n], vec![0u64; n]);
        // anon_vma → the last process counted as holding it (a process's runs are visited
        // together, so "last" is "this one").
        let mut mark = vec![NONE; self.avs.len()];
        // A lazy chain's conditional entry (a head that is the VMA's anon_vma, or the one
        // entry of a chain ≤ 1) is linked when the VMA is TREE.
        let mut cond = vec![0u64; self.avs.len().div_ceil(64)];
        let mut order: Vec<usize> = (0..self.runs.len()).collect();
        order.sort_by_key(|&r| self.runs[r].0);
        let odd_of: HashMap<u32, u32> = self.odd.iter().copied().collect();
        for r in order {
            let (m, from) = self.runs[r];
            let to = self.runs.get(r + 1).map_or(self.vmas.len(), |n| n.1 as usize);
            let mi = m as usize;
            for pos in from as usize..to {
                let rec = self.vmas[pos];
                if rec == NONE {
                    states[mi][LazyState::None as usize] += 1;
                    continue;
                }
                let a = rec & IDX;
                let tree = shared(self.avs[a as usize], m) || !knobs.lazy_enabled;
                // Only LONG (chain_len > 1) matters to the state beyond `tree`.
                let s = crate::snapshot::state_of(tree, 1 + u32::from(rec & LONG != 0));
                states[mi][s as usize] += 1;
                if tree {
                    // What TREE adds to TREE_PARENT's (or LAZY's) chain: its head.
                    let head = if rec & LONG != 0 { HEAD_IS_AV } else { ONE };
                    lazy_avc[mi] += u64::from(rec & head != 0);
                    if rec & HEAD_IS_AV != 0 {
                        cond[a as usize / 64] |= 1 << (a % 64);
                    } else if let Some(&c) = odd_of.get(&(pos as u32)) {
                        cond[c as usize / 64] |= 1 << (c % 64);
                    }
                }
                if mark[a as usize] != m {
                    mark[a as usize] = m;
                    own_eager[mi] += 1;
                    own_lazy[mi] += u64::from(tree);
                }
            }
        }
        for (i, &f) in self.avs.iter().enumerate() {
            est.eager.anon_vma += u64::from(f & IN_CHAIN != 0);
            est.lazy.anon_vma += u64::from(f & UNCOND != 0 || cond[i / 64] >> (i % 64) & 1 != 0);
        }
        for (i, p) in self.procs.into_iter().enumerate() {
            let pe = ProcessEstimate {
                pid: p.pid,
                comm: p.comm,
                vmas: p.vmas,
                eager: LiveObjects { anon_vma: own_eager[i], anon_vma_chain: p.eager_avc },
                lazy: LiveObjects { anon_vma: own_lazy[i], anon_vma_chain: p.lazy_avc + lazy_avc[i] },
            };
            for (t, s) in est.states.iter_mut().zip(states[i]) {
                *t += s;
            }
            est.truncated_vmas += p.truncated;
            truncated.push(p.truncated);
            est.eager.anon_vma_chain += pe.eager.anon_vma_chain;
            est.lazy.anon_vma_chain += pe.lazy.anon_vma_chain;
            est.vmas += pe.vmas;
            est.processes.push(pe);
        }
        Ok(Streamed {
            estimate: est,
            states,
            truncated,
            chain_lens: self.chain_lens,
            duplicates: self.duplicates,
            links: Links { index: self.index, avs: self.avs, mms: self.mms },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::estimate;
    use crate::topology::{ProcessTopo, Topology, VmaTopo};

    /// `topo` streamed as tasks `tasks` (mm index, tid) in that order; a task repeating an
    /// mm reports `dup` of its VMAs again.
    fn stream(topo: &Topology, knobs: &Knobs, split: bool) -> Streamed {
        let mut s = Stream::new(0);
        for p in &topo.processes {
            let mm = p.mm;
            let half = if split { p.vmas.len() / 2 } else { p.vmas.len() };
            let feed = |s: &mut Stream, tid: u32, vmas: &[(usize, &VmaTopo)]| {
                for &(j, v) in vmas {
                    let vi =
                        VmaIn { tid, mm, vma: mm + j as u64 * 8, start: v.start, end: v.end, anon_vma: v.anon_vma, chain: &v.chain, chain_len: v.chain_len };
                    s.vma(&vi, || (p.pid, p.comm.clone()));
                }
            };
            let all: Vec<(usize, &VmaTopo)> = p.vmas.iter().enumerate().collect();
            feed(&mut s, p.pid, &all[..half]);
            if split {
                // A second task of the same mm, later: the first half again, then the rest.
                feed(&mut s, p.pid + 100_000, &all);
            }
        }
        s.finish(knobs).unwrap()
    }

    fn check(topo: &Topology) {
        for lazy in [true, false] {
            let k = Knobs { lazy_enabled: lazy, ..Default::default() };
            let want = estimate(topo, &k).unwrap();
            for split in [false, true] {
                let got = stream(topo, &k, split);
                assert_eq!(got.estimate, want, "split {split} lazy {lazy}: {topo:?}");
                let dups: usize = if split { topo.processes.iter().map(|p| p.vmas.len() / 2).sum() } else { 0 };
                assert_eq!(got.duplicates, dups as u64);
            }
        }
        let got = stream(topo, &Knobs::default(), false);
        let states = crate::snapshot::classify(topo);
        for ((p, st), per) in topo.processes.iter().zip(&states).zip(&got.states) {
            let mut n = [0u64; 4];
            for (v, s) in p.vmas.iter().zip(st) {
                n[*s as usize] += 1;
                assert_eq!(got.links().state(p.mm, v.anon_vma, v.chain_len), *s);
            }
            assert_eq!(&n, per);
        }
    }

    /// A small deterministic generator: processes whose VMAs link anon_vmas from a small
    /// pool, so sharing, reuse, odd heads and truncation all occur.
    fn random(seed: u64) -> Topology {
        let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut t = Topology::default();
        for p in 0..1 + next(5) {
            let mut vmas = vec![];
            let mut start = 0x1000;
            // A pass only shows processes with a VMA.
            for _ in 0..1 + next(8) {
                let len = next(4) as usize;
                let chain: Vec<u64> = (0..len).map(|_| 0x100 + 8 * next(12)).collect();
                let anon_vma = match next(6) {
                    0 => None,
                    1 => Some(0x100 + 8 * next(12)),
                    _ => chain.first().copied().or(Some(0x100 + 8 * next(12))),
                };
                let chain_len = len as u32 + if next(7) == 0 { 1 + next(3) as u32 } else { 0 };
                vmas.push(VmaTopo { start, end: start + 0x1000, anon_vma, chain, chain_len, ..Default::default() });
                start += 0x2000;
            }
            t.processes.push(ProcessTopo { pid: p as u32 + 1, comm: format!("p{p}"), mm: (p + 1) << 20, vmas, ..Default::default() });
        }
        t
    }

    #[test]
    fn streamed_estimate_equals_the_topology_estimate() {
        for seed in 0..3000 {
            check(&random(seed));
        }
    }

    #[test]
    fn a_restarted_walk_keeps_each_vma_once() {
        let v = |vma: u64, start: u64, av: u64| (vma, start, av);
        // Task 1 walks A B C, the walk restarts at B (grown), then D; task 2 (same mm) is
        // seen later with B and a new E.
        let walk = [
            (1, v(0xa, 0x1000, 0x10)),
            (1, v(0xb, 0x3000, 0x20)),
            (1, v(0xc, 0x5000, 0x30)),
            (1, v(0xb, 0x2000, 0x20)),
            (1, v(0xd, 0x9000, 0x40)),
            (2, v(0xb, 0x3000, 0x20)),
            (2, v(0xe, 0xb000, 0x50)),
        ];
        let mut s = Stream::new(0);
        let kept: Vec<bool> = walk
            .iter()
            .map(|&(tid, (vma, start, av))| {
                let chain = [av];
                s.vma(&VmaIn { tid, mm: 7, vma, start, end: start + 0x1000, anon_vma: Some(av), chain: &chain, chain_len: 1 }, || (1, "p".into()))
            })
            .collect();
        assert_eq!(kept, [true, true, true, false, true, false, true]);
        let e = s.finish(&Knobs::default()).unwrap();
        assert_eq!((e.duplicates, e.estimate.vmas, e.estimate.eager), (2, 5, LiveObjects { anon_vma: 5, anon_vma_chain: 5 }));
    }

    #[test]
    fn index_grows() {
        let mut i = Index::with_capacity(0);
        for k in 1..100_000u64 {
            assert_eq!(i.insert(k * 4096, k as u32), (k as u32, true));
        }
        for k in 1..100_000u64 {
            assert_eq!(i.get(k * 4096), Some(k as u32));
        }
        assert_eq!(i.insert(4096, 7), (1, false));
        assert_eq!(i.get(5), None);
    }

    #[test]
    fn keys_and_addresses_widen_when_one_does_not_fit() {
        let base = 0xffff_8880_0000_0000u64;
        // Narrow while every key shares `key >> 35` and is 8-aligned; then a key of another
        // 32 GiB, and one not aligned: every key kept whole, through growth too.
        let keys: Vec<u64> =
            (1..5000u64).map(|k| base + k * 104).chain([base + (1 << 35) + 8, base + 3]).chain((1..5000u64).map(|k| base + (5 << 35) + k * 64)).collect();
        let mut i = Index::with_capacity(0);
        let mut a = Addrs::default();
        for (n, &k) in keys.iter().enumerate() {
            assert_eq!(i.insert(k, n as u32), (n as u32, true));
            assert_eq!(i.insert(k, 0), (n as u32, false));
            a.push(k);
            if n == 4998 {
                assert!(i.wide.is_none() && a.wide.is_none());
                assert_eq!(i.get(base + (1 << 35) + 8), None);
            }
        }
        assert!(i.wide.is_some() && a.wide.is_some());
        for (n, &k) in keys.iter().enumerate() {
            assert_eq!((i.get(k), a.get(n)), (Some(n as u32), k));
        }
        assert_eq!((i.get(base + 5), a.len()), (None, keys.len()));
    }
}
