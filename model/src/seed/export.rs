//! A model's eager half as a snapshot would read it: the round trip `seed` is tested by.
use super::VM_FLAGS;
use crate::engine::anon_vma::NIL;
use crate::engine::EAGER;
use crate::event::Pid;
use crate::pair::Pair;
use crate::topology::{AnonVmaInfo, ProcessTopo, Topology, VmaTopo};

fn kernel_flags(flags: u16) -> u64 {
    VM_FLAGS.iter().filter(|(_, m)| flags & m != 0).fold(0, |f, (k, _)| f | k)
}

/// The eager half of `pair` as a snapshot would read it: anon_vma "addresses" are made up
/// from the model's ids (kernel-like, distinct), processes in pid order.
pub fn to_topology(pair: &Pair) -> Topology {
    let (m, procs) = pair.eager_parts();
    let avs = &m.core.avs;
    let addr = |x: u32| 0xffff_8880_0000_0000 + u64::from(x) * 0x80;
    let mut pids: Vec<Pid> = procs.keys().copied().collect();
    pids.sort_unstable();
    let mut topo = Topology::default();
    for pid in pids {
        let mm = &procs[&pid][EAGER];
        let vmas = mm
            .vmas
            .iter()
            .map(|v| {
                let chain: Vec<u64> = avs.chain(v.chain).map(addr).collect();
                for x in avs.chain(v.chain) {
                    let (root, parent, refcount, num_children, num_active_vmas) = avs.fields(x);
                    let info = AnonVmaInfo {
                        root: addr(root),
                        parent: addr(parent),
                        refcount: i64::from(refcount),
                        num_children: u64::from(num_children),
                        num_active_vmas: u64::from(num_active_vmas),
                        degree: m.core.kernel.uses_degree().then(|| u64::from(num_children + num_active_vmas)),
                    };
                    topo.anon_vmas.insert(addr(x), info);
                }
                VmaTopo {
                    start: v.start(),
                    end: v.end(),
                    pgoff: v.pgoff(),
                    flags: kernel_flags(v.merge_flags()),
                    anon_vma: (v.av != NIL).then(|| addr(v.av)),
                    chain_len: chain.len() as u32,
                    chain,
                }
            })
            .collect();
        topo.processes.push(ProcessTopo { pid, comm: format!("p{pid}"), mm: u64::from(pid) << 20, cgroup_id: 0, vmas });
    }
    topo
}
