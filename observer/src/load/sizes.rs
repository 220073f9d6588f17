//! The one loader of bytes per object (`lazyvma_model::sizes::Sizes`), read once per run and
//! passed down: snapshot, trace, serve and model price objects with the same numbers and say
//! the same source, and a recording keeps them for its replay.
use super::btf::Btf;
use crate::sys;
use lazyvma_model::sizes::{Size, Sizes, CACHES, SPEC_X86_64};
use std::path::Path;

/// Per cache: `/sys/kernel/slab/CACHE` (root only: 0400), else BTF `sizeof` (world-readable:
/// the object, its slot unknown, so both numbers are `sizeof`), else spec §4.3's x86_64
/// numbers. A merged anon_vma_chain cache still has the chain's slot size, so its slab_size
/// is right even though its counts are not. `read_slab` false: `btf_path` is another
/// kernel's (`model --btf`), whose slab this machine's is not. A `--btf` that cannot be read
/// is an error: it was asked for by name.
pub fn load(btf_path: Option<&Path>, read_slab: bool) -> anyhow::Result<Sizes> {
    let slab = |cache: &str| read_slab.then(|| sys::slab_sizes(cache).ok()).flatten();
    // The BTF is parsed only when some cache's slab directory is unreadable.
    let mut btf: Option<Option<Btf>> = None;
    let mut each = Vec::with_capacity(3);
    for (i, cache) in CACHES.into_iter().enumerate() {
        if let Some((object_size, slab_size)) = slab(cache) {
            each.push(Size { object_size, slab_size, source: format!("/sys/kernel/slab/{cache}/slab_size") });
            continue;
        }
        if btf.is_none() {
            btf = Some(match Btf::load(btf_path) {
                Ok(b) => Some(b),
                // Its Display already carries the io error: do not chain it twice.
                Err(e) if btf_path.is_some() => return Err(anyhow::anyhow!("{e}")),
                Err(_) => None,
            });
        }
        if let Some(n) = btf.as_ref().and_then(Option::as_ref).and_then(|b| b.size(cache).ok()) {
            let path = btf_path.map_or("/sys/kernel/btf/vmlinux".to_string(), |p| p.display().to_string());
            let source = format!("BTF sizeof(struct {cache}) in {path} (the object; its slab slot needs root to read)");
            each.push(Size { object_size: n, slab_size: n, source });
            continue;
        }
        let (object_size, slab_size) = SPEC_X86_64[i];
        each.push(Size { object_size, slab_size, source: "spec §4.3 (x86_64 slab slot; no slab or BTF readable)".into() });
    }
    let each: [Size; 3] = each.try_into().map_err(|_| anyhow::anyhow!("three caches"))?;
    Ok(Sizes::from_each(each))
}

/// `load`, for the commands that classify allocations by `bytes_req` (trace, serve): the two
/// kinds must differ in `object_size` or every allocation would be one kind.
pub fn load_classifying(btf_path: Option<&Path>) -> anyhow::Result<Sizes> {
    let s = load(btf_path, true)?;
    let (av, avc) = (s.anon_vma.object_size, s.anon_vma_chain.object_size);
    if av == avc {
        anyhow::bail!("anon_vma and anon_vma_chain have the same object_size ({av}): allocations cannot be told apart");
    }
    Ok(s)
}
