//! Which SIMD level the CPU has ([`Isa`]), and [`vectorised`]: running a
//! piece of work in a function compiled for the widest vector instructions
//! available. It holds no kernels of its own.

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
    pub(super) fn available() -> Vec<Self> {
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
        Isa::Avx512 => unsafe { run_avx512(w) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { run_avx2(w) },
        _ => w.run(),
    }
}

/// # Safety
/// The CPU must support avx512f, avx512bw and avx512vl.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn run_avx512(w: impl Vectorise) {
    w.run()
}

/// # Safety
/// The CPU must support avx2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn run_avx2(w: impl Vectorise) {
    w.run()
}
