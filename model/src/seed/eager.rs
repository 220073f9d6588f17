//! The eager side of a seed: the kernel's objects as the topology shows them, checked
//! (`check_processes`), and indexed with what the topology accounts for (`build`).
use super::{Avs, Built, Link, SeedError};
use crate::engine::anon_vma::SeedAv;
use crate::engine::vma::ADDR_LIMIT;
use crate::event::{Pid, PAGE_SIZE, PGOFF_BITS};
use crate::kernel::Kernel;
use crate::topology::ProcessTopo;

/// What each process alone must satisfy: VMAs the model can hold, chains seen whole,
/// anon_vmas present, root last.
pub(super) fn check_processes(procs: &[ProcessTopo], avs: &Avs) -> Result<(), SeedError> {
    let mut pids = std::collections::HashSet::new();
    for p in procs {
        if !pids.insert(p.pid) {
            return Err(SeedError::Process { pid: p.pid, what: "listed twice".into() });
        }
        let mut last_end = 0;
        for v in &p.vmas {
            let err = |what: String| SeedError::Vma { pid: p.pid, start: v.start, what };
            if v.start % PAGE_SIZE != 0 || v.end % PAGE_SIZE != 0 || v.start >= v.end || v.end > ADDR_LIMIT {
                return Err(err(format!("bounds {:#x}..{:#x} the model cannot hold", v.start, v.end)));
            }
            if v.start < last_end {
                return Err(err("overlaps or precedes the VMA before it".into()));
            }
            last_end = v.end;
            if v.pgoff + (v.end - v.start) / PAGE_SIZE > 1 << PGOFF_BITS {
                return Err(err(format!("pgoff {:#x} is above the model's 2^{PGOFF_BITS}", v.pgoff)));
            }
            if v.chain.len() < v.chain_len as usize {
                return Err(err(format!("chain cut short: {} of {} entries seen", v.chain.len(), v.chain_len)));
            }
            if v.chain.len() > v.chain_len as usize {
                return Err(err(format!("{} chain entries but chain_len {}", v.chain.len(), v.chain_len)));
            }
            let Some(&root) = v.chain.last() else {
                if let Some(av) = v.anon_vma {
                    return Err(err(format!("anon_vma {av:#x} but an empty chain")));
                }
                continue;
            };
            let Some(av) = v.anon_vma else {
                return Err(err("a chain but no anon_vma".into()));
            };
            if !v.chain.contains(&av) {
                return Err(err(format!("anon_vma {av:#x} is not in its own chain")));
            }
            for (i, a) in v.chain.iter().enumerate() {
                let info = avs.get(*a).ok_or_else(|| err(format!("anon_vma {a:#x} of its chain is missing from the topology")))?;
                if info.root != root {
                    return Err(err(format!("anon_vma {a:#x} has root {:#x}, its chain ends at {root:#x}", info.root)));
                }
                if v.chain[..i].contains(a) {
                    return Err(err(format!("anon_vma {a:#x} twice in its chain")));
                }
            }
            // Present: the loop above looked every entry up.
            if avs.get(root).is_some_and(|r| r.parent != root) {
                return Err(err(format!("root {root:#x} has a parent")));
            }
        }
    }
    Ok(())
}

/// `next` of an anon_vma not yet on any chain, and of one that ends its chains (4 bytes
/// each, not an `Option<Option<usize>>`'s 16: 1 M anon_vmas at `trace -p`'s peak).
const UNSET: u32 = u32::MAX;
const END: u32 = u32::MAX - 1;

fn next_of(n: u32) -> Option<Option<usize>> {
    match n {
        UNSET => None,
        END => Some(None),
        y => Some(Some(y as usize)),
    }
}

