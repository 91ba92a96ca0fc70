//! The engine's own CPU matmul for quantised weights: `y = x @ w^T` with `w`
//! kept in the file's 4-bit (Q4_0 / Q4_1) or 8-bit (Q8_0) blocks, repacked at
//! load into a column-interleaved layout, and `x` quantised per row to 8-bit
//! blocks of 32 (scale, and for 4-bit weights the scaled block sum).
//!
//! Layout: output columns (weight rows) come in groups of [`GROUP`] = 16, one
//! SIMD lane each. For each group and each block of 32 inputs, the group's
//! quants are stored as 4-byte words, word `v` of column `l` at `64 * v + 4 * l`
//! (so one 64-byte load holds word `v` of all 16 columns), followed by the
//! scales:
//!
//! - 4-bit: 4 words of packed nibbles (byte `i` holds inputs `i` and `i + 16`,
//!   as in the file), then 16 × f16 `d` and 16 × f16 `m` (value `d * q + m`,
//!   `q` in 0..16): 320 bytes;
//! - 8-bit: 8 words of `i8` quants, then 16 × f32 `d`: 576 bytes.
//!
//! Every output element is computed the same way on every path and for every
//! batch size: an exact integer dot product per block, then, block by block in
//! order, `acc += (dw * da) * isum` and (4-bit) `acc += m * sa` in f32, no fused
//! multiply-add. So the AVX-512 VNNI, AVX2 and scalar paths agree bit for bit
//! and a row's result does not depend on the other rows of the batch.
//!
//! The packed bytes live in 2 MiB-aligned regions advised for transparent huge
//! pages (shared by the small matrices): decode streams ~100 MB of weights per
//! token, and with 4 KiB pages every page is a TLB miss and a stop for the
//! hardware prefetcher.
//!
//! This is the only module of the engine with `unsafe` code: SIMD intrinsics
//! behind runtime feature detection, and the aligned allocation.

#![allow(unsafe_code, reason = "SIMD intrinsics behind runtime CPU feature detection; aligned huge-page allocation")]

use half::f16;

/// Output columns per group (one AVX-512 register of i32 / f32).
pub(crate) const GROUP: usize = 16;
/// Inputs per quantisation block.
pub(crate) const QK: usize = 32;
/// Rows computed together against one group's weights.
const TILE: usize = 4;
/// Smallest batch split over threads.
const MIN_ROWS_PER_THREAD: usize = 16;

/// Weight quantisation of a [`PackedMatrix`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bits {
    /// 4-bit quants with a scale and a minimum (Q4_1; Q4_0 maps exactly).
    Four,
    /// 8-bit signed quants with a scale (Q8_0).
    Eight,
}

impl Bits {
    /// Bytes of one group's block (quants + scales).
    const fn chunk(self) -> usize {
        match self {
            Bits::Four => 320,
            Bits::Eight => 576,
        }
    }
}

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
struct Store {
    region: std::sync::Arc<Region>,
    off: usize,
    len: usize,
}

impl Store {
    /// Copy `bytes` into a fresh range.
    fn new(bytes: &[u8]) -> Self {
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

    fn bytes(&self) -> &[u8] {
        // SAFETY: initialised in `Store::new`, immutable since, and kept
        // alive by the `Arc`.
        unsafe { std::slice::from_raw_parts(self.region.ptr.as_ptr().add(self.off), self.len) }
    }
}

/// A weight matrix `(n, k)` in the packed layout.
pub(crate) struct PackedMatrix {
    bits: Bits,
    n: usize,
    k: usize,
    store: Store,
}

/// The SIMD level in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    Scalar,
    Avx2,
    Avx512,
}

impl Isa {
    /// The best level this CPU supports.
    pub(crate) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vnni")
            {
                return Isa::Avx512;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("f16c") {
                return Isa::Avx2;
            }
        }
        Isa::Scalar
    }

    /// Levels this CPU can run, best last (for tests).
    #[cfg(test)]
    fn available() -> Vec<Self> {
        let mut v = vec![Isa::Scalar];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("f16c") {
                v.push(Isa::Avx2);
            }
            if Self::detect() == Isa::Avx512 {
                v.push(Isa::Avx512);
            }
        }
        v
    }
}

