//! Dense `u32` ids over fixed-size chunks, with a free list. Growing never copies and
//! never doubles: the unused tail is under one chunk, where a doubling `Vec` left up to
//! half its capacity idle (most of the model's bytes per VMA above the bench target).

const SHIFT: u32 = 10;
const CHUNK: usize = 1 << SHIFT;
const MASK: u32 = CHUNK as u32 - 1;

pub(crate) struct Slab<T> {
    chunks: Vec<Box<[T; CHUNK]>>,
    /// Slots handed out so far (live or on `free`).
    len: u32,
    free: Vec<u32>,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab { chunks: Vec::new(), len: 0, free: Vec::new() }
    }
}

impl<T: Copy + Default> Slab<T> {
    #[inline]
    pub fn insert(&mut self, v: T) -> u32 {
        let id = match self.free.pop() {
            Some(id) => id,
            None => self.grow(),
        };
        *self.get_mut(id) = v;
        id
    }
    #[cold]
    fn grow(&mut self) -> u32 {
        let id = self.len;
        if id as usize == self.chunks.len() * CHUNK {
            let chunk: Box<[T]> = vec![T::default(); CHUNK].into_boxed_slice();
            self.chunks.push(chunk.try_into().unwrap_or_else(|_| unreachable!("CHUNK elements")));
        }
        self.len += 1;
        id
    }
    /// Frees `id` for reuse; its contents stay until then.
    pub fn remove(&mut self, id: u32) {
        self.free.push(id);
    }
    #[inline]
    pub fn get(&self, id: u32) -> &T {
        &self.chunks[(id >> SHIFT) as usize][(id & MASK) as usize]
    }
    #[inline]
    pub fn get_mut(&mut self, id: u32) -> &mut T {
        &mut self.chunks[(id >> SHIFT) as usize][(id & MASK) as usize]
    }
    /// Every id ever handed out is below this.
    pub fn slots(&self) -> u32 {
        self.len
    }
    pub fn free_ids(&self) -> &[u32] {
        &self.free
    }
    pub fn heap_bytes(&self) -> usize {
        self.chunks.len() * std::mem::size_of::<[T; CHUNK]>()
            + self.chunks.capacity() * std::mem::size_of::<usize>()
            + self.free.capacity() * 4
    }
}
