//! Bytes per object kind: the one vocabulary every command prices objects with.
//!
//! A slab cache has two sizes (kernel names, `struct kmem_cache`):
//! * `object_size`: the struct itself (`sizeof`), what `kmem_cache_alloc`'s `bytes_req`
//!   says, so what tells an anon_vma allocation from an anon_vma_chain one;
//! * `size`, shown as `/sys/kernel/slab/CACHE/slab_size`, `/proc/slabinfo`'s objsize and the
//!   tracepoint's `bytes_alloc`: the slot one object takes, so what it costs. anon_vma's
//!   free pointer sits outside the object (ctor + SLAB_TYPESAFE_BY_RCU): 104 B for 96.
//!
//! Bytes are always `slab_size`; `object_size` only classifies.
use crate::counts::{Bytes, Counts};
use serde::{Deserialize, Serialize};

/// One cache's two sizes and where they were read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Size {
    /// `kmem_cache.object_size`: tells the kind of an allocation (`bytes_req`).
    pub object_size: u64,
    /// `kmem_cache.size`: the bytes one object costs.
    pub slab_size: u64,
    /// Where `slab_size` came from (`/sys/kernel/slab/CACHE/slab_size`, BTF, the spec).
    pub source: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sizes {
    pub anon_vma: Size,
    pub anon_vma_chain: Size,
    pub vm_area_struct: Size,
}

/// The caches, in the order `Sizes::each` gives them.
pub const CACHES: [&str; 3] = ["anon_vma", "anon_vma_chain", "vm_area_struct"];

/// Spec §4.3, 6.18.44 x86_64 (arm64 computes the same for anon_vma/avc): (object_size, slab_size).
pub const SPEC_X86_64: [(u64, u64); 3] = [(96, 104), (64, 64), (192, 192)];

impl Sizes {
    /// Spec §4.3's x86_64 numbers, said to be so: for when nothing of the kernel is readable.
    pub fn spec_x86_64() -> Sizes {
        let s = |(object_size, slab_size): (u64, u64)| Size { object_size, slab_size, source: "spec §4.3 (x86_64 slab slot; no slab or BTF readable)".into() };
        Sizes { anon_vma: s(SPEC_X86_64[0]), anon_vma_chain: s(SPEC_X86_64[1]), vm_area_struct: s(SPEC_X86_64[2]) }
    }

    /// From one `Size` per cache of `CACHES`, in that order.
    pub fn from_each([anon_vma, anon_vma_chain, vm_area_struct]: [Size; 3]) -> Sizes {
        Sizes { anon_vma, anon_vma_chain, vm_area_struct }
    }

    /// The caches in `CACHES` order.
    pub fn each(&self) -> [&Size; 3] {
        [&self.anon_vma, &self.anon_vma_chain, &self.vm_area_struct]
    }

    /// Live and peak bytes of `c`, at each object's slab slot.
    pub fn bytes(&self, c: &Counts) -> Bytes {
        let (av, avc, vma) = (self.anon_vma.slab_size, self.anon_vma_chain.slab_size, self.vm_area_struct.slab_size);
        Bytes {
            anon_vma: c.anon_vma.live * av,
            anon_vma_chain: c.anon_vma_chain.live * avc,
            vm_area_struct: c.vm_area_struct.live * vma,
            peak_anon_vma: c.anon_vma.peak * av,
            peak_anon_vma_chain: c.anon_vma_chain.peak * avc,
            peak_vm_area_struct: c.vm_area_struct.peak * vma,
        }
    }

    /// Bytes of `anon_vma` anon_vmas and `anon_vma_chain` chain entries.
    pub fn rmap_bytes(&self, anon_vma: u64, anon_vma_chain: u64) -> u64 {
        anon_vma * self.anon_vma.slab_size + anon_vma_chain * self.anon_vma_chain.slab_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_the_slab_slot_not_the_object() {
        let s = Sizes::spec_x86_64();
        let mut c = Counts::default();
        c.anon_vma.add(2);
        c.anon_vma_chain.add(3);
        let b = s.bytes(&c);
        assert_eq!((b.anon_vma, b.anon_vma_chain, b.peak_anon_vma), (208, 192, 208));
        assert_eq!(s.rmap_bytes(2, 3), 208 + 192);
        assert_eq!(s.anon_vma.object_size, 96);
    }

    #[test]
    fn serialises_with_kernel_names() {
        let v = serde_json::to_value(Sizes::spec_x86_64()).unwrap();
        assert_eq!((v["anon_vma"]["object_size"].as_u64(), v["anon_vma"]["slab_size"].as_u64()), (Some(96), Some(104)));
        let back: Sizes = serde_json::from_value(v).unwrap();
        assert_eq!(back, Sizes::spec_x86_64());
    }
}