/// Work to run with [`vectorised`]. `run` should be `#[inline(always)]` (and
/// so should what it calls) so that it is compiled into the wide-vector
/// wrapper (a closure would not be inlined there).
pub(crate) trait Vectorise {
    fn run(self);
}

/// Run `w` in a function compiled for the widest vector instructions the CPU
/// has (AVX-512, else AVX2), so the loops inlined into it are auto-vectorised
/// with them. No fused multiply-add is enabled and Rust never contracts or
/// reorders float operations, so `w` computes exactly what it would compute in
/// the baseline build; only the instruction selection changes.
pub(crate) fn vectorised(w: impl Vectorise) {
    static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
    match *ISA.get_or_init(Isa::detect) {
        // SAFETY: the features were detected at run time.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { x86::run_avx512(w) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::run_avx2(w) },
        _ => w.run(),
    }
}

impl PackedMatrix {
    /// Pack GGUF blocks of `n` rows of `k` inputs (row-major, as in the file).
    /// `dtype` is the ggml block type: Q4_0, Q4_1 or Q8_0.
    pub(crate) fn from_ggml(dtype: candle_core::quantized::GgmlDType, raw: &[u8], n: usize, k: usize) -> Option<Self> {
        use candle_core::quantized::GgmlDType as G;
        let (bits, block) = match dtype {
            G::Q4_0 => (Bits::Four, 18),
            G::Q4_1 => (Bits::Four, 20),
            G::Q8_0 => (Bits::Eight, 34),
            _ => return None,
        };
        if k == 0 || !k.is_multiple_of(QK) || raw.len() != n * (k / QK) * block {
            return None;
        }
        let nb = k / QK;
        let groups = n.div_ceil(GROUP);
        let chunk = bits.chunk();
        let mut bytes = vec![0u8; groups * nb * chunk];
        for j in 0..n {
            let (g, l) = (j / GROUP, j % GROUP);
            for b in 0..nb {
                let src = &raw[(j * nb + b) * block..(j * nb + b + 1) * block];
                let dst = &mut bytes[(g * nb + b) * chunk..(g * nb + b + 1) * chunk];
                let h = |i: usize| f16::from_le_bytes([src[i], src[i + 1]]);
                match dtype {
                    G::Q4_0 | G::Q4_1 => {
                        let (d, m, qs) = if dtype == G::Q4_1 {
                            (h(0), h(2), &src[4..20])
                        } else {
                            // d * (q - 8) = d * q + (-8 d), exact in f16.
                            (h(0), f16::from_f32(-8.0 * h(0).to_f32()), &src[2..18])
                        };
                        for v in 0..4 {
                            dst[64 * v + 4 * l..64 * v + 4 * l + 4].copy_from_slice(&qs[4 * v..4 * v + 4]);
                        }
                        dst[256 + 2 * l..256 + 2 * l + 2].copy_from_slice(&d.to_le_bytes());
                        dst[288 + 2 * l..288 + 2 * l + 2].copy_from_slice(&m.to_le_bytes());
                    }
                    _ => {
                        let qs = &src[2..34];
                        for v in 0..8 {
                            dst[64 * v + 4 * l..64 * v + 4 * l + 4].copy_from_slice(&qs[4 * v..4 * v + 4]);
                        }
                        dst[512 + 4 * l..512 + 4 * l + 4].copy_from_slice(&h(0).to_f32().to_le_bytes());
                    }
                }
            }
        }
        Some(Self { bits, n, k, store: Store::new(&bytes) })
    }

    /// Output columns.
    pub(crate) fn n(&self) -> usize {
        self.n
    }

    /// Inputs per row.
    pub(crate) fn k(&self) -> usize {
        self.k
    }

    /// Bytes of packed weights.
    #[cfg(test)]
    pub(crate) fn size_in_bytes(&self) -> usize {
        self.store.len
    }

    fn bytes(&self) -> &[u8] {
        self.store.bytes()
    }