/// `procs`' eager structure. Once nothing of them can be refused any more, `take` is handed
/// `procs` (left empty): a caller that keeps no `ProcessTopo` frees them before the
/// anon_vmas' last arrays are made. On an error `procs` is as it was.
pub(super) fn build(procs: &mut Vec<ProcessTopo>, avs: &Avs, kernel: Kernel, take: impl FnOnce(Vec<ProcessTopo>)) -> Result<Built, SeedError> {
    // Indices in the order the chains first reach each anon_vma, as the model numbers them;
    // found by address through `avs`' sorted keys (no hash map: ~36 MB at 1 M anon_vmas).
    if avs.len() >= END as usize {
        let pid = procs.first().map_or(0, |p| p.pid);
        return Err(SeedError::Process { pid, what: format!("{} anon_vmas: the seed indexes fewer than 2^32 - 2", avs.len()) });
    }
    let mut ix_of_pos = vec![UNSET; avs.len()];
    // At most every anon_vma of `avs` (all when, as the seed keeps it, every one is reached).
    let (mut pos_of_ix, mut addrs, mut first_pid) = (Vec::with_capacity(avs.len()), Vec::with_capacity(avs.len()), Vec::<Pid>::with_capacity(avs.len()));
    for p in procs.iter() {
        for v in &p.vmas {
            for &a in &v.chain {
                let pos = avs.pos(a).ok_or_else(|| SeedError::Vma {
                    pid: p.pid,
                    start: v.start,
                    what: format!("anon_vma {a:#x} of its chain is missing from the topology"),
                })?;
                if ix_of_pos[pos] == UNSET {
                    ix_of_pos[pos] = addrs.len() as u32;
                    pos_of_ix.push(pos as u32);
                    addrs.push(a);
                    first_pid.push(p.pid);
                }
            }
        }
    }
    let of = |a: u64| avs.pos(a).map(|p| ix_of_pos[p]).filter(|&x| x != UNSET).map(|x| x as usize);
    let n = addrs.len();
    let info = |x: usize| avs.info[pos_of_ix[x] as usize];
    let av_err = |i: usize, what: String| SeedError::AnonVma { pid: first_pid[i], av: addrs[i], what };
    // The chain after each anon_vma is the same in every chain through it (the kernel
    // builds chains by cloning whole chains and putting one new anon_vma in front).
    let mut next = vec![UNSET; n];
    let mut heads = vec![0u32; n];
    let mut active = vec![0u32; n];
    let mut vmas = Vec::with_capacity(procs.len());
    // The head of the first chain seen with each anon_vma as its VMA's: with every `next`
    // agreeing, two chains are equal exactly when their heads are.
    let mut chain_of_av = vec![UNSET; n];
    let mut idx: Vec<usize> = Vec::new();
    for p in procs.iter() {
        let mut pv = Vec::with_capacity(p.vmas.len());
        for v in &p.vmas {
            if v.chain.is_empty() {
                pv.push(Link::NONE);
                continue;
            }
            idx.clear();
            // Every entry was indexed above.
            idx.extend(v.chain.iter().filter_map(|&a| of(a)));
            for (k, &x) in idx.iter().enumerate() {
                let after = idx.get(k + 1).copied();
                match next_of(next[x]) {
                    None => next[x] = after.map_or(END, |y| y as u32),
                    Some(seen) if seen != after => {
                        let what = format!(
                            "chain continues with {:#x} here but {:#x} elsewhere",
                            v.chain.get(k + 1).copied().unwrap_or(0),
                            seen.map_or(0, |s| addrs[s])
                        );
                        return Err(SeedError::Vma { pid: p.pid, start: v.start, what });
                    }
                    Some(_) => {}
                }
            }
            let Some(av) = v.anon_vma.and_then(of) else {
                return Err(SeedError::Vma { pid: p.pid, start: v.start, what: "a chain but no anon_vma of it".into() });
            };
            match chain_of_av[av] {
                UNSET => chain_of_av[av] = idx[0] as u32,
                h if h as usize != idx[0] => {
                    let what = format!("shares anon_vma {:#x} with a VMA of another chain", addrs[av]);
                    return Err(SeedError::Vma { pid: p.pid, start: v.start, what });
                }
                _ => {}
            }
            heads[idx[0]] += 1;
            active[av] += 1;
            pv.push(Link::new(idx[0], av));
        }
        vmas.push(pv);
    }
    drop(chain_of_av);
    let mut nexts = vec![0u32; n];
    let mut children = vec![0u32; n];
    let mut rooted = vec![0u32; n];
    let mut parent = vec![0u32; n];
    let after = |y: usize| next_of(next[y]).flatten();
    for x in 0..n {
        if let Some(y) = after(x) {
            nexts[y] += 1;
        }
        let i = info(x);
        let p = of(i.parent).ok_or_else(|| av_err(x, format!("parent {:#x} is missing from the topology", i.parent)))?;
        // anon_vma_fork clones the parent VMA's chain, which holds the parent, behind the
        // child: every chain through an anon_vma holds its parent after it.
        if !std::iter::successors(Some(x), |&y| after(y)).any(|y| y == p) {
            return Err(av_err(x, format!("parent {:#x} is not on its chain", i.parent)));
        }
        parent[x] = p as u32;
        if p != x {
            children[p] += 1;
            // check_processes: every chain's anon_vmas have its root, which is on it.
            rooted[of(i.root).ok_or_else(|| av_err(x, format!("root {:#x} is missing from the topology", i.root)))?] += 1;
        }
    }
    // An anon_vma's fields as the model takes them, or why the topology's are refused.
    let fields = |x: usize| -> Result<(SeedAv, SeenCounts), SeedError> {
        let i = info(x);
        let root = of(i.root).ok_or_else(|| av_err(x, format!("root {:#x} is missing from the topology", i.root)))?;
        // The root's self-parent link counts once in its num_children.
        let seen_children = children[x] + u32::from(root == x);
        let (nc, na) = match i.degree {
            Some(d) if kernel == Kernel::Pre6_0 => {
                let d = u32::try_from(d).map_err(|_| av_err(x, format!("degree {d} out of range")))?;
                let seen = seen_children + active[x];
                if d < seen {
                    return Err(av_err(x, format!("degree {d} but {seen} holders in the topology")));
                }
                // Outside holders cannot be told apart: the reuse test reads only the sum.
                (seen_children, active[x] + (d - seen))
            }
            Some(_) => return Err(av_err(x, format!("a pre-6.0 `degree` field, but kernel rules {}", kernel.name()))),
            None => {
                let c = u32::try_from(i.num_children).map_err(|_| av_err(x, "num_children out of range".into()))?;
                let a = u32::try_from(i.num_active_vmas).map_err(|_| av_err(x, "num_active_vmas out of range".into()))?;
                if c < seen_children || a < active[x] {
                    let what = format!("num_children {c} / num_active_vmas {a}, but the topology shows {seen_children} / {}", active[x]);
                    return Err(av_err(x, what));
                }
                (c, a)
            }
        };
        let outside = nc > seen_children || na > active[x];
        let holders = 1 + rooted[x];
        let refcount = u32::try_from(i.refcount).ok().filter(|&r| r >= holders);
        let refcount = refcount.ok_or_else(|| av_err(x, format!("refcount {} below its {holders} holders in the topology", i.refcount)))?;
        let seen = SeenCounts { children: seen_children.min(nc), active: active[x].min(na), holders, pinned: outside };
        Ok((SeedAv::new(root, parent[x] as usize, after(x), refcount, nc, na, heads[x] + nexts[x] + u32::from(outside)), seen))
    };
    // Every refusal first, while the caller may still leave a process out and build again...
    for x in 0..n {
        fields(x)?;
    }
    // ...then the processes go to the caller (at 1 M VMAs their `VmaTopo` arrays, ~80 MB,
    // go back before the 44 bytes an anon_vma below are made: `trace -p`'s peak)...
    take(std::mem::take(procs));
    // ...and the same fields again, checked above.
    let mut eager = Vec::with_capacity(n);
    let mut seen = Vec::with_capacity(n);
    for x in 0..n {
        let (e, s) = fields(x)?;
        eager.push(e);
        seen.push(s);
    }
    Ok(Built { eager, addrs, vmas, seen })
}

/// What the topology itself shows of one eager anon_vma.
pub(super) struct SeenCounts {
    /// `num_children` the topology accounts for (the root's self link included).
    pub children: u32,
    /// `num_active_vmas` it accounts for (pre-6.0: outside holders went to the kernel's
    /// count, see `build`).
    pub active: u32,
    /// References it accounts for: the initial one, and one per non-root anon_vma rooted here.
    pub holders: u32,
    /// Linked from outside the topology: its chain node never empties here.
    pub pinned: bool,
}
