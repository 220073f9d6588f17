//! Records the BPF programs write and userspace decodes: `#[repr(C)]`, plain integers,
//! no padding surprises (every struct is a multiple of 8 bytes with explicit pads).
