//! Which instruction set the kernels use, detected at run time.

/// Which kernels run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    Portable,
    Avx2,
    Avx512Vnni,
    /// AVX-512 VNNI, with AMX int8 tiles for prompts' products (Intel Xeon since Sapphire
    /// Rapids, where the OS grants the tiles).
    Amx,
}

impl Isa {
    /// The fastest set this processor has.
    pub fn detect() -> Self {
        [Isa::Amx, Isa::Avx512Vnni, Isa::Avx2]
            .into_iter()
            .find(|isa| isa.is_supported())
            .unwrap_or(Isa::Portable)
    }

    pub fn is_supported(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
                    && is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => {
                Isa::Avx2.is_supported()
                    && is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Amx => Isa::Avx512Vnni.is_supported() && crate::x86::amx::available(),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512Vnni => "avx512-vnni",
            Isa::Amx => "amx",
        }
    }

    /// The vector kernels this set runs (AMX's tiles take only prompts' products in some
    /// formats; the AVX-512 kernels the rest).
    pub(crate) fn vector(self) -> Self {
        match self {
            Isa::Amx => Isa::Avx512Vnni,
            other => other,
        }
    }

    /// Tokens per kernel call: what fits in the registers beside the weights (16 vector
    /// registers for AVX2, 32 for AVX-512: per token one float and one integer accumulator).
    pub(crate) fn tokens_per_tile(self) -> usize {
        match self {
            Isa::Avx512Vnni | Isa::Amx => 8,
            _ => 2,
        }
    }
}
