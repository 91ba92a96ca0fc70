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
mod x86 {
    use super::{Acts, Bits, GROUP};
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must support avx512f, avx512bw and avx512vl.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(super) unsafe fn run_avx512(w: impl super::Vectorise) {
        w.run()
    }

    /// # Safety
    /// The CPU must support avx2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn run_avx2(w: impl super::Vectorise) {
        w.run()
    }

    /// Bytes ahead of the current block to prefetch: the weights of a matrix
    /// are one sequential stream (the next group follows this one), and
    /// single-row decode is bound by how many cache lines are in flight.
    const PREFETCH: usize = 2048;

    /// Prefetch the cache lines `PREFETCH` bytes after the block at `p`.
    #[inline(always)]
    fn prefetch(p: *const u8, chunk: usize) {
        for line in (0..chunk).step_by(64) {
            // SAFETY: SSE is part of the x86_64 baseline. `wrapping_add`: the
            // address may lie past the matrix; a prefetch never faults and
            // nothing is read through the pointer.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH + line).cast()) };
        }
    }

    /// `R` rows against one group with AVX-512 VNNI: each lane is one output
    /// column; `vpdpbusd` multiplies unsigned weight bytes by signed
    /// activation bytes (8-bit weights are offset by 128 and corrected with
    /// the block's `128 * sum(q)`).
    ///
    /// # Safety
    /// The CPU must support avx512f, avx512bw and avx512vnni.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn tile_512<const R: usize>(
        bits: Bits,
        w: &[u8],
        nb: usize,
        a: &Acts,
        r0: usize,
        out: &mut [[f32; GROUP]],
    ) {
        assert!(out.len() == R && r0 + R <= a.m && w.len() >= nb * bits.chunk());
        assert!(a.q.len() >= (r0 + R) * nb * super::QK && a.d.len() >= (r0 + R) * nb);
        let mut acc = [_mm512_setzero_ps(); R];
        let chunk = bits.chunk();
        match bits {
            Bits::Four => {
                assert!(a.s.len() >= (r0 + R) * nb);
                let mask = _mm512_set1_epi8(0x0f);
                for b in 0..nb {
                    // SAFETY: `b * chunk + 320 <= w.len()` (asserted above);
                    // the loads are unaligned-tolerant.
                    let p = unsafe { w.as_ptr().add(b * chunk) };
                    prefetch(p, chunk);
                    let mut lo = [_mm512_setzero_si512(); 4];
                    let mut hi = [_mm512_setzero_si512(); 4];
                    for v in 0..4 {
                        // SAFETY: bytes `64 v .. 64 v + 64` of the chunk.
                        let x = unsafe { _mm512_loadu_si512(p.add(64 * v).cast()) };
                        lo[v] = _mm512_and_si512(x, mask);
                        hi[v] = _mm512_and_si512(_mm512_srli_epi16::<4>(x), mask);
                    }
                    // SAFETY: bytes 256..288 and 288..320 of the chunk.
                    let dw = _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(p.add(256).cast()) });
                    let mw = _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(p.add(288).cast()) });
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let row = (r0 + r) * nb + b;
                        // SAFETY: row `r0 + r`, block `b` is in bounds (asserted
                        // above): 32 bytes, read as 8 unaligned words.
                        let q = unsafe { a.q.as_ptr().add(row * super::QK).cast::<i32>() };
                        let mut s0 = _mm512_setzero_si512();
                        let mut s1 = _mm512_setzero_si512();
                        for v in 0..4 {
                            // SAFETY: words `v` and `4 + v` of the block.
                            let (q0, q1) = unsafe { (q.add(v).read_unaligned(), q.add(4 + v).read_unaligned()) };
                            s0 = _mm512_dpbusd_epi32(s0, lo[v], _mm512_set1_epi32(q0));
                            s1 = _mm512_dpbusd_epi32(s1, hi[v], _mm512_set1_epi32(q1));
                        }
                        let isum = _mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1));
                        let t = _mm512_mul_ps(_mm512_mul_ps(dw, _mm512_set1_ps(a.d[row])), isum);
                        *acc = _mm512_add_ps(*acc, t);
                        *acc = _mm512_add_ps(*acc, _mm512_mul_ps(mw, _mm512_set1_ps(a.s[row])));
                    }
                }
            }
            Bits::Eight => {
                assert!(a.off.len() >= (r0 + R) * nb);
                let flip = _mm512_set1_epi8(-128);
                for b in 0..nb {
                    // SAFETY: `b * chunk + 576 <= w.len()` (asserted above).
                    let p = unsafe { w.as_ptr().add(b * chunk) };
                    prefetch(p, chunk);
                    let mut wq = [_mm512_setzero_si512(); 8];
                    for (v, wq) in wq.iter_mut().enumerate() {
                        // SAFETY: bytes `64 v .. 64 v + 64` of the chunk.
                        *wq = _mm512_xor_si512(unsafe { _mm512_loadu_si512(p.add(64 * v).cast()) }, flip);
                    }
                    // SAFETY: bytes 512..576 of the chunk.
                    let dw = unsafe { _mm512_loadu_ps(p.add(512).cast()) };
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let row = (r0 + r) * nb + b;
                        // SAFETY: as in the 4-bit loop.
                        let q = unsafe { a.q.as_ptr().add(row * super::QK).cast::<i32>() };
                        let mut s0 = _mm512_set1_epi32(-a.off[row]);
                        let mut s1 = _mm512_setzero_si512();
                        for v in 0..4 {
                            // SAFETY: words `v` and `4 + v` of the block.
                            let (q0, q1) = unsafe { (q.add(v).read_unaligned(), q.add(4 + v).read_unaligned()) };
                            s0 = _mm512_dpbusd_epi32(s0, wq[v], _mm512_set1_epi32(q0));
                            s1 = _mm512_dpbusd_epi32(s1, wq[4 + v], _mm512_set1_epi32(q1));
                        }
                        let isum = _mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1));
                        let t = _mm512_mul_ps(_mm512_mul_ps(dw, _mm512_set1_ps(a.d[row])), isum);
                        *acc = _mm512_add_ps(*acc, t);
                    }
                }
            }
        }
        for (o, acc) in out.iter_mut().zip(acc) {
            // SAFETY: `o` is 16 f32s.
            unsafe { _mm512_storeu_ps(o.as_mut_ptr(), acc) };
        }
    }

    /// One row against one group with AVX2, as two halves of 8 columns:
    /// `vpmaddubsw` (unsigned × signed bytes to i16 pairs, which cannot
    /// saturate here: |w| ≤ 128 after the sign trick, |q| ≤ 127) then
    /// `vpmaddwd` by ones.
    ///
    /// # Safety
    /// The CPU must support avx2 and f16c.
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn row_256(bits: Bits, w: &[u8], nb: usize, a: &Acts, r: usize, out: &mut [f32; GROUP]) {
        assert!(r < a.m && w.len() >= nb * bits.chunk() && a.d.len() >= (r + 1) * nb);
        let chunk = bits.chunk();
        let ones = _mm256_set1_epi16(1);
        let mask = _mm256_set1_epi8(0x0f);
        let dot = |x: __m256i, q: i32| _mm256_madd_epi16(_mm256_maddubs_epi16(x, _mm256_set1_epi32(q)), ones);
        let sdot = |x: __m256i, q: i32| {
            let q = _mm256_sign_epi8(_mm256_set1_epi32(q), x);
            _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(x), q), ones)
        };
        for h in 0..2 {
            let mut acc = _mm256_setzero_ps();
            for b in 0..nb {
                // SAFETY: `b * chunk + chunk <= w.len()` (asserted above).
                let p = unsafe { w.as_ptr().add(b * chunk + 32 * h) };
                let row = r * nb + b;
                let q = a.words(r, b);
                let isum = match bits {
                    Bits::Four => {
                        let mut s0 = _mm256_setzero_si256();
                        let mut s1 = _mm256_setzero_si256();
                        for v in 0..4 {
                            // SAFETY: bytes `64 v + 32 h ..+ 32` of the chunk.
                            let x = unsafe { _mm256_loadu_si256(p.add(64 * v).cast()) };
                            s0 = _mm256_add_epi32(s0, dot(_mm256_and_si256(x, mask), q[v]));
                            s1 = _mm256_add_epi32(s1, dot(_mm256_and_si256(_mm256_srli_epi16::<4>(x), mask), q[4 + v]));
                        }
                        _mm256_add_epi32(s0, s1)
                    }
                    Bits::Eight => {
                        let mut s0 = _mm256_setzero_si256();
                        let mut s1 = _mm256_setzero_si256();
                        for v in 0..4 {
                            // SAFETY: bytes `64 v + 32 h ..+ 32` and
                            // `64 (v + 4) + 32 h ..+ 32` of the chunk.
                            let (x0, x1) = unsafe {
                                (
                                    _mm256_loadu_si256(p.add(64 * v).cast()),
                                    _mm256_loadu_si256(p.add(64 * (v + 4)).cast()),
                                )
                            };
                            s0 = _mm256_add_epi32(s0, sdot(x0, q[v]));
                            s1 = _mm256_add_epi32(s1, sdot(x1, q[4 + v]));
                        }
                        _mm256_add_epi32(s0, s1)
                    }
                };
                let isum = _mm256_cvtepi32_ps(isum);
                let da = _mm256_set1_ps(a.d[row]);
                // SAFETY: the scale bytes of this half lie inside the chunk.
                let p = unsafe { w.as_ptr().add(b * chunk) };
                match bits {
                    Bits::Four => {
                        // SAFETY: bytes `256 + 16 h ..+ 16` and `288 + 16 h ..+ 16`.
                        let (dw, mw) = unsafe {
                            (
                                _mm256_cvtph_ps(_mm_loadu_si128(p.add(256 + 16 * h).cast())),
                                _mm256_cvtph_ps(_mm_loadu_si128(p.add(288 + 16 * h).cast())),
                            )
                        };
                        acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_mul_ps(dw, da), isum));
                        acc = _mm256_add_ps(acc, _mm256_mul_ps(mw, _mm256_set1_ps(a.s[row])));
                    }
                    Bits::Eight => {
                        // SAFETY: bytes `512 + 32 h ..+ 32` of the chunk.
                        let dw = unsafe { _mm256_loadu_ps(p.add(512 + 32 * h).cast()) };
                        acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_mul_ps(dw, da), isum));
                    }
                }
            }
            // SAFETY: `out[8 h .. 8 h + 8]` is in bounds.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(8 * h), acc) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::GgmlDType;
    use rand::{Rng, SeedableRng};

    /// Random GGUF blocks for `n` rows of `k`.
    fn random_blocks(dtype: GgmlDType, n: usize, k: usize, rng: &mut impl Rng) -> Vec<u8> {
        let mut raw = Vec::new();
        for _ in 0..n * k / QK {
            let d = f16::from_f32(rng.random_range(0.001f32..0.05));
            raw.extend_from_slice(&d.to_le_bytes());
            match dtype {
                GgmlDType::Q4_1 => {
                    raw.extend_from_slice(&f16::from_f32(rng.random_range(-0.4f32..0.0)).to_le_bytes());
                    raw.extend((0..16).map(|_| rng.random::<u8>()));
                }
                GgmlDType::Q4_0 => raw.extend((0..16).map(|_| rng.random::<u8>())),
                _ => raw.extend((0..32).map(|_| rng.random::<u8>())),
            }
        }
        raw
    }

    /// Dequantised weights, row-major `(n, k)`.
    fn dequant(dtype: GgmlDType, raw: &[u8], n: usize, k: usize) -> Vec<f32> {
        let mut w = Vec::with_capacity(n * k);
        let block = match dtype {
            GgmlDType::Q4_1 => 20,
            GgmlDType::Q4_0 => 18,
            _ => 34,
        };
        for b in raw.chunks_exact(block) {
            let d = f16::from_le_bytes([b[0], b[1]]).to_f32();
            match dtype {
                GgmlDType::Q4_1 | GgmlDType::Q4_0 => {
                    let (m, qs) = if dtype == GgmlDType::Q4_1 {
                        (f16::from_le_bytes([b[2], b[3]]).to_f32(), &b[4..20])
                    } else {
                        (-8.0 * d, &b[2..18])
                    };
                    w.extend(qs.iter().map(|&q| d * f32::from(q & 15) + m));
                    w.extend(qs.iter().map(|&q| d * f32::from(q >> 4) + m));
                }
                _ => w.extend(b[2..34].iter().map(|&q| d * f32::from(q as i8))),
            }
        }
        assert_eq!(w.len(), n * k);
        w
    }

    fn random_x(m: usize, k: usize, rng: &mut impl Rng) -> Vec<f32> {
        (0..m * k).map(|i| if i % 97 == 5 { 0.0 } else { rng.random_range(-2.0f32..2.0) }).collect()
    }

    const CASES: [(GgmlDType, usize, usize, usize); 6] = [
        (GgmlDType::Q4_1, 7, 37, 96),
        (GgmlDType::Q4_1, 1, 64, 576),
        (GgmlDType::Q4_0, 5, 48, 64),
        (GgmlDType::Q8_0, 9, 40, 128),
        (GgmlDType::Q8_0, 1, 16, 576),
        (GgmlDType::Q4_1, 33, 16, 32),
    ];

    #[test]
    fn simd_paths_equal_scalar_bit_for_bit() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let isas = Isa::available();
        eprintln!("kernel paths tested: {isas:?}");
        for (dtype, m, n, k) in CASES {
            let raw = random_blocks(dtype, n, k, &mut rng);
            let w = PackedMatrix::from_ggml(dtype, &raw, n, k).expect("packs");
            let x = random_x(m, k, &mut rng);
            let want = w.matmul_with(Isa::Scalar, &x, m, 1);
            for &isa in &isas {
                for threads in [1, 2] {
                    let got = w.matmul_with(isa, &x, m, threads);
                    let same = got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{isa:?} {dtype:?} m={m} n={n} k={k} threads={threads}");
                }
            }
        }
    }

    #[test]
    fn rows_do_not_depend_on_the_batch() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
        for (dtype, m, n, k) in CASES {
            let raw = random_blocks(dtype, n, k, &mut rng);
            let w = PackedMatrix::from_ggml(dtype, &raw, n, k).expect("packs");
            let x = random_x(m, k, &mut rng);
            let all = w.matmul(&x, m, 2);
            for r in 0..m {
                let one = w.matmul(&x[r * k..(r + 1) * k], 1, 1);
                assert_eq!(one, all[r * n..(r + 1) * n], "row {r} of {dtype:?} m={m}");
            }
        }
    }

    #[test]
    fn close_to_f32_reference() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        for (dtype, m, n, k) in CASES {
            let raw = random_blocks(dtype, n, k, &mut rng);
            let w = PackedMatrix::from_ggml(dtype, &raw, n, k).expect("packs");
            assert_eq!((w.n(), w.k()), (n, k));
            assert_eq!(w.size_in_bytes(), n.div_ceil(GROUP) * (k / QK) * w.bits.chunk());
            let wf = dequant(dtype, &raw, n, k);
            let x = random_x(m, k, &mut rng);
            let got = w.matmul(&x, m, 1);
            for r in 0..m {
                for c in 0..n {
                    let (xr, wr) = (&x[r * k..(r + 1) * k], &wf[c * k..(c + 1) * k]);
                    let want: f64 = xr.iter().zip(wr).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum();
                    // The error of 8-bit activations is relative to the sum of
                    // |x_i w_i|, not to the (possibly cancelling) result.
                    let scale: f64 = xr.iter().zip(wr).map(|(&a, &b)| f64::from(a * b).abs()).sum();
                    let err = (f64::from(got[r * n + c]) - want).abs();
                    assert!(err <= 0.01 * scale + 1e-6, "{dtype:?} ({r},{c}): {} vs {want}", got[r * n + c]);
                }
            }
        }
    }

    #[test]
    fn rejects_other_formats_and_shapes() {
        assert!(PackedMatrix::from_ggml(GgmlDType::F32, &[0; 128], 1, 32).is_none());
        assert!(PackedMatrix::from_ggml(GgmlDType::Q4_1, &[0; 20], 1, 48).is_none());
        assert!(PackedMatrix::from_ggml(GgmlDType::Q8_0, &[0; 33], 1, 32).is_none());
    }
}

