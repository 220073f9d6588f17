//! Bytes per object for `lazyvma model`: the running kernel's when it can be read (this
//! arch, this config), else spec §4.3's x86_64 values; always with where each came from.
use crate::load::btf::Btf;
use crate::sys;
use lazyvma_model::counts::Sizes;
use std::path::Path;

/// `Sizes` with the origin of each number.
pub struct Found {
    pub sizes: Sizes,
    /// anon_vma, anon_vma_chain, vm_area_struct.
    pub source: [String; 3],
}

const CACHES: [&str; 3] = ["anon_vma", "anon_vma_chain", "vm_area_struct"];

/// Slab slot size (root only: /sys/kernel/slab is 0400), else BTF `sizeof` (the BTF is
/// world-readable), else the spec's numbers. A merged anon_vma_chain cache still has
/// the chain's slot size, so its slab_size is right even though its counts are not.
/// A `--btf` that cannot be read is an error: it was asked for by name.
pub fn find(btf_path: Option<&Path>) -> anyhow::Result<Found> {
    let spec = Sizes::SLAB_X86_64;
    let spec_bytes = [spec.anon_vma, spec.anon_vma_chain, spec.vm_area_struct];
    let btf = match Btf::load(btf_path) {
        Ok(b) => Some(b),
        // Its Display already carries the io error: do not chain it twice.
        Err(e) if btf_path.is_some() => return Err(anyhow::anyhow!("{e}")),
        Err(_) => None,
    };
    let mut bytes = [0u64; 3];
    let source = std::array::from_fn(|i| {
        let cache = CACHES[i];
        if btf_path.is_none() {
            if let Ok(c) = sys::slab_cache(cache) {
                bytes[i] = c.slab_size;
                return format!("/sys/kernel/slab/{cache}/slab_size");
            }
        }
        if let Some(n) = btf.as_ref().and_then(|b| b.size(cache).ok()) {
            bytes[i] = n;
            let path = btf_path.map_or("/sys/kernel/btf/vmlinux".to_string(), |p| p.display().to_string());
            return format!("BTF sizeof(struct {cache}) in {path} (the object; its slab slot needs root to read)");
        }
        bytes[i] = spec_bytes[i];
        "spec §4.3 (x86_64 slab slot; no slab or BTF readable)".to_string()
    });
    Ok(Found { sizes: Sizes { anon_vma: bytes[0], anon_vma_chain: bytes[1], vm_area_struct: bytes[2] }, source })
}