    /// `y = x @ w^T` for `m` rows of `x` (`m * k` values, row-major); returns
    /// `m * n` values. Rows are split over up to `threads` threads when there
    /// are enough of them; the result does not depend on the split.
    pub(crate) fn matmul(&self, x: &[f32], m: usize, threads: usize) -> Vec<f32> {
        self.matmul_with(Isa::detect(), x, m, threads)
    }

    fn matmul_with(&self, isa: Isa, x: &[f32], m: usize, threads: usize) -> Vec<f32> {
        assert_eq!(x.len(), m * self.k, "input is not m x k");
        let mut out = vec![0f32; m * self.n];
        if m == 0 || self.n == 0 {
            return out;
        }
        let threads = threads.clamp(1, (m / MIN_ROWS_PER_THREAD).max(1));
        if threads == 1 {
            self.rows(isa, x, &mut out);
        } else {
            let per = m.div_ceil(threads);
            std::thread::scope(|s| {
                let mut parts = x.chunks(per * self.k).zip(out.chunks_mut(per * self.n));
                let first = parts.next();
                for (xs, os) in parts {
                    s.spawn(move || self.rows(isa, xs, os));
                }
                if let Some((xs, os)) = first {
                    self.rows(isa, xs, os);
                }
            });
        }
        out
    }

    /// Quantise `x`'s rows and run every group against them.
    fn rows(&self, isa: Isa, x: &[f32], out: &mut [f32]) {
        let acts = Acts::quantise(x, self.k, self.bits);
        let nb = self.k / QK;
        let chunk = self.bits.chunk();
        let data = self.bytes();
        let m = acts.m;
        let mut tile = [[0f32; GROUP]; TILE];
        for g in 0..self.n.div_ceil(GROUP) {
            let w = &data[g * nb * chunk..(g + 1) * nb * chunk];
            let cols = GROUP.min(self.n - g * GROUP);
            let mut r0 = 0;
            while r0 < m {
                let rows = TILE.min(m - r0);
                let tile = &mut tile[..rows];
                run_tile(isa, self.bits, w, nb, &acts, r0, tile);
                for (i, t) in tile.iter().enumerate() {
                    let o = (r0 + i) * self.n + g * GROUP;
                    out[o..o + cols].copy_from_slice(&t[..cols]);
                }
                r0 += rows;
            }
        }
    }
}

/// Rows of activations quantised to 8-bit blocks of 32.
struct Acts {
    m: usize,
    nb: usize,
    /// `m * k` quants in `-127..=127`.
    q: Vec<i8>,
    /// Block scales, `m * nb`.
    d: Vec<f32>,
    /// 4-bit weights: `d * sum(q)` per block; 8-bit: unused.
    s: Vec<f32>,
    /// 8-bit weights: `128 * sum(q)` per block (the offset correction of the
    /// unsigned × signed dot product); 4-bit: unused.
    off: Vec<i32>,
}

impl Acts {
    fn quantise(x: &[f32], k: usize, bits: Bits) -> Self {
        let m = x.len() / k;
        let nb = k / QK;
        let mut q = vec![0i8; m * k];
        let mut d = vec![0f32; m * nb];
        let mut s = vec![0f32; if bits == Bits::Four { m * nb } else { 0 }];
        let mut off = vec![0i32; if bits == Bits::Eight { m * nb } else { 0 }];
        for (i, (xb, qb)) in x.chunks_exact(QK).zip(q.chunks_exact_mut(QK)).enumerate() {
            let amax = xb.iter().fold(0f32, |a, &v| a.max(v.abs()));
            let db = amax / 127.0;
            let id = if db > 0.0 { 1.0 / db } else { 0.0 };
            let mut sum = 0i32;
            for (o, &v) in qb.iter_mut().zip(xb) {
                // Round half away from zero; `as` truncates (and vectorises,
                // unlike `f32::round` on the baseline target). |v * id| <= 127.
                let y = v * id;
                let r = (y + if y < 0.0 { -0.5 } else { 0.5 }) as i32;
                *o = r.clamp(-127, 127) as i8;
                sum += r.clamp(-127, 127);
            }
            d[i] = db;
            match bits {
                Bits::Four => s[i] = db * sum as f32,
                Bits::Eight => off[i] = 128 * sum,
            }
        }
        Self { m, nb, q, d, s, off }
    }

