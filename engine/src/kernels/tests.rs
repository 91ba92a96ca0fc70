//! The packed matmul against the scalar path, the batch and an f64 reference.

use super::isa::Isa;
use super::packed::PackedMatrix;
use super::quant::{GROUP, QK};
use candle_core::quantized::GgmlDType;
use half::f16;
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
