//! The block formats every path of the packed matmul shares: the group and
//! block sizes, the weight [`Bits`] and their bytes per group block, and the
//! activations quantised per row to 8-bit blocks ([`Acts`]). It does not
//! pack weights or compute products.

/// Output columns per group (one AVX-512 register of i32 / f32).
pub(super) const GROUP: usize = 16;
/// Inputs per quantisation block.
pub(super) const QK: usize = 32;

/// Weight quantisation of a packed matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Bits {
    /// 4-bit quants with a scale and a minimum (Q4_1; Q4_0 maps exactly).
    Four,
    /// 8-bit signed quants with a scale (Q8_0).
    Eight,
}

impl Bits {
    /// Bytes of one group's block (quants + scales).
    pub(super) const fn chunk(self) -> usize {
        match self {
            Bits::Four => 320,
            Bits::Eight => 576,
        }
    }
}

/// Rows of activations quantised to 8-bit blocks of 32.
pub(super) struct Acts {
    pub(super) m: usize,
    pub(super) nb: usize,
    /// `m * k` quants in `-127..=127`.
    pub(super) q: Vec<i8>,
    /// Block scales, `m * nb`.
    pub(super) d: Vec<f32>,
    /// 4-bit weights: `d * sum(q)` per block; 8-bit: unused.
    pub(super) s: Vec<f32>,
    /// 8-bit weights: `128 * sum(q)` per block (the offset correction of the
    /// unsigned × signed dot product); 4-bit: unused.
    pub(super) off: Vec<i32>,
}

impl Acts {
    pub(super) fn quantise(x: &[f32], k: usize, bits: Bits) -> Self {
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
    pub(super) fn words(&self, r: usize, b: usize) -> [i32; 8] {
        let o = (r * self.nb + b) * QK;
        std::array::from_fn(|v| {
            let w = &self.q[o + 4 * v..o + 4 * v + 4];
            i32::from_le_bytes([w[0] as u8, w[1] as u8, w[2] as u8, w[3] as u8])
        })
    }
}
