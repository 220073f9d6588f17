//! `lazyvma-floor`: the bench's floor (`cargo xtask bench overhead`, mode `floor`). Attaches
//! the object's two empty `floor_*` programs to `kmem_cache_alloc` / `kmem_cache_free`
//! (tp_btf, as lazyvma's slab programs attach here), prints `attached`, and holds them
//! until stdin closes or a signal ends it. What the traced loop then loses is the kernel's
//! per-event dispatch alone: no lazyvma program can cost less on these tracepoints.
use aya::{programs::BtfTracePoint, Btf, EbpfLoader};
// The object lazyvma embeds.
use lazyvma::load::ebpf;
use std::io::Read;

fn main() {
    if let Err(e) = run() {
        eprintln!("lazyvma-floor: {}", format!("{e:#}").replace('\n', " "));
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let btf = Btf::from_sys_fs().map_err(|e| anyhow::anyhow!("the kernel's BTF (/sys/kernel/btf/vmlinux): {e}"))?;
    let mut bpf = EbpfLoader::new().btf(Some(&btf)).load(ebpf::object())?;
    for (prog, tp) in [("floor_slab_alloc", "kmem_cache_alloc"), ("floor_slab_free", "kmem_cache_free")] {
        let p: &mut BtfTracePoint = bpf.program_mut(prog).ok_or_else(|| anyhow::anyhow!("{prog} is not in the object"))?.try_into()?;
        p.load(tp, &btf).map_err(|e| anyhow::anyhow!("{prog}: {e}"))?;
        p.attach().map_err(|e| anyhow::anyhow!("{prog}: {e}"))?;
    }
    println!("attached");
    // Until stdin closes (the bench holds a pipe) or a signal kills this process; the
    // links go with it.
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    Ok(())
}
