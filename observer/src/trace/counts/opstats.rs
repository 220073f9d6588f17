//! Counts of the `KernelOp` stream for the report: ops by kind, the object counts they
//! imply (to hold against the slab ground truth), and rmap walks by caller with the time
//! spent waiting for the root anon_vma lock.
use crate::report::trace_doc as doc;
use crate::trace::ingest::ops::{KernelOp, Op, OP_NAMES};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;

/// What the ops say the slab must show: the report's own type.
pub use doc::Implied;

pub struct OpStats {
    pub counts: BTreeMap<&'static str, u64>,
    pub implied: Implied,
    /// Failed calls (ret ≠ 0) of prepare/fork/clone/split: not in `implied`.
    pub failed: u64,
    pub clone_avc_by_reason: BTreeMap<&'static str, u64>,
    pub unlink_avc_by_reason: BTreeMap<&'static str, u64>,
    pub merges: BTreeMap<String, u64>,
    pub walks_by_caller: BTreeMap<String, u64>,
    pub anon_walks: u64,
    pub locks: u64,
    pub contended: u64,
    wait_ns: Histogram<u64>,
    /// Teardown ops of the command's process before its exec (lazyvma's own forked image),
    /// left out like the slab report's launcher frees.
    pub launcher: u64,
    /// Chains at the walk limit: their L is a lower bound.
    pub chain_saturated: u64,
}

impl Default for OpStats {
    fn default() -> OpStats {
        OpStats {
            counts: OP_NAMES.iter().map(|n| (*n, 0)).collect(),
            implied: Implied::default(),
            failed: 0,
            clone_avc_by_reason: BTreeMap::new(),
            unlink_avc_by_reason: BTreeMap::new(),
            merges: BTreeMap::new(),
            walks_by_caller: BTreeMap::new(),
            anon_walks: 0,
            locks: 0,
            contended: 0,
            wait_ns: Histogram::new(3).expect("3 significant digits is valid"),
            launcher: 0,
            chain_saturated: 0,
        }
    }
}

impl OpStats {
    pub fn add(&mut self, op: &Op) {
        *self.counts.entry(op.op.name()).or_default() += 1;
        let i = &mut self.implied;
        let sat = |l: u64| l >= lazyvma_model::hook_abi::HOOK_CHAIN_MAX;
        match &op.op {
            KernelOp::Prepare { vma, ret, reused_neighbour, .. } => match (*ret, vma.anon_vma) {
                (0, av) if av != 0 && *reused_neighbour => i.prepare_reused_neighbour += 1,
                (0, av) if av != 0 => i.prepare_new_anon_vma += 1,
                _ => self.failed += 1,
            },
            KernelOp::Fork { vma, pvma, ret, reused_ancestor } => match (*ret, pvma.anon_vma, vma.anon_vma) {
                (0, 0, _) => {}
                (0, _, av) if av != 0 && *reused_ancestor => i.fork_reused_ancestor += 1,
                (0, _, av) if av != 0 => i.fork_new_anon_vma += 1,
                _ => self.failed += 1,
            },
            KernelOp::Clone { src, ret, reason, .. } => {
                if *ret == 0 {
                    i.clone_avc += src.chain_len;
                    *self.clone_avc_by_reason.entry(reason).or_default() += src.chain_len;
                    self.chain_saturated += sat(src.chain_len) as u64;
                } else {
                    self.failed += 1;
                }
            }
            KernelOp::Unlink { vma, reason } => {
                i.unlink_avc += vma.chain_len;
                *self.unlink_avc_by_reason.entry(reason).or_default() += vma.chain_len;
                self.chain_saturated += sat(vma.chain_len) as u64;
            }
            KernelOp::PutAnonVma { root_freed, .. } => i.put_anon_vma_frees += 1 + *root_freed as u64,
            KernelOp::Split { ret, .. } if *ret != 0 => self.failed += 1,
            KernelOp::Merge { function, caller, merged, .. } => {
                let key = format!("{function}{}{}", if caller.is_empty() { "" } else { " in " }, caller);
                *self.merges.entry(if *merged { key } else { format!("{key} (no merge)") }).or_default() += 1;
            }
            KernelOp::RmapWalk { caller, anon, anon_vma, wait_ns, contended, .. } => {
                *self.walks_by_caller.entry(caller.clone()).or_default() += 1;
                self.anon_walks += *anon as u64;
                if *anon_vma != 0 || *contended {
                    self.locks += 1;
                    self.contended += *contended as u64;
                    self.wait_ns.saturating_record(*wait_ns);
                }
            }
            _ => {}
        }
    }

    pub fn walks(&self) -> u64 {
        self.walks_by_caller.values().sum()
    }

    /// The report's `ops`.
    pub fn ops(&self) -> doc::Ops {
        let named = |m: &BTreeMap<&'static str, u64>| m.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        doc::Ops {
            counts: named(&self.counts),
            implied: self.implied,
            failed: self.failed,
            clone_avc_by_reason: named(&self.clone_avc_by_reason),
            unlink_avc_by_reason: named(&self.unlink_avc_by_reason),
            merges: self.merges.clone(),
            launcher_ops: self.launcher,
            chain_saturated: self.chain_saturated,
        }
    }

    /// The report's `rmap`.
    pub fn rmap(&self) -> doc::Rmap {
        let h = &self.wait_ns;
        doc::Rmap {
            walks: self.walks(),
            anon_walks: self.anon_walks,
            by_caller: self.walks_by_caller.clone(),
            locks: self.locks,
            contended: self.contended,
            wait_ns: doc::Quantiles { p50: h.value_at_quantile(0.5), p99: h.value_at_quantile(0.99), max: h.max() },
        }
    }
}
