//! Records the BPF programs write and userspace decodes: `#[repr(C)]`, plain integers,
//! no padding surprises (every struct is a multiple of 8 bytes with explicit pads).

/// An offset global left at this value means "field absent on this kernel".
pub const FIELD_ABSENT: u64 = u64::MAX;

/// `iter/task_vma` writes at most this many chain entries per VMA; longer chains are
/// still counted (up to [`CHAIN_COUNT_MAX`]) and flagged truncated.
pub const CHAIN_EMIT_MAX: u32 = 64;
/// The walk stops counting here; a chain this long sets [`VmaRecord::truncated`] = 2.
pub const CHAIN_COUNT_MAX: u32 = 1024;

/// First u32 of every snapshot record.
pub const REC_VMA: u32 = 1;
pub const REC_AVC: u32 = 2;
/// A chain entry as its anon_vma's address alone ([`AvRecord`]): what the estimate needs.
pub const REC_AV: u32 = 3;

/// One VMA, written after the walk of its `anon_vma_chain` (so after its [`AvcRecord`]s).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmaRecord {
    pub kind: u32,
    /// `task->tgid`.
    pub pid: u32,
    /// `task->pid`.
    pub tid: u32,
    /// 0 = every chain entry was written; 1 = only the first [`CHAIN_EMIT_MAX`] were
    /// (`chain_len` is exact); 2 = the count itself stopped at [`CHAIN_COUNT_MAX`].
    pub truncated: u32,
    pub comm: [u8; 16],
    pub vma: u64,
    pub mm: u64,
    pub vm_start: u64,
    pub vm_end: u64,
    pub vm_pgoff: u64,
    pub vm_flags: u64,
    pub anon_vma: u64,
    pub chain_len: u64,
}

/// One `anon_vma_chain` entry of a VMA, with the fields of the anon_vma it links to.
/// Entries of one VMA come newest first (the root last), as the list holds them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AvcRecord {
    pub kind: u32,
    /// `anon_vma->refcount.counter`.
    pub refcount: i32,
    pub vma: u64,
    pub anon_vma: u64,
    pub root: u64,
    pub parent: u64,
    /// [`FIELD_ABSENT`] on kernels before 6.0 (see `degree`).
    pub num_children: u64,
    pub num_active_vmas: u64,
    /// Pre-6.0 `degree`; [`FIELD_ABSENT`] on 6.0+.
    pub degree: u64,
}

/// One `anon_vma_chain` entry as the address of its anon_vma: written instead of an
/// [`AvcRecord`] when the pass is not asked for the anon_vmas' fields (the anon_vma itself
/// is then never read).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AvRecord {
    pub kind: u32,
    pub _pad: u32,
    pub anon_vma: u64,
}

pub const AV_RECORD_SIZE: usize = core::mem::size_of::<AvRecord>();
pub const VMA_RECORD_SIZE: usize = core::mem::size_of::<VmaRecord>();
pub const AVC_RECORD_SIZE: usize = core::mem::size_of::<AvcRecord>();

const _: () = assert!(VMA_RECORD_SIZE == 96 && AVC_RECORD_SIZE == 64 && AV_RECORD_SIZE == 16);

#[cfg(feature = "std")]
fn read<T: Copy>(bytes: &[u8]) -> Option<T> {
    // SAFETY: length checked; the records are plain integers valid for any bit pattern.
    (bytes.len() >= core::mem::size_of::<T>()).then(|| unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// One decoded record of the `iter/task_vma` stream.
#[cfg(feature = "std")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    Vma(VmaRecord),
    Avc(AvcRecord),
    Av(AvRecord),
}

/// Split a byte stream into records. An unknown tag or a partial record at the end is an
/// error naming the byte offset: the stream is never silently cut.
#[cfg(feature = "std")]
pub fn decode(mut bytes: &[u8]) -> Result<Vec<Record>, String> {
    let total = bytes.len();
    let mut out = Vec::with_capacity(total / AVC_RECORD_SIZE);
    while !bytes.is_empty() {
        let at = total - bytes.len();
        let kind: u32 = read(bytes).ok_or_else(|| format!("{} stray bytes at offset {at}", bytes.len()))?;
        let (rec, size) = match kind {
            REC_VMA => (read(bytes).map(Record::Vma), VMA_RECORD_SIZE),
            REC_AVC => (read(bytes).map(Record::Avc), AVC_RECORD_SIZE),
            REC_AV => (read(bytes).map(Record::Av), AV_RECORD_SIZE),
            k => return Err(format!("unknown record kind {k} at offset {at}")),
        };
        out.push(rec.ok_or_else(|| format!("record cut short at offset {at}"))?);
        bytes = &bytes[size..];
    }
    Ok(out)
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    fn bytes<T>(v: &T) -> &[u8] {
        // SAFETY: plain integer records.
        unsafe { core::slice::from_raw_parts((v as *const T).cast::<u8>(), core::mem::size_of::<T>()) }
    }

    #[test]
    fn decodes_a_mixed_stream_and_rejects_garbage() {
        let a = AvcRecord { kind: REC_AVC, refcount: 2, vma: 7, anon_vma: 8, ..Default::default() };
        let v = VmaRecord { kind: REC_VMA, pid: 1, chain_len: 1, vma: 7, ..Default::default() };
        let mut s = bytes(&a).to_vec();
        s.extend_from_slice(bytes(&v));
        assert_eq!(decode(&s).unwrap(), vec![Record::Avc(a), Record::Vma(v)]);
        assert!(decode(&s[..s.len() - 1]).unwrap_err().contains("offset 64"));
        assert!(decode(&[9, 0, 0, 0]).unwrap_err().contains("unknown record kind 9"));
    }
}
