//! Records of one pass → [`Topology`]: VMAs grouped per mm (threads and CLONE_VM
//! siblings fold into the first task seen), each with its chain, and every anon_vma seen.
use lazyvma_model::abi::{decode, Record, FIELD_ABSENT};
use lazyvma_model::topology::{AnonVmaInfo, ProcessTopo, Topology, VmaTopo};
use std::collections::{HashMap, HashSet};

#[derive(Debug, Default, serde::Serialize)]
pub struct PassStats {
    pub bytes: usize,
    pub records: usize,
    /// The same VMA reported by more than one task (kept once).
    pub duplicate_vmas: usize,
}

fn comm(raw: &[u8; 16]) -> String {
    String::from_utf8_lossy(&raw[..raw.iter().position(|&b| b == 0).unwrap_or(16)]).into_owned()
}

fn opt(v: u64) -> Option<u64> {
    (v != FIELD_ABSENT).then_some(v)
}

pub fn topology(bytes: &[u8]) -> anyhow::Result<(Topology, PassStats)> {
    let records = decode(bytes).map_err(|e| anyhow::anyhow!("iter/task_vma stream: {e}"))?;
    let mut stats = PassStats { bytes: bytes.len(), records: records.len(), ..Default::default() };
    let mut topo = Topology::default();
    let mut by_mm: HashMap<u64, usize> = HashMap::new();
    let mut seen: HashSet<u64> = HashSet::new();
    let mut chain: Vec<u64> = Vec::new();
    for rec in records {
        match rec {
            Record::Avc(a) => {
                chain.push(a.anon_vma);
                topo.anon_vmas.entry(a.anon_vma).or_insert(AnonVmaInfo {
                    root: a.root,
                    parent: a.parent,
                    refcount: i64::from(a.refcount),
                    num_children: opt(a.num_children).unwrap_or(0),
                    num_active_vmas: opt(a.num_active_vmas).unwrap_or(0),
                    degree: opt(a.degree),
                });
            }
            Record::Vma(v) => {
                let chain = std::mem::take(&mut chain);
                if !seen.insert(v.vma) {
                    stats.duplicate_vmas += 1;
                    continue;
                }
                let idx = *by_mm.entry(v.mm).or_insert_with(|| {
                    topo.processes.push(ProcessTopo { pid: v.pid, comm: comm(&v.comm), mm: v.mm, ..Default::default() });
                    topo.processes.len() - 1
                });
                topo.processes[idx].vmas.push(VmaTopo {
                    start: v.vm_start,
                    end: v.vm_end,
                    pgoff: v.vm_pgoff,
                    flags: v.vm_flags,
                    anon_vma: (v.anon_vma != 0).then_some(v.anon_vma),
                    chain,
                    chain_len: v.chain_len as u32,
                });
            }
        }
    }
    if !chain.is_empty() {
        anyhow::bail!("iter/task_vma stream ends with {} chain entries and no VMA record", chain.len());
    }
    Ok((topo, stats))
}
