//! The one loader of bytes per object (`lazyvma_model::sizes::Sizes`), read once per run and
//! passed down: snapshot, trace, serve and model price objects with the same numbers and say
//! the same source, and a recording keeps them for its replay.
use super::btf::{Btf, BtfError};
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
    // The BTF is parsed only when some cache's slab directory is unreadable.
    let mut btf: Option<Result<Btf, BtfError>> = None;
    from(btf_path, read_slab, &mut |cache| sizeof(btf_path, btf.get_or_insert_with(|| Btf::load(btf_path)), cache))
}

/// `load`, with the BTF already parsed (`load::facts`): no second parse.
pub fn load_with(btf_path: Option<&Path>, read_slab: bool, btf: &Result<Btf, BtfError>) -> anyhow::Result<Sizes> {
    from(btf_path, read_slab, &mut |cache| sizeof(btf_path, btf, cache))
}

/// `sizeof(struct cache)` from `btf`, `None` where it does not say; an unusable `--btf` is
/// an error.
fn sizeof(btf_path: Option<&Path>, btf: &Result<Btf, BtfError>, cache: &str) -> anyhow::Result<Option<u64>> {
    match btf {
        Ok(b) => Ok(b.size(cache).ok()),
        // Its Display already carries the io error: do not chain it twice.
        Err(e) if btf_path.is_some() => Err(anyhow::anyhow!("{e}")),
        Err(_) => Ok(None),
    }
}

fn from(btf_path: Option<&Path>, read_slab: bool, sizeof: &mut dyn FnMut(&str) -> anyhow::Result<Option<u64>>) -> anyhow::Result<Sizes> {
    let slab = |cache: &str| read_slab.then(|| sys::slab_sizes(cache).ok()).flatten();
    let mut each = Vec::with_capacity(3);
    for (i, cache) in CACHES.into_iter().enumerate() {
        if let Some((object_size, slab_size)) = slab(cache) {
            each.push(Size { object_size, slab_size, source: format!("/sys/kernel/slab/{cache}/slab_size") });
            continue;
        }
        if let Some(n) = sizeof(cache)? {
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

/// `load_with`, for the commands that classify allocations by `bytes_req` (trace, serve):
/// the two kinds must differ in `object_size` or every allocation would be one kind.
pub fn load_classifying_with(btf_path: Option<&Path>, btf: &Result<Btf, BtfError>) -> anyhow::Result<Sizes> {
    classifying(load_with(btf_path, true, btf)?)
}

fn classifying(s: Sizes) -> anyhow::Result<Sizes> {
    let (av, avc) = (s.anon_vma.object_size, s.anon_vma_chain.object_size);
    if av == avc {
        anyhow::bail!("anon_vma and anon_vma_chain have the same object_size ({av}): allocations cannot be told apart");
    }
    Ok(s)
}
