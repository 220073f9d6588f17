//! `struct anon_vma` objects and the per-VMA chains of `anon_vma_chain` links, with the
//! rmap.c functions that allocate and free them (spec §0, §1.2–§1.4, §1.8).
//!
//! Dense ids: AVs live in a slab with a free list. A chain is a shared, refcounted cons
//! list (newest first): a fork child's chain is `[B] + chain(parent)` and a split's chain
//! is the same list, so both cost O(1) memory. The kernel still has one AVC per
//! (VMA, AV) pair; the counters count them per VMA (a chain's length).
//!
//! Every AV sits in exactly one chain node (the node made when the AV was created; a
//! neighbour's reused AV shares its node). So the VMAs linking AV `X` — `tree(X)` — are
//! exactly the chains passing through X's node, and `tree(X)` empties exactly when that
//! node's refcount drops to 0: linking and unlinking a whole chain is O(1) plus the nodes
//! it frees, as the kernel's per-AVC interval-tree work is not needed to count objects.
//!
//! Being one-to-one, the node lives in the AV's own record and a chain id is the id of its
//! newest AV: walking a chain reads each AV once, and making an AV makes its node. The
//! node dies first (an AV with a non-empty tree holds a reference on itself), so a record
//! with `refs == 0` is an AV whose node is gone.

use super::slab::Slab;
use crate::counts::Counter;
use crate::kernel::Kernel;

pub(crate) const NIL: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct AnonVma {
    pub root: u32,
    pub parent: u32,
    pub refcount: u32,
    pub num_children: u32,
    pub num_active_vmas: u32,
    /// Chain node: the next (older) AV of every chain through this one.
    next: u32,
    /// Chain node: VMAs whose chain starts here, plus newer AVs whose `next` is this one.
    refs: u32,
    /// Chain node: length of the chain starting here.
    len: u32,
}

impl AnonVma {
    /// Pre-6.0 `degree`: 2555283eb40d split it into exactly these two counts (every
    /// `degree++/--` of the old code is a `num_children` or `num_active_vmas` one now).
    #[inline]
    pub fn degree(&self) -> u32 {
        self.num_children + self.num_active_vmas
    }
}

/// AV and AVC allocations not yet added to the counters: a fork, where these only grow,
/// adds them once (same totals and peaks as one add per VMA, fewer instructions).
#[derive(Default)]
pub(crate) struct Allocs {
    av: u64,
    avc: u64,
}

#[derive(Default)]
pub(crate) struct AnonVmas {
    avs: Slab<AnonVma>,
    pub av: Counter,
    pub avc: Counter,
    /// References held by KSM stable-tree rmap_items (part of `refcount`), per AV.
    ksm: std::collections::HashMap<u32, u32>,
}

impl AnonVmas {
    #[inline]
    pub fn get(&self, x: u32) -> &AnonVma {
        self.avs.get(x)
    }
    #[inline]
    fn m(&mut self, x: u32) -> &mut AnonVma {
        self.avs.get_mut(x)
    }

    pub fn heap_bytes(&self) -> usize {
        self.avs.heap_bytes()
    }

    /// Add allocations made uncounted.
    #[inline]
    pub fn count(&mut self, n: Allocs) {
        self.av.add(n.av);
        self.avc.add(n.avc);
    }

    /// `anon_vma_alloc()` (refcount 1) with `root` and `parent` (NIL: itself), and its
    /// chain node in front of `next` (held by its VMA). The caller counts it.
    #[inline]
    fn alloc_av(&mut self, root: u32, parent: u32, num_children: u32, next: u32) -> u32 {
        let len = self.len(next) + 1;
        let id = self.avs.alloc();
        let (root, parent) = if root == NIL { (id, id) } else { (root, parent) };
        // Field by field into the slot: a whole struct built first went through the stack
        // and stalled on store forwarding (half of `child_of`'s time).
        let a = self.m(id);
        a.root = root;
        a.parent = parent;
        a.refcount = 1;
        a.num_children = num_children;
        a.num_active_vmas = 1;
        a.next = next;
        a.refs = 1;
        a.len = len;
        id
    }

    // ---- chains -------------------------------------------------------------------------

