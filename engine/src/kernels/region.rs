//! Memory for packed weights: 2 MiB-aligned regions advised for transparent
//! huge pages, handed out as 64-byte aligned ranges (`Store`) that small
//! matrices share. It does not know the packed layout.

/// A 2 MiB-aligned allocation advised for transparent huge pages (Linux), so
/// streaming the weights does not miss the TLB every 4 KiB.
struct Region {
    ptr: std::ptr::NonNull<u8>,
    layout: std::alloc::Layout,
}

// SAFETY: a `Region` owns its allocation; the bytes are only written through
// `Store::write` before the owning `PackedMatrix` is shared, then only read.
unsafe impl Send for Region {}
// SAFETY: as above.
unsafe impl Sync for Region {}

const HUGE: usize = 2 << 20;
/// Packed matrices share regions of this size; larger ones get their own.
const ARENA: usize = 16 * HUGE;

#[cfg(target_os = "linux")]
unsafe extern "C" {
    fn madvise(addr: *mut std::ffi::c_void, len: usize, advice: std::ffi::c_int) -> std::ffi::c_int;
}

impl Region {
    fn new(size: usize) -> std::sync::Arc<Self> {
        let size = size.max(1).next_multiple_of(HUGE);
        let layout = match std::alloc::Layout::from_size_align(size, HUGE) {
            Ok(l) => l,
            Err(e) => panic!("packed weights of {size} bytes: {e}"),
        };
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { std::alloc::alloc(layout) };
        let Some(ptr) = std::ptr::NonNull::new(p) else { std::alloc::handle_alloc_error(layout) };
        #[cfg(target_os = "linux")]
        // SAFETY: the range is our own fresh allocation. MADV_HUGEPAGE (14)
        // is advice only; failure (e.g. THP disabled) is harmless.
        unsafe {
            madvise(p.cast(), size, 14);
        }
        std::sync::Arc::new(Self { ptr, layout })
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: allocated in `Region::new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// A matrix's bytes: a 64-byte aligned range of a shared [`Region`].
pub(super) struct Store {
    region: std::sync::Arc<Region>,
    off: usize,
    pub(super) len: usize,
}

impl Store {
    /// Copy `bytes` into a fresh range.
    pub(super) fn new(bytes: &[u8]) -> Self {
        static CUR: std::sync::Mutex<Option<(std::sync::Arc<Region>, usize)>> = std::sync::Mutex::new(None);
        let len = bytes.len();
        let need = len.next_multiple_of(64);
        let (region, off) = if need > ARENA / 2 {
            (Region::new(need), 0)
        } else {
            let mut cur = CUR.lock().unwrap_or_else(|e| e.into_inner());
            let fits = cur.as_ref().is_some_and(|(_, used)| used + need <= ARENA);
            if !fits {
                *cur = Some((Region::new(ARENA), 0));
            }
            match cur.as_mut() {
                Some((r, used)) => {
                    let off = *used;
                    *used += need;
                    (r.clone(), off)
                }
                None => unreachable!("region set above"),
            }
        };
        // SAFETY: `off..off + len` lies inside the region and was handed out
        // to no other `Store` (the bump pointer moved past it under the lock);
        // nothing reads it before this copy.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), region.ptr.as_ptr().add(off), len) };
        Self { region, off, len }
    }

    pub(super) fn bytes(&self) -> &[u8] {
        // SAFETY: initialised in `Store::new`, immutable since, and kept
        // alive by the `Arc`.
        unsafe { std::slice::from_raw_parts(self.region.ptr.as_ptr().add(self.off), self.len) }
    }
}