    /// The 8 little-endian words of row `r`, block `b`.
    #[inline(always)]
    fn words(&self, r: usize, b: usize) -> [i32; 8] {
        let o = (r * self.nb + b) * QK;
        std::array::from_fn(|v| {
            let w = &self.q[o + 4 * v..o + 4 * v + 4];
            i32::from_le_bytes([w[0] as u8, w[1] as u8, w[2] as u8, w[3] as u8])
        })
    }
}

/// One group against rows `r0..r0 + out.len()`.
fn run_tile(isa: Isa, bits: Bits, w: &[u8], nb: usize, a: &Acts, r0: usize, out: &mut [[f32; GROUP]]) {
    debug_assert!(w.len() == nb * bits.chunk() && r0 + out.len() <= a.m && a.nb == nb);
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => match out.len() {
            // SAFETY: `Isa::Avx512` is only chosen (or accepted by the tests)
            // when the CPU reports avx512f, avx512bw and avx512vnni; the
            // kernel checks the slice bounds it relies on.
            1 => unsafe { x86::tile_512::<1>(bits, w, nb, a, r0, out) },
            2 => unsafe { x86::tile_512::<2>(bits, w, nb, a, r0, out) },
            3 => unsafe { x86::tile_512::<3>(bits, w, nb, a, r0, out) },
            4 => unsafe { x86::tile_512::<4>(bits, w, nb, a, r0, out) },
            5 => unsafe { x86::tile_512::<5>(bits, w, nb, a, r0, out) },
            6 => unsafe { x86::tile_512::<6>(bits, w, nb, a, r0, out) },
            7 => unsafe { x86::tile_512::<7>(bits, w, nb, a, r0, out) },
            _ => unsafe { x86::tile_512::<TILE>(bits, w, nb, a, r0, out) },
        },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            for (i, o) in out.iter_mut().enumerate() {
                // SAFETY: `Isa::Avx2` is only chosen when the CPU reports avx2
                // and f16c.
                unsafe { x86::row_256(bits, w, nb, a, r0 + i, o) }
            }
        }
        _ => {
            for (i, o) in out.iter_mut().enumerate() {
                row_scalar(bits, w, nb, a, r0 + i, o);
            }
        }
    }
}

/// The reference: one row against one group, element by element.
fn row_scalar(bits: Bits, w: &[u8], nb: usize, a: &Acts, r: usize, out: &mut [f32; GROUP]) {
    let chunk = bits.chunk();
    for (l, o) in out.iter_mut().enumerate() {
        let mut acc = 0f32;
        for b in 0..nb {
            let c = &w[b * chunk..(b + 1) * chunk];
            let qa = &a.q[(r * a.nb + b) * QK..(r * a.nb + b + 1) * QK];
            let da = a.d[r * a.nb + b];
            match bits {
                Bits::Four => {
                    let mut isum = 0i32;
                    for v in 0..4 {
                        for i in 0..4 {
                            let byte = c[64 * v + 4 * l + i];
                            isum += i32::from(byte & 15) * i32::from(qa[4 * v + i]);
                            isum += i32::from(byte >> 4) * i32::from(qa[16 + 4 * v + i]);
                        }
                    }
                    let dw = f16::from_le_bytes([c[256 + 2 * l], c[257 + 2 * l]]).to_f32();
                    let mw = f16::from_le_bytes([c[288 + 2 * l], c[289 + 2 * l]]).to_f32();
                    acc += (dw * da) * isum as f32;
                    acc += mw * a.s[r * a.nb + b];
                }
                Bits::Eight => {
                    let mut isum = 0i32;
                    for v in 0..8 {
                        for i in 0..4 {
                            isum += i32::from(c[64 * v + 4 * l + i] as i8) * i32::from(qa[4 * v + i]);
                        }
                    }
                    let dw = f32::from_le_bytes([c[512 + 4 * l], c[513 + 4 * l], c[514 + 4 * l], c[515 + 4 * l]]);
                    acc += (dw * da) * isum as f32;
                }
            }
        }
        *o = acc;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod timing;