    #[inline]
    pub fn len(&self, chain: u32) -> u32 {
        if chain == NIL {
            0
        } else {
            self.avs.get(chain).len
        }
    }
    /// AVs of a chain, newest first.
    pub fn chain(&self, mut chain: u32) -> impl Iterator<Item = u32> + '_ {
        std::iter::from_fn(move || {
            if chain == NIL {
                return None;
            }
            let x = chain;
            chain = self.avs.get(x).next;
            Some(x)
        })
    }
    pub fn chain_vec(&self, chain: u32) -> Vec<u32> {
        self.chain(chain).collect()
    }
    #[inline]
    fn chain_get(&mut self, chain: u32) -> u32 {
        if chain != NIL {
            self.avs.get_mut(chain).refs += 1;
        }
        chain
    }
    /// Drop one reference to `chain` that does not end a VMA's links (the new node made
    /// over it still holds it), so no node can be freed here.
    pub fn chain_put(&mut self, chain: u32) {
        let n = self.avs.get_mut(chain);
        debug_assert!(n.refs > 1, "chain_put would free a linked node");
        n.refs -= 1;
    }

    /// Is a one-AV chain linked by its VMA alone (`tree(head) == 1`)?
    pub fn only_user(&self, chain: u32) -> bool {
        self.avs.get(chain).refs == 1
    }

    // ---- rmap.c -------------------------------------------------------------------------

    /// `__anon_vma_prepare` after `find_mergeable_anon_vma` returned `reuse`: +1 AVC, and
    /// +1 AV (a new root, num_children = 1 for its self-parent link) unless reused.
    /// Returns `(chain, av)` of the VMA.
    /// `reuse` is the neighbour's one-AV chain.
    pub fn prepare(&mut self, reuse: Option<u32>) -> (u32, u32) {
        self.avc.add(1);
        let x = match reuse {
            Some(chain) => {
                self.chain_get(chain);
                self.m(chain).num_active_vmas += 1;
                chain
            }
            // num_children: the self-parent link; pre-6.0 `degree`: alloc 1 + this VMA.
            None => {
                self.av.add(1);
                self.alloc_av(NIL, NIL, 1, NIL)
            }
        };
        (x, x)
    }

    /// `anon_vma_clone(dst, src)` for non-fork callers (split, copy_vma, dup_anon_vma):
    /// `dst->anon_vma` is preset to `src->anon_vma`; +L(src) AVC.
    pub fn clone_chain(&mut self, chain: u32, av: u32) -> (u32, u32) {
        self.avc.add(self.len(chain) as u64);
        if av != NIL {
            self.m(av).num_active_vmas += 1;
        }
        (self.chain_get(chain), av)
    }

    /// A fork child linking its parent VMA's chain without an anon_vma of its own (lazy
    /// TREE_PARENT): `clone_chain(chain, NIL)`, counted in `n` like `fork`.
    #[inline]
    pub fn link_chain(&mut self, chain: u32, n: &mut Allocs) -> u32 {
        n.avc += self.len(chain) as u64;
        self.chain_get(chain)
    }

    /// `anon_vma_fork(vma, pvma)` for a parent VMA with an anon_vma: clone with the reuse
    /// test (first AV in root→leaf order that qualifies), else a new child AV. Counted
    /// in `n`, for `count`.
    pub fn fork(&mut self, pchain: u32, pav: u32, kernel: Kernel, n: &mut Allocs) -> (u32, u32) {
        debug_assert!(pav != NIL);
        n.avc += self.len(pchain) as u64;
        // The kernel tests root→leaf and takes the first fit: the chain is newest first,
        // so the last fit seen here. Linking does not change the counts tested.
        let mut reused = NIL;
        let mut x = pchain;
        while x != NIL {
            let a = self.get(x);
            let ok = if kernel.uses_degree() { x != pav && a.degree() < 2 } else { a.num_children < 2 && a.num_active_vmas == 0 };
            if ok {
                reused = x;
            }
            x = a.next;
        }
        if reused != NIL {
            self.m(reused).num_active_vmas += 1;
            return (self.chain_get(pchain), reused);
        }
        self.new_child(pchain, n)
    }

    /// A new AV `B` whose parent is the newest AV of `chain` (what `anon_vma_fork` allocates,
    /// and what a lazy TREE_PARENT VMA gets when it is given its own anon_vma): +1 AV +1 AVC.
    pub fn child_of(&mut self, chain: u32) -> (u32, u32) {
        let mut n = Allocs::default();
        let r = self.new_child(chain, &mut n);
        self.count(n);
        r
    }

    /// `child_of`, counted in `n`. Always inlined: `fork` calls it for each VMA it
    /// cannot reuse an AV for, and the call cost ~10 instructions per VMA (callgrind).
    #[inline(always)]
    fn new_child(&mut self, chain: u32, n: &mut Allocs) -> (u32, u32) {
        let parent = chain;
        let p = self.m(parent);
        p.num_children += 1;
        p.refs += 1; // the new node's `next`
        let root = p.root;
        self.m(root).refcount += 1;
        n.av += 1;
        n.avc += 1;
        let b = self.alloc_av(root, parent, 0, chain);
        (b, b)
    }

    /// `unlink_anon_vmas(vma)`: frees exactly L AVCs; AVs whose tree empties (their node
    /// is freed: a newest-first prefix of the chain) drop their parent's `num_children`
    /// and lose their initial reference (spec §1.8). Returns the AVC frees.
    ///
    /// The kernel puts the emptied AVs in a second pass; putting each as its node goes
    /// gives the same frees in the same order: a put can free only the AV itself and its
    /// root, and the root, last in the chain, keeps its initial reference until reached.
    pub fn unlink(&mut self, chain: u32, av: u32) -> u32 {
        let freed = self.unlink_uncounted(chain, av);
        self.avc.sub(freed as u64);
        freed
    }

    /// `unlink`, leaving its AVC frees for the caller to count.
    #[inline]
    pub fn unlink_uncounted(&mut self, chain: u32, av: u32) -> u32 {
        let freed = self.len(chain);
        if av != NIL {
            self.m(av).num_active_vmas -= 1;
        }
        let mut x = chain;
        while x != NIL {
            let n = self.m(x);
            n.refs -= 1;
            if n.refs > 0 {
                break;
            }
            let (p, next) = (n.parent, n.next);
            self.m(p).num_children -= 1;
            self.put(x);
            x = next;
        }
        freed
    }

    /// `put_anon_vma` → `__put_anon_vma`: a non-root AV drops its root reference when freed.
    #[inline]
    pub fn put(&mut self, x: u32) {
        self.put_n(x, 1);
    }

    /// `n` puts at once: a scenario's `ksm merge PID ADDR 2000000000` dropped 2e9 references
    /// one call each (16 s, found by fuzzing).
    fn put_n(&mut self, x: u32, n: u32) {
        let a = self.m(x);
        a.refcount -= n;
        if a.refcount > 0 {
            return;
        }
        let root = a.root;
        self.free_av(x);
        if root != x {
            let r = self.m(root);
            r.refcount -= 1;
            if r.refcount == 0 {
                self.free_av(root);
            }
        }
    }

    /// Only once `refcount` is 0.
    #[inline]
    fn free_av(&mut self, x: u32) {
        debug_assert_eq!(self.get(x).refcount, 0);
        self.av.sub(1);
        self.avs.remove(x);
    }

    /// A KSM stable-tree rmap_item takes a reference (`get_anon_vma`). `false`: the count
    /// would pass what the kernel's `atomic_t refcount` holds (i32::MAX), nothing taken.
    pub fn ksm_get(&mut self, x: u32, n: u32) -> bool {
        let a = self.m(x);
        match a.refcount.checked_add(n).filter(|&r| r <= i32::MAX as u32) {
            Some(r) => a.refcount = r,
            None => return false,
        }
        *self.ksm.entry(x).or_default() += n;
        true
    }
    pub fn ksm_put(&mut self, x: u32, n: u32) {
        let k = self.ksm.get_mut(&x).expect("KSM references taken");
        *k -= n;
        if *k == 0 {
            self.ksm.remove(&x);
        }
        self.put_n(x, n);
    }
    pub fn ksm_refs(&self, x: u32) -> u32 {
        self.ksm.get(&x).copied().unwrap_or(0)
    }

    /// How the nodes of live chains are shared, for invariant checks: `Err` unless every
    /// node's refs are the VMAs starting there (`heads`) plus the nodes pointing at it,
    /// and every other live AV's node is dead. Returns the node of each AV (itself).
    pub fn check_nodes(&self, heads: impl Iterator<Item = u32>) -> Result<std::collections::HashMap<u32, u32>, String> {
        let mut want = std::collections::HashMap::<u32, u32>::new();
        let mut seen = std::collections::HashSet::new();
        let mut stack: Vec<u32> = heads.filter(|&h| h != NIL).collect();
        for &h in &stack {
            *want.entry(h).or_default() += 1;
        }
        while let Some(c) = stack.pop() {
            if seen.insert(c) {
                let next = self.avs.get(c).next;
                if next != NIL {
                    *want.entry(next).or_default() += 1;
                    stack.push(next);
                }
            }
        }
        let mut node_of = std::collections::HashMap::new();
        for (&c, &w) in &want {
            let n = self.avs.get(c);
            if n.refs != w {
                return Err(format!("chain node of anon_vma {c}: {} refs but {w} holders", n.refs));
            }
            node_of.insert(c, c);
        }
        for x in self.live_ids() {
            let n = self.avs.get(x);
            if !want.contains_key(&x) && n.refs != 0 {
                return Err(format!("chain node of anon_vma {x}: {} refs but no holder", n.refs));
            }
        }
        Ok(node_of)
    }

    /// Live AV ids (for invariant checks).
    pub fn live_ids(&self) -> Vec<u32> {
        let mut free = vec![false; self.avs.slots() as usize];
        for &f in self.avs.free_ids() {
            free[f as usize] = true;
        }
        (0..self.avs.slots()).filter(|&i| !free[i as usize]).collect()
    }
}

