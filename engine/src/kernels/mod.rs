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
//!
//! Files: `quant` (block formats, activation quantisation), `region` (the
//! aligned huge-page memory), `packed` ([`PackedMatrix`]: packing, tiling,
//! threads, the scalar reference), `x86` (the AVX-512 VNNI and AVX2 paths),
//! `isa` (CPU feature detection and [`vectorised`]).

#![allow(unsafe_code, reason = "SIMD intrinsics behind runtime CPU feature detection; aligned huge-page allocation")]

mod isa;
mod packed;
mod quant;
mod region;
#[cfg(target_arch = "x86_64")]
mod x86;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod timing;

pub(crate) use isa::{Vectorise, vectorised};
pub(crate) use packed::PackedMatrix;
