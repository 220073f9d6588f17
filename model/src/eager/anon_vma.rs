//! `struct anon_vma` objects and the per-VMA chains of `anon_vma_chain` links, with the
//! rmap.c functions that allocate and free them (spec §0, §1.2–§1.4, §1.8).
//!
//! Dense ids: AVs live in a slab-style `Vec` with a free list. A chain is a shared,
//! refcounted cons list (newest first): a fork child's chain is `[B] + chain(parent)` and a
//! split's chain is the same list, so both cost O(1) memory. The kernel still has one AVC
//! per (VMA, AV) pair; `tree` counts them per AV and the counters count them per VMA.

use crate::counts::Counter;
use crate::kernel::Kernel;

pub(crate) const NIL: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
pub(crate) struct AnonVma {
    pub root: u32,
    pub parent: u32,
    pub refcount: u32,
    pub num_children: u32,
    pub num_active_vmas: u32,
    /// AVCs in `tree(X)` (`rb_root`), from any VMA of any mm.
    pub tree: u32,
}

impl AnonVma {
    /// Pre-6.0 `degree`: 2555283eb40d split it into exactly these two counts (every
    /// `degree++/--` of the old code is a `num_children` or `num_active_vmas` one now).
    #[inline]
    pub fn degree(&self) -> u32 {
        self.num_children + self.num_active_vmas
    }
}

#[derive(Clone, Copy, Debug)]
struct Node {
    av: u32,
    next: u32,
    refs: u32,
    len: u32,
}

#[derive(Default)]
pub(crate) struct AnonVmas {
    avs: Vec<AnonVma>,
    free_avs: Vec<u32>,
    nodes: Vec<Node>,
    free_nodes: Vec<u32>,
    pub av: Counter,
    pub avc: Counter,
    /// Scratch for walking a chain oldest→newest without allocating.
    scratch: Vec<u32>,
    /// References held by KSM stable-tree rmap_items (part of `refcount`), per AV.
    ksm: std::collections::HashMap<u32, u32>,
}

impl AnonVmas {
    #[inline]
    pub fn get(&self, x: u32) -> &AnonVma {
        &self.avs[x as usize]
    }
    #[inline]
    fn m(&mut self, x: u32) -> &mut AnonVma {
        &mut self.avs[x as usize]
    }

    pub fn heap_bytes(&self) -> usize {
        self.avs.capacity() * std::mem::size_of::<AnonVma>()
            + self.nodes.capacity() * std::mem::size_of::<Node>()
            + (self.free_avs.capacity() + self.free_nodes.capacity() + self.scratch.capacity()) * 4
    }

    /// `anon_vma_alloc()`: refcount 1, root and parent self (spec §0 table).
    fn alloc_av(&mut self) -> u32 {
        self.av.add(1);
        let id = match self.free_avs.pop() {
            Some(id) => id,
            None => {
                self.avs.push(AnonVma { root: 0, parent: 0, refcount: 0, num_children: 0, num_active_vmas: 0, tree: 0 });
                (self.avs.len() - 1) as u32
            }
        };
        self.avs[id as usize] =
            AnonVma { root: id, parent: id, refcount: 1, num_children: 0, num_active_vmas: 0, tree: 0 };
        id
    }

    // ---- chains -------------------------------------------------------------------------