/// One AV as `crate::seed` found it in a kernel topology; links are indices into the
/// slice given to [`AnonVmas::seed`]. 28 bytes, not 48 with `usize` links: a seed holds one
/// per anon_vma of the snapshot (1 M at `trace -p`'s largest) until the trace ends, and its
/// lazy side as many again while it builds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SeedAv {
    root: u32,
    parent: u32,
    /// The next (older) AV of every chain through this one; `NIL` when none.
    next: u32,
    pub refcount: u32,
    pub num_children: u32,
    pub num_active_vmas: u32,
    /// Holders of this AV's chain node: VMAs whose chain starts here, newer AVs whose
    /// `next` it is, and a pin for links from outside the topology.
    pub refs: u32,
}

impl SeedAv {
    /// Links below `NIL` (`crate::seed` indexes fewer than 2^32 - 2 anon_vmas).
    pub(crate) fn new(root: usize, parent: usize, next: Option<usize>, refcount: u32, num_children: u32, num_active_vmas: u32, refs: u32) -> SeedAv {
        let ix = |i: usize| u32::try_from(i).ok().filter(|&i| i != NIL).expect("fewer than 2^32 - 1 anon_vmas");
        SeedAv { root: ix(root), parent: ix(parent), next: next.map_or(NIL, ix), refcount, num_children, num_active_vmas, refs }
    }

