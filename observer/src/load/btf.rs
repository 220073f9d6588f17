//! Kernel field offsets resolved from BTF (`/sys/kernel/btf/vmlinux` or `--btf`).
//!
//! Rust BPF gets no CO-RE relocations, so every field the BPF side reads is looked up
//! here and injected as a global at load ([`GLOBALS`] names them). The parser is a small
//! one of our own: it needs only struct/union members and sizes, and it keeps the
//! project free of the LGPL `btf-rs` (aya-obj's type accessors are crate-private).
use std::path::{Path, PathBuf};

pub const DEFAULT_PATH: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    /// The file to load cannot be read or parsed: worded by [`problem`], as every command words it.
    #[error("{}", problem(.given.as_deref(), .why))]
    Unusable { given: Option<PathBuf>, why: String },
    #[error("cannot open {path}: {why}: out of file descriptors (raise the open-file limit, ulimit -n)")]
    NoFds { path: PathBuf, why: String },
    #[error("{path} is not valid BTF: {why}")]
    Format { path: PathBuf, why: String },
    #[error("BTF {path} has no struct `{ty}`")]
    MissingType { path: PathBuf, ty: String },
    #[error("BTF {path}: struct `{ty}` has no field `{field}`")]
    MissingField { path: PathBuf, ty: String, field: String },
}

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

struct Member {
    name_off: u32,
    ty: u32,
    bit_offset: u32,
}

struct Type {
    kind: u32,
    name_off: u32,
    /// `size` for structs/unions/ints, the referenced type id for modifiers.
    size_or_type: u32,
    /// Index range into `Btf::members` (structs and unions only).
    members: std::ops::Range<usize>,
}

/// A parsed BTF blob, kept only as far as offset resolution needs.
pub struct Btf {
    path: PathBuf,
    strings: Vec<u8>,
    /// Index = type id; id 0 is `void`.
    types: Vec<Type>,
    members: Vec<Member>,
}

/// "No usable BTF" in one line that names the file and the way out: `--btf PATH` when the
/// default is missing, the default when the given file is unusable.
pub fn problem(given: Option<&Path>, why: &str) -> String {
    match given {
        Some(p) => format!("no usable kernel BTF: --btf {}: {why} (without --btf lazyvma reads {DEFAULT_PATH})", p.display()),
        None => format!("no usable kernel BTF: {DEFAULT_PATH}: {why}; the kernel needs CONFIG_DEBUG_INFO_BTF=y, or pass --btf PATH"),
    }
}

impl Btf {
    /// `given`: the `--btf` path, else the running kernel's.
    pub fn load(given: Option<&Path>) -> Result<Btf, BtfError> {
        let path = given.unwrap_or(Path::new(DEFAULT_PATH)).to_path_buf();
        let unusable = |why: String| BtfError::Unusable { given: given.map(Path::to_path_buf), why };
        // A FIFO or device would hang or flood the read: regular files only.
        match std::fs::metadata(&path) {
            Ok(m) if !m.is_file() && !m.is_dir() => return Err(unusable("not a regular file".into())),
            _ => {}
        }
        let data = std::fs::read(&path).map_err(|e| match e.raw_os_error() {
            // Not a kernel without BTF: this process (or the system) is out of descriptors.
            Some(libc::EMFILE | libc::ENFILE) => BtfError::NoFds { path: path.clone(), why: e.to_string() },
            _ => unusable(e.to_string()),
        })?;
        Btf::parse(&data, path).map_err(|e| match e {
            BtfError::Format { why, .. } => unusable(format!("not BTF: {why}")),
            e => e,
        })
    }

