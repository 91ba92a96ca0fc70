//! Kernel timing (ignored test): a decode step's matmuls.

use super::packed::PackedMatrix;
use super::quant::QK;
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
        let raw: Vec<u8> = (0..n * k / QK * block).map(|i| if i % block < 2 { 0x20 } else { rng.random() }).collect();
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
