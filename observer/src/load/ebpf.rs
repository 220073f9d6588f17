//! The BPF object built by build.rs, embedded in the binary.

/// The bytes of `observer-ebpf` built for this binary's architecture (8-byte aligned for the ELF parser).
pub fn object() -> &'static [u8] {
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lazyvma-ebpf.o"))
}
