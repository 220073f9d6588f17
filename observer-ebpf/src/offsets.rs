//! Kernel field offsets, set by userspace from BTF before load (`EbpfLoader::set_global`).
//! A value of `u64::MAX` means "field absent on this kernel".
