//! The packed matrix ([`PackedMatrix`]): GGUF blocks repacked at load into
//! the column-interleaved layout, and `y = x @ w^T` over it, tiled by rows
//! and split over threads, on the best path the CPU has (the SIMD paths in
//! `x86`, the scalar reference here). It does not decide which weights to
//! pack (the model does).

use super::isa::Isa;
use super::quant::{Acts, Bits, GROUP, QK};
use super::region::Store;
#[cfg(target_arch = "x86_64")]
use super::x86;
use half::f16;

/// Rows computed together against one group's weights.
const TILE: usize = 4;
/// Smallest batch split over threads.
const MIN_ROWS_PER_THREAD: usize = 16;

/// A weight matrix `(n, k)` in the packed layout.
pub(crate) struct PackedMatrix {
    pub(super) bits: Bits,
    n: usize,
    k: usize,
    store: Store,
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

    pub(super) fn matmul_with(&self, isa: Isa, x: &[f32], m: usize, threads: usize) -> Vec<f32> {
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
