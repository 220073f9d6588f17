//! Kernel field offsets resolved from BTF (`/sys/kernel/btf/vmlinux` or `--btf`).
