//! The lazy side of a seed: the anon_vmas `snapshot::classify`'s states still link, with
//! their fields recomputed over the lazy chains.
use super::Built;
use crate::engine::anon_vma::SeedAv;
use crate::snapshot::LazyState;

/// The lazy side's anon_vmas: those its chains still link, renumbered.
pub(super) struct LazyAvs {
    pub avs: Vec<SeedAv>,
    /// eager index → lazy index; `u32::MAX` when none (4 bytes an anon_vma, not 16).
    of: Vec<u32>,
    /// Chain length per lazy index.
    pub len: Vec<u32>,
}

impl LazyAvs {
    fn of(&self, x: usize) -> Option<usize> {
        let i = self.of[x];
        (i != u32::MAX).then_some(i as usize)
    }

    /// (lazy chain head, lazy anon_vma) of a TREE or TREE_PARENT VMA.
    pub fn chain_of(&self, b: &Built, head: Option<usize>, av: Option<usize>, s: LazyState) -> (Option<usize>, Option<usize>) {
        let (h, a) = (head.expect("a TREE VMA has a chain"), av.expect("and an anon_vma"));
        match s {
            LazyState::Tree => (self.of(h), self.of(a)),
            // snapshot::lazy_chain: the head goes when it is the VMA's own anon_vma.
            _ if h == a => (b.eager[h].next().and_then(|n| self.of(n)), None),
            _ => (self.of(h), None),
        }
    }
}

pub(super) fn lazy_avs(b: &Built, states: &[Vec<LazyState>], enabled: bool) -> LazyAvs {
    let n = b.eager.len();
    let mut heads = vec![0u32; n];
    let mut active = vec![0u32; n];
    for (vmas, st) in b.vmas.iter().zip(states) {
        for (link, &s) in vmas.iter().zip(st) {
            let (h, a) = link.get();
            let s = if enabled || s == LazyState::None { s } else { LazyState::Tree };
            match (s, h, a) {
                (LazyState::Tree, Some(h), Some(a)) => {
                    heads[h] += 1;
                    active[a] += 1;
                }
                (LazyState::TreeParent, Some(h), Some(a)) if h == a => {
                    if let Some(nx) = b.eager[h].next() {
                        heads[nx] += 1;
                    }
                }
                (LazyState::TreeParent, Some(h), _) => heads[h] += 1,
                _ => {}
            }
        }
    }
    // Linked: reached from a lazy chain head by `next`.
    let mut linked = vec![false; n];
    for x in (0..n).filter(|&x| heads[x] > 0) {
        let mut y = Some(x);
        while let Some(z) = y.filter(|&z| !linked[z]) {
            linked[z] = true;
            y = b.eager[z].next();
        }
    }
    let mut of = vec![u32::MAX; n];
    let mut order = Vec::new();
    for x in (0..n).filter(|&x| linked[x]) {
        // Below u32::MAX: n is (`build`).
        of[x] = order.len() as u32;
        order.push(x);
    }
    let mut nexts = vec![0u32; n];
    let mut children = vec![0u32; n];
    let mut rooted = vec![0u32; n];
    for &x in &order {
        let e = &b.eager[x];
        if let Some(nx) = e.next() {
            nexts[nx] += 1;
        }
        if e.parent() != x {
            children[e.parent()] += 1;
            rooted[e.root()] += 1;
        }
    }
    let mut avs = Vec::with_capacity(order.len());
    let mut len = Vec::with_capacity(order.len());
    for &x in &order {
        let e = &b.eager[x];
        let seen_e = &b.seen[x];
        // What the kernel showed beyond the topology stays beyond it in lazy too.
        let ext_children = e.num_children - seen_e.children;
        let ext_active = e.num_active_vmas - seen_e.active;
        let ext_refs = e.refcount - seen_e.holders;
        let pin = u32::from(seen_e.pinned);
        let map = |i: usize| {
            let l = of[i];
            assert!(l != u32::MAX, "a lazy chain's parent and root are in lazy chains");
            l as usize
        };
        avs.push(SeedAv::new(
            map(e.root()),
            map(e.parent()),
            e.next().map(map),
            1 + rooted[x] + ext_refs,
            children[x] + u32::from(e.root() == x) + ext_children,
            active[x] + ext_active,
            heads[x] + nexts[x] + pin,
        ));
        len.push(std::iter::successors(Some(x), |&y| b.eager[y].next()).count() as u32);
    }
    LazyAvs { avs, of, len }
}
