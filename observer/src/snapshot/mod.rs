//! `lazyvma snapshot`: one iter/task_vma pass → topology → eager/lazy estimate → report.
pub mod decode;
pub mod reader;
pub mod render;

use lazyvma_model::snapshot::{classify, Counts, Estimate, LazyState, ProcessEstimate};
use lazyvma_model::topology::{Topology, VmaTopo};
use std::collections::BTreeMap;
use std::path::Path;

use crate::load::btf::{Btf, Offsets};
use crate::sys;

/// Bytes per object and where the number came from.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Size {
    pub bytes: u64,
    pub source: String,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Sizes {
    pub anon_vma: Size,
    pub anon_vma_chain: Size,
    pub vm_area_struct: Size,
}

/// What `/sys/kernel/slab` says, beside our count.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SlabCheck {
    pub cache: String,
    /// `None` when the cache is merged (its count would include foreign objects) or unreadable.
    pub objects: Option<u64>,
    pub merged_into: Option<String>,
    pub merged_with: Vec<String>,
}

pub struct Report {
    pub estimate: Estimate,
    /// The processes to list: the selection, or every process; by savings, largest first.
    pub shown: Vec<ProcessEstimate>,
    pub selected: bool,
    pub sizes: Sizes,
    pub slab: Vec<SlabCheck>,
    pub stats: decode::PassStats,
    pub elapsed_ms: f64,
    /// Parts of `elapsed_ms`: BTF parse, BPF load (verifier), the pass itself and the estimate.
    pub phases_ms: [(&'static str, f64); 3],
    pub kernel: String,
    /// Per shown pid, its VMAs with their lazy state (only when asked for).
    pub vmas: BTreeMap<u32, Vec<(VmaTopo, LazyState)>>,
    /// Chain length → VMAs with an anon_vma and that many chain entries (whole system).
    pub chain_lens: BTreeMap<u32, u64>,
    /// What the pass read (whole system): `--topology` writes it, `seed` builds a model from it.
    pub topology: Topology,
}

/// Slot size of the slab cache when readable (what /proc/slabinfo's "active KB" uses),
/// else `sizeof` from BTF.
fn size(cache: &str, btf_size: u64) -> Size {
    match sys::slab_cache(cache) {
        Ok(c) => Size { bytes: c.slab_size, source: format!("/sys/kernel/slab/{cache}/slab_size") },
        Err(_) => Size { bytes: btf_size, source: format!("BTF sizeof(struct {cache})") },
    }
}

fn slab_check(cache: &str) -> SlabCheck {
    match sys::slab_cache(cache) {
        Ok(c) => SlabCheck {
            cache: cache.into(),
            objects: if c.merged_into.is_some() { None } else { c.objects },
            merged_into: c.merged_into,
            merged_with: c.merged_with,
        },
        Err(_) => SlabCheck { cache: cache.into(), objects: None, merged_into: None, merged_with: vec![] },
    }
}

/// Bytes the lazy design would not hold for this process.
pub fn savings(p: &ProcessEstimate, s: &Sizes) -> i64 {
    let b = |c: &Counts| (c.anon_vma * s.anon_vma.bytes + c.anon_vma_chain * s.anon_vma_chain.bytes) as i64;
    b(&p.eager) - b(&p.lazy)
}

/// `pids`: `None` = every process. A selected pid the pass did not see (a kernel thread,
/// or gone meanwhile) is listed with zeros.
pub fn run(btf_path: Option<&Path>, pids: Option<&[u32]>, with_vmas: bool) -> anyhow::Result<Report> {
    let t0 = std::time::Instant::now();
    let btf = Btf::load(btf_path)?;
    let offsets = Offsets::resolve(&btf)?;
    let btf_ms = t0.elapsed().as_secs_f64() * 1e3;
    let (bytes, load_ms) = reader::read_pass(&offsets, btf_path)?;
    let (topo, stats) = decode::topology(&bytes)?;
    let estimate = lazyvma_model::snapshot::estimate(&topo, &lazyvma_model::knobs::Knobs::default())?;
    let elapsed_ms = t0.elapsed().as_secs_f64() * 1e3;

    let sizes = Sizes {
        anon_vma: size("anon_vma", offsets.size_anon_vma),
        anon_vma_chain: size("anon_vma_chain", offsets.size_anon_vma_chain),
        vm_area_struct: size("vm_area_struct", offsets.size_vm_area_struct),
    };
    let mut shown: Vec<ProcessEstimate> = match pids {
        None => estimate.processes.clone(),
        Some(pids) => pids
            .iter()
            .map(|&pid| {
                estimate.processes.iter().find(|p| p.pid == pid).cloned().unwrap_or_else(|| ProcessEstimate {
                    pid,
                    comm: std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().into(),
                    vmas: 0,
                    eager: Counts::default(),
                    lazy: Counts::default(),
                })
            })
            .collect(),
    };
    shown.sort_by_key(|p| (std::cmp::Reverse(savings(p, &sizes)), p.pid));
    let mut vmas = BTreeMap::new();
    if with_vmas {
        let states = classify(&topo);
        for (p, st) in topo.processes.iter().zip(states) {
            if shown.iter().any(|s| s.pid == p.pid) {
                vmas.insert(p.pid, p.vmas.iter().cloned().zip(st).collect());
            }
        }
    }
    let mut chain_lens = BTreeMap::new();
    for v in topo.processes.iter().flat_map(|p| &p.vmas).filter(|v| v.anon_vma.is_some()) {
        *chain_lens.entry(v.chain_len).or_insert(0) += 1;
    }
    let slab = ["anon_vma", "anon_vma_chain", "vm_area_struct"].map(slab_check).to_vec();
    let phases_ms = [("btf", btf_ms), ("load", load_ms), ("iterate_and_estimate", elapsed_ms - btf_ms - load_ms)];
    Ok(Report { estimate, shown, selected: pids.is_some(), sizes, slab, stats, elapsed_ms, phases_ms, kernel: sys::uname().0, vmas, chain_lens, topology: topo })
}
