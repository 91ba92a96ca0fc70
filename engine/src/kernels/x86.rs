//! The x86-64 paths of the packed matmul (AVX-512 VNNI, AVX2), entered only
//! after runtime feature detection; bit-identical to the scalar path.

use super::quant::{Acts, Bits, GROUP, QK};
use std::arch::x86_64::*;

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
    assert!(a.q.len() >= (r0 + R) * nb * QK && a.d.len() >= (r0 + R) * nb);
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
                    let q = unsafe { a.q.as_ptr().add(row * QK).cast::<i32>() };
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
                    let q = unsafe { a.q.as_ptr().add(row * QK).cast::<i32>() };
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
                            (_mm256_loadu_si256(p.add(64 * v).cast()), _mm256_loadu_si256(p.add(64 * (v + 4)).cast()))
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
