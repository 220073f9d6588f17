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
    /// Every anon_vma reached from any chain, by address.
    pub anon_vmas: BTreeMap<u64, AnonVmaInfo>,
}