    #[inline]
    pub fn len(&self, chain: u32) -> u32 {
        if chain == NIL { 0 } else { self.nodes[chain as usize].len }
    }
    /// Newest AV of a chain.
    #[inline]
    pub fn head(&self, chain: u32) -> u32 {
        if chain == NIL { NIL } else { self.nodes[chain as usize].av }
    }
    /// AVs of a chain, newest first.
    pub fn chain(&self, mut chain: u32) -> impl Iterator<Item = u32> + '_ {
        std::iter::from_fn(move || {
            if chain == NIL {
                return None;
            }
            let n = self.nodes[chain as usize];
            chain = n.next;
            Some(n.av)
        })
    }
    pub fn chain_vec(&self, chain: u32) -> Vec<u32> {
        self.chain(chain).collect()
    }
    fn cons(&mut self, av: u32, next: u32) -> u32 {
        let len = self.len(next) + 1;
        let node = Node { av, next, refs: 1, len };
        match self.free_nodes.pop() {
            Some(id) => {
                self.nodes[id as usize] = node;
                id
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        }
    }
    #[inline]
    fn chain_get(&mut self, chain: u32) -> u32 {
        if chain != NIL {
            self.nodes[chain as usize].refs += 1;
        }
        chain
    }
    pub fn chain_put(&mut self, mut chain: u32) {
        while chain != NIL {
            let n = &mut self.nodes[chain as usize];
            n.refs -= 1;
            if n.refs > 0 {
                return;
            }
            let next = n.next;
            self.free_nodes.push(chain);
            chain = next;
        }
    }

    /// One AVC linking a VMA to `x` (`anon_vma_chain_link`).
    #[inline]
    fn link(&mut self, x: u32) {
        self.avc.add(1);
        self.m(x).tree += 1;
    }

    // ---- rmap.c -------------------------------------------------------------------------

    /// `__anon_vma_prepare` after `find_mergeable_anon_vma` returned `reuse`: +1 AVC, and
    /// +1 AV (a new root, num_children = 1 for its self-parent link) unless reused.
    /// Returns `(chain, av)` of the VMA.
    pub fn prepare(&mut self, reuse: Option<u32>) -> (u32, u32) {
        let x = match reuse {
            Some(x) => x,
            None => {
                let x = self.alloc_av();
                // num_children: the self-parent link; pre-6.0 `degree`: alloc 1 + this VMA.
                self.m(x).num_children = 1;
                x
            }
        };
        self.link(x);
        self.m(x).num_active_vmas += 1;
        (self.cons(x, NIL), x)
    }

    /// `anon_vma_clone(dst, src)` for non-fork callers (split, copy_vma, dup_anon_vma):
    /// `dst->anon_vma` is preset to `src->anon_vma`; +L(src) AVC.
    pub fn clone_chain(&mut self, chain: u32, av: u32) -> (u32, u32) {
        let mut c = chain;
        while c != NIL {
            let n = self.nodes[c as usize];
            self.link(n.av);
            c = n.next;
        }
        if av != NIL {
            self.m(av).num_active_vmas += 1;
        }
        (self.chain_get(chain), av)
    }

    /// `anon_vma_fork(vma, pvma)` for a parent VMA with an anon_vma: clone with the reuse
    /// test (first AV in root→leaf order that qualifies), else a new child AV.
    pub fn fork(&mut self, pchain: u32, pav: u32, kernel: Kernel) -> (u32, u32) {
        debug_assert!(pav != NIL);
        let mut order = std::mem::take(&mut self.scratch);
        order.clear();
        order.extend(self.chain(pchain));
        let mut reused = NIL;
        for &x in order.iter().rev() {
            self.link(x);
            if reused == NIL {
                let a = self.get(x);
                let ok = if kernel.uses_degree() {
                    x != pav && a.degree() < 2
                } else {
                    a.num_children < 2 && a.num_active_vmas == 0
                };
                if ok {
                    reused = x;
                }
            }
        }
        self.scratch = order;
        if reused != NIL {
            self.m(reused).num_active_vmas += 1;
            return (self.chain_get(pchain), reused);
        }
        let b = self.child_of(pchain);
        // The chain node that `child_of` built points at `pchain`; take its reference.
        (b.0, b.1)
    }

    /// A new AV `B` whose parent is the newest AV of `chain` (what `anon_vma_fork` allocates,
    /// and what a lazy TREE_PARENT VMA gets when it is given its own anon_vma): +1 AV +1 AVC.
    pub fn child_of(&mut self, chain: u32) -> (u32, u32) {
        let parent = self.head(chain);
        let root = self.get(parent).root;
        let b = self.alloc_av();
        {
            let bm = self.m(b);
            bm.root = root;
            bm.parent = parent;
            bm.num_active_vmas = 1;
        }
        self.m(root).refcount += 1;
        self.m(parent).num_children += 1;
        self.link(b);
        let tail = self.chain_get(chain);
        (self.cons(b, tail), b)
    }

    /// `unlink_anon_vmas(vma)`: frees exactly L AVCs; AVs whose tree empties lose their
    /// initial reference in a second pass (spec §1.8). Returns the AVC frees.
    pub fn unlink(&mut self, chain: u32, av: u32) -> u32 {
        let mut emptied = std::mem::take(&mut self.scratch);
        emptied.clear();
        let mut c = chain;
        let mut freed = 0;
        while c != NIL {
            let n = self.nodes[c as usize];
            let x = self.m(n.av);
            x.tree -= 1;
            if x.tree == 0 {
                let p = x.parent;
                self.m(p).num_children -= 1;
                emptied.push(n.av);
            } else {
                self.avc.sub(1);
                freed += 1;
            }
            c = n.next;
        }
        if av != NIL {
            self.m(av).num_active_vmas -= 1;
        }
        for &x in &emptied {
            self.put(x);
            self.avc.sub(1);
            freed += 1;
        }
        self.scratch = emptied;
        debug_assert_eq!(freed, self.len(chain), "unlink_anon_vmas frees exactly L AVCs");
        self.chain_put(chain);
        freed
    }

    /// `put_anon_vma` → `__put_anon_vma`: a non-root AV drops its root reference when freed.
    pub fn put(&mut self, x: u32) {
        let a = self.m(x);
        a.refcount -= 1;
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

    fn free_av(&mut self, x: u32) {
        self.av.sub(1);
        self.m(x).refcount = 0;
        self.free_avs.push(x);
    }

    /// A KSM stable-tree rmap_item takes a reference (`get_anon_vma`).
    pub fn ksm_get(&mut self, x: u32, n: u32) {
        self.m(x).refcount += n;
        *self.ksm.entry(x).or_default() += n;
    }
    pub fn ksm_put(&mut self, x: u32, n: u32) {
        let k = self.ksm.get_mut(&x).expect("KSM references taken");
        *k -= n;
        if *k == 0 {
            self.ksm.remove(&x);
        }
        for _ in 0..n {
            self.put(x);
        }
    }
    pub fn ksm_refs(&self, x: u32) -> u32 {
        self.ksm.get(&x).copied().unwrap_or(0)
    }

    /// Live AV ids (for invariant checks).
    pub fn live_ids(&self) -> Vec<u32> {
        let mut free = vec![false; self.avs.len()];
        for &f in &self.free_avs {
            free[f as usize] = true;
        }
        (0..self.avs.len() as u32).filter(|&i| !free[i as usize]).collect()
    }
}