    pub fn parse(data: &[u8], path: PathBuf) -> Result<Btf, BtfError> {
        let bad = |why: &str| BtfError::Format { path: path.clone(), why: why.to_string() };
        let u32_at =
            |at: usize| -> Result<u32, BtfError> { data.get(at..at + 4).map(|b| u32::from_le_bytes(b.try_into().unwrap())).ok_or_else(|| bad("truncated")) };
        if data.len() < 24 {
            return Err(bad("shorter than the 24-byte header"));
        }
        match u16::from_le_bytes([data[0], data[1]]) {
            0xeb9f => {}
            0x9feb => return Err(bad("big-endian BTF is not supported")),
            _ => return Err(bad("bad magic (expected 0xeb9f)")),
        }
        let hdr_len = u32_at(4)? as usize;
        let (type_off, type_len, str_off, str_len) = (u32_at(8)?, u32_at(12)?, u32_at(16)?, u32_at(20)?);
        let section = |off: u32, len: u32| {
            let start = hdr_len + off as usize;
            data.get(start..start + len as usize).ok_or_else(|| bad("section runs past the end of the file"))
        };
        let strings = section(str_off, str_len)?.to_vec();
        let tdata = section(type_off, type_len)?;
        let base = hdr_len + type_off as usize;

        let mut types = vec![Type { kind: 0, name_off: 0, size_or_type: 0, members: 0..0 }];
        let mut members = Vec::new();
        let mut at = 0usize;
        while at < tdata.len() {
            let (name_off, info, size_or_type) = (u32_at(base + at)?, u32_at(base + at + 4)?, u32_at(base + at + 8)?);
            at += 12;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let kind_flag = info >> 31 == 1;
            let first = members.len();
            let extra = match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION => {
                    for i in 0..vlen {
                        let m = base + at + i * 12;
                        let off = u32_at(m + 8)?;
                        // With kind_flag the top byte is the bitfield size.
                        let bit_offset = if kind_flag { off & 0x00ff_ffff } else { off };
                        members.push(Member { name_off: u32_at(m)?, ty: u32_at(m + 4)?, bit_offset });
                    }
                    12 * vlen
                }
                KIND_FUNC_PROTO => {
                    // Parameters as members at offset 0: `tracepoint_arg` reads their types.
                    for i in 0..vlen {
                        let m = base + at + i * 8;
                        members.push(Member { name_off: u32_at(m)?, ty: u32_at(m + 4)?, bit_offset: 0 });
                    }
                    8 * vlen
                }
                KIND_ENUM => 8 * vlen,
                KIND_DATASEC | KIND_ENUM64 => 12 * vlen,
                KIND_PTR | 7 | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_FUNC | 16 | KIND_TYPE_TAG => 0,
                k => return Err(bad(&format!("unknown type kind {k} (type id {})", types.len()))),
            };
            at += extra;
            if at > tdata.len() {
                return Err(bad("type section truncated"));
            }
            types.push(Type { kind, name_off, size_or_type, members: first..members.len() });
        }
        Ok(Btf { path, strings, types, members })
    }

    fn name(&self, off: u32) -> &[u8] {
        let s = self.strings.get(off as usize..).unwrap_or(&[]);
        &s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())]
    }

    /// The id of the struct named `name` that has members (skipping empty forward shapes).
    fn struct_id(&self, name: &str) -> Result<usize, BtfError> {
        self.types
            .iter()
            .position(|t| t.kind == KIND_STRUCT && self.name(t.name_off) == name.as_bytes() && !t.members.is_empty())
            .ok_or_else(|| BtfError::MissingType { path: self.path.clone(), ty: name.into() })
    }

    /// Follow typedef/const/volatile/restrict/type_tag to the underlying type id.
    fn strip(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.types.get(id as usize) {
                Some(t) if matches!(t.kind, KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG) => id = t.size_or_type,
                _ => break,
            }
        }
        id
    }

    /// Bit offset of member `name` inside type `id`, looking through anonymous
    /// structs and unions (6.18 keeps vm_start/vm_end/vm_flags in them).
    fn member_bits(&self, id: u32, name: &str, depth: u32) -> Option<(u32, u32)> {
        let t = self.types.get(id as usize)?;
        if !matches!(t.kind, KIND_STRUCT | KIND_UNION) || depth > 8 {
            return None;
        }
        for m in &self.members[t.members.clone()] {
            let mname = self.name(m.name_off);
            if mname == name.as_bytes() {
                return Some((m.bit_offset, m.ty));
            }
            if mname.is_empty() {
                if let Some((bits, ty)) = self.member_bits(self.strip(m.ty), name, depth + 1) {
                    return Some((m.bit_offset + bits, ty));
                }
            }
        }
        None
    }

    /// Byte offset of `path` ("refcount.counter") inside `struct ty`.
    pub fn offset(&self, ty: &str, path: &str) -> Result<u64, BtfError> {
        let missing = || BtfError::MissingField { path: self.path.clone(), ty: ty.into(), field: path.into() };
        let mut id = self.struct_id(ty)? as u32;
        let mut bits = 0u32;
        for part in path.split('.') {
            let (b, member_ty) = self.member_bits(self.strip(id), part, 0).ok_or_else(missing)?;
            bits += b;
            id = member_ty;
        }
        if !bits.is_multiple_of(8) {
            return Err(missing());
        }
        Ok(u64::from(bits / 8))
    }

    /// The first of `paths` that exists (fields renamed across kernel versions).
    pub fn offset_any(&self, ty: &str, paths: &[&str]) -> Result<u64, BtfError> {
        for p in paths {
            match self.offset(ty, p) {
                Err(BtfError::MissingField { .. }) => continue,
                res => return res,
            }
        }
        Err(BtfError::MissingField { path: self.path.clone(), ty: ty.into(), field: paths.join("` or `") })
    }

    /// The struct argument `i` of tracepoint `name` points to (`tp_btf` programs get the
    /// TP_PROTO arguments, which change across kernels where the record's fields do not).
    pub fn tracepoint_arg(&self, name: &str, i: usize) -> Option<String> {
        let typedef = format!("btf_trace_{name}");
        let t = self.types.iter().find(|t| t.kind == KIND_TYPEDEF && self.name(t.name_off) == typedef.as_bytes())?;
        let ptr = self.types.get(self.strip(t.size_or_type) as usize).filter(|p| p.kind == KIND_PTR)?;
        let proto = self.types.get(self.strip(ptr.size_or_type) as usize).filter(|p| p.kind == KIND_FUNC_PROTO)?;
        // The first parameter is the probe's `void *__data`.
        let arg = self.members[proto.members.clone()].get(i + 1)?;
        let ptr = self.types.get(self.strip(arg.ty) as usize).filter(|p| p.kind == KIND_PTR)?;
        let target = self.types.get(self.strip(ptr.size_or_type) as usize).filter(|p| p.kind == KIND_STRUCT)?;
        Some(String::from_utf8_lossy(self.name(target.name_off)).into_owned())
    }

    /// The parameter count of kernel function `name` (its BTF `FUNC`'s prototype).
    pub fn func_args(&self, name: &str) -> Option<usize> {
        let f = self.types.iter().find(|t| t.kind == KIND_FUNC && self.name(t.name_off) == name.as_bytes())?;
        let proto = self.types.get(f.size_or_type as usize).filter(|p| p.kind == KIND_FUNC_PROTO)?;
        Some(proto.members.len())
    }

    /// `sizeof(struct ty)`.
    pub fn size(&self, ty: &str) -> Result<u64, BtfError> {
        Ok(u64::from(self.types[self.struct_id(ty)?].size_or_type))
    }
}