#[cfg(test)]
mod timing {
    use super::*;
    use candle_core::quantized::GgmlDType;
    use rand::{Rng, SeedableRng};

    /// `cargo test --release -p sluice-engine kernel_timing -- --ignored --nocapture`
    #[test]
    #[ignore = "timing, not a check"]
    fn kernel_timing() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for (dtype, n, k, block) in
            [(GgmlDType::Q4_1, 3072, 576, 20), (GgmlDType::Q4_1, 576, 1536, 20), (GgmlDType::Q8_0, 49152, 576, 34)]
        {
            let raw: Vec<u8> =
                (0..n * k / QK * block).map(|i| if i % block < 2 { 0x20 } else { rng.random() }).collect();
            let w = PackedMatrix::from_ggml(dtype, &raw, n, k).expect("packs");
            for m in [1usize, 16, 512] {
                let x: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0f32..1.0)).collect();
                let reps = (200_000_000 / (n * k * m)).max(2);
                let t = std::time::Instant::now();
                for _ in 0..reps {
                    std::hint::black_box(w.matmul(&x, m, 1));
                }
                let dt = t.elapsed().as_secs_f64() / reps as f64;
                eprintln!(
                    "{dtype:?} n={n} k={k} m={m}: {:.1} us, {:.1} GMAC/s, {:.1} GB/s weights",
                    dt * 1e6,
                    (n * k * m) as f64 / dt / 1e9,
                    w.size_in_bytes() as f64 / dt / 1e9
                );
            }
        }
        // One decode step's matmuls of SmolLM2-135M, each matrix distinct in memory.
        let mut mats = Vec::new();
        for _ in 0..30 {
            for (n, k) in [(960, 576), (576, 576), (3072, 576), (576, 1536)] {
                let raw: Vec<u8> = (0..n * k / QK * 20).map(|i| if i % 20 < 4 { 0x20 } else { rng.random() }).collect();
                mats.push(PackedMatrix::from_ggml(GgmlDType::Q4_1, &raw, n, k).expect("packs"));
            }
        }
        let raw: Vec<u8> = (0..49152 * 576 / QK * 34).map(|i| if i % 34 < 2 { 0x20 } else { rng.random() }).collect();
        mats.push(PackedMatrix::from_ggml(GgmlDType::Q8_0, &raw, 49152, 576).expect("packs"));
        let bytes: usize = mats.iter().map(|w| w.size_in_bytes()).sum();
        let xs: Vec<Vec<f32>> =
            [576, 1536].iter().map(|&k| (0..k).map(|_| rng.random_range(-1.0f32..1.0)).collect()).collect();
        let mut best = f64::MAX;
        for _ in 0..20 {
            let t = std::time::Instant::now();
            for w in &mats {
                let x = if w.k() == 576 { &xs[0] } else { &xs[1] };
                std::hint::black_box(w.matmul(x, 1, 1));
            }
            best = best.min(t.elapsed().as_secs_f64());
        }
        eprintln!(
            "decode step: {:.2} ms for {:.1} MB ({:.1} GB/s)",
            best * 1e3,
            bytes as f64 / 1e6,
            bytes as f64 / best / 1e9
        );
    }
}
