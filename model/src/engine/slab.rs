//! Dense `u32` ids over one flat array, with a free list. An id is one bounds-checked
//! index (no chunk pointer to load first: the AV arena is the model's hottest lookup),
//! and the array grows by a sixteenth (at least `MIN_GROW` slots), not by doubling:
//! a doubling `Vec` left up to half its capacity idle (most of the model's bytes per VMA
//! above the bench target), this leaves at most ~6 %.

const MIN_GROW: usize = 1024;

pub(crate) struct Slab<T> {
    items: Vec<T>,
    free: Vec<u32>,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab { items: Vec::new(), free: Vec::new() }
    }
}

impl<T: Copy + Default> Slab<T> {
    /// A slot for the caller to fill: stale contents if reused, `T::default()` if new.
    #[inline]
    pub fn alloc(&mut self) -> u32 {
        match self.free.pop() {
            Some(id) => id,
            None => self.push(T::default()),
        }
    }
    #[cold]
    fn push(&mut self, v: T) -> u32 {
        let id = self.items.len();
        assert!(id < u32::MAX as usize, "slab ids exhausted");
        if id == self.items.capacity() {
            self.items.reserve_exact((id / 16).max(MIN_GROW));
        }
        self.items.push(v);
        id as u32
    }
    /// Frees `id` for reuse; its contents stay until then.
    pub fn remove(&mut self, id: u32) {
        self.free.push(id);
    }
    #[inline]
    pub fn get(&self, id: u32) -> &T {
        &self.items[id as usize]
    }
    #[inline]
    pub fn get_mut(&mut self, id: u32) -> &mut T {
        &mut self.items[id as usize]
    }
    /// Every id ever handed out is below this.
    pub fn slots(&self) -> u32 {
        self.items.len() as u32
    }
    pub fn free_ids(&self) -> &[u32] {
        &self.free
    }
    pub fn heap_bytes(&self) -> usize {
        self.items.capacity() * std::mem::size_of::<T>() + self.free.capacity() * 4
    }
}