/// Every offset global of `observer-ebpf/src/offsets.rs` with its value on this kernel.
/// `FIELD_ABSENT` marks a field missing here, which only the pre-6.0 / 6.0+ pair may be.
#[derive(Clone)]
pub struct Offsets {
    pub globals: Vec<(&'static str, u64)>,
}

impl Offsets {
    pub fn resolve(btf: &Btf) -> Result<Offsets, BtfError> {
        let vma = |f: &str| btf.offset("vm_area_struct", f);
        let av = |f: &str| btf.offset("anon_vma", f);
        let mut g = vec![
            ("VMA_VM_START", vma("vm_start")?),
            ("VMA_VM_END", vma("vm_end")?),
            ("VMA_VM_PGOFF", vma("vm_pgoff")?),
            ("VMA_VM_FLAGS", btf.offset_any("vm_area_struct", &["vm_flags", "__vm_flags"])?),
            ("VMA_VM_MM", vma("vm_mm")?),
            ("VMA_ANON_VMA", vma("anon_vma")?),
            ("VMA_ANON_VMA_CHAIN", vma("anon_vma_chain")?),
            ("AV_ROOT", av("root")?),
            ("AV_PARENT", av("parent")?),
            ("AV_REFCOUNT", av("refcount.counter")?),
            ("AVC_SAME_VMA", btf.offset("anon_vma_chain", "same_vma")?),
            ("AVC_ANON_VMA", btf.offset("anon_vma_chain", "anon_vma")?),
            ("AVC_VMA", btf.offset("anon_vma_chain", "vma")?),
            ("TASK_PID", btf.offset("task_struct", "pid")?),
            ("TASK_TGID", btf.offset("task_struct", "tgid")?),
            ("TASK_COMM", btf.offset("task_struct", "comm")?),
        ];
        let absent = lazyvma_model::abi::FIELD_ABSENT;
        // The prepare hook's task mm (a GUP prepare in the task's own mm takes the hook's
        // VMA; without it none does), and the iter/task pass.
        g.push(("TASK_MM", btf.offset("task_struct", "mm").unwrap_or(absent)));
        // 6.0 split `degree` into num_children + num_active_vmas (commit 2555283eb40d).
        match (av("num_children"), av("num_active_vmas")) {
            (Ok(c), Ok(a)) => g.extend([("AV_NUM_CHILDREN", c), ("AV_NUM_ACTIVE_VMAS", a), ("AV_DEGREE", absent)]),
            (Err(e), _) | (_, Err(e)) => {
                let d = av("degree").map_err(|_| e)?;
                g.extend([("AV_NUM_CHILDREN", absent), ("AV_NUM_ACTIVE_VMAS", absent), ("AV_DEGREE", d)]);
            }
        }
        // What the iter/task pass walks (kernels before iter/task_vma): all or none. 6.1
        // replaced the VMA list with the maple tree, where only iter/task_vma takes a pass.
        let walk = [
            ("TASK_FILES", "task_struct", "files"),
            ("TASK_GROUP_LEADER", "task_struct", "group_leader"),
            ("MM_MAP_COUNT", "mm_struct", "map_count"),
            ("MM_MMAP", "mm_struct", "mmap"),
            ("VMA_VM_NEXT", "vm_area_struct", "vm_next"),
            ("MM_MM_RB", "mm_struct", "mm_rb.rb_node"),
            ("VMA_VM_RB", "vm_area_struct", "vm_rb"),
            ("RB_LEFT", "rb_node", "rb_left"),
            ("RB_RIGHT", "rb_node", "rb_right"),
        ];
        let found: Vec<_> = walk.iter().map(|(n, t, f)| btf.offset(t, f).map(|o| (*n, o))).collect::<Result<_, _>>().unwrap_or_default();
        if found.len() == walk.len() {
            g.extend(found);
        } else {
            g.extend(walk.iter().map(|(n, _, _)| (*n, absent)));
        }
        // The sizes the estimate prices with come from `load::sizes`, slab slot first.
        Ok(Offsets { globals: g })
    }
}