    pub(crate) fn root(&self) -> usize {
        self.root as usize
    }

    pub(crate) fn parent(&self) -> usize {
        self.parent as usize
    }

    pub(crate) fn next(&self) -> Option<usize> {
        (self.next != NIL).then_some(self.next as usize)
    }
}

// Seeding (`crate::seed`): objects made as a snapshot shows them, not by the rmap.c paths.
// Kept apart from the rmap functions above.
impl AnonVmas {
    /// Make every AV of `avs` (counted as allocated); returns their ids, index for index.
    /// Chains must be acyclic (`next` leads to a root).
    pub(crate) fn seed(&mut self, avs: &[SeedAv]) -> Vec<u32> {
        let ids: Vec<u32> = avs.iter().map(|_| self.avs.alloc()).collect();
        for (s, &id) in avs.iter().zip(&ids) {
            let a = self.m(id);
            a.root = ids[s.root()];
            a.parent = ids[s.parent()];
            a.refcount = s.refcount;
            a.num_children = s.num_children;
            a.num_active_vmas = s.num_active_vmas;
            a.next = s.next().map_or(NIL, |n| ids[n]);
            a.refs = s.refs;
            a.len = 0;
        }
        for &id in &ids {
            let len = self.chain(id).count() as u32;
            self.m(id).len = len;
        }
        self.av.add(avs.len() as u64);
        ids
    }

    /// The fields a snapshot reads from AV `x`: (root, parent, refcount, num_children,
    /// num_active_vmas) (`crate::seed`'s exporter).
    pub(crate) fn fields(&self, x: u32) -> (u32, u32, u32, u32, u32) {
        let a = self.get(x);
        (a.root, a.parent, a.refcount, a.num_children, a.num_active_vmas)
    }
}
