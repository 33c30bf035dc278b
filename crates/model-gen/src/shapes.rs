//! The architectures we can generate: real Llama-family and Qwen shapes, plus a tiny one for
//! tests.

use serde::Serialize;

use crate::GenError;

/// The decoder a shape is written as: which tensors it has beyond Llama's, its GGUF metadata
/// prefix, its `config.json` architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Family {
    Llama,
    /// Llama with biases on Q, K and V; NeoX rotary layout (no GGUF permutation).
    Qwen2,
    /// Llama with an RMS norm over each query and key head; NeoX rotary layout.
    Qwen3,
}

impl Family {
    /// `general.architecture` and the GGUF metadata prefix.
    pub fn gguf_name(self) -> &'static str {
        match self {
            Family::Llama => "llama",
            Family::Qwen2 => "qwen2",
            Family::Qwen3 => "qwen3",
        }
    }
}

/// A model shape (the fields of its `config.json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Shape {
    pub name: &'static str,
    pub family: Family,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub max_position_embeddings: usize,
    pub rope_theta: f64,
    pub rms_norm_eps: f64,
    pub tie_word_embeddings: bool,
}

impl Shape {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    pub fn kv_dim(&self) -> usize {
        self.head_dim() * self.num_key_value_heads
    }

    /// Number of weights.
    pub fn parameter_count(&self) -> usize {
        let (h, i, kv) = (self.hidden_size, self.intermediate_size, self.kv_dim());
        let extra = match self.family {
            Family::Llama => 0,
            Family::Qwen2 => h + 2 * kv,
            Family::Qwen3 => 2 * self.head_dim(),
        };
        let per_layer = h * h * 2 + h * kv * 2 + 3 * h * i + 2 * h + extra;
        let head = if self.tie_word_embeddings {
            0
        } else {
            self.vocab_size * h
        };
        self.vocab_size * h + self.num_hidden_layers * per_layer + h + head
    }
}

/// The tiny test shape in `family`, named `name` (tests of other families write their own
/// files with it).
pub const fn tiny(family: Family, name: &'static str) -> Shape {
    Shape {
        family,
        name,
        vocab_size: 512,
        hidden_size: 64,
        intermediate_size: 128,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        // Room for the pipeline's real prompts (the tokenizer's 512-entry vocabulary makes
        // about two characters a token).
        max_position_embeddings: 2048,
        rope_theta: 10_000.0,
        rms_norm_eps: 1e-5,
        tie_word_embeddings: false,
    }
}

pub const SHAPES: &[Shape] = &[
    // A few MB: for tests. Every row length is a multiple of 32 (the q4_0/q8_0 block).
    tiny(Family::Llama, "tiny"),
    // The tiny model at 256 wide: the narrowest shape whose rows are whole 256-value K-quant
    // super-blocks, for tests of Q4_K_M, Q5_K_M and Q6_K files on the CPU engine's fast path.
    Shape {
        family: Family::Llama,
        name: "tiny-256",
        vocab_size: 512,
        hidden_size: 256,
        intermediate_size: 512,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        max_position_embeddings: 2048,
        rope_theta: 10_000.0,
        rms_norm_eps: 1e-5,
        tie_word_embeddings: false,
    },
    // TinyLlama/TinyLlama-1.1B-Chat-v1.0.
    Shape {
        family: Family::Llama,
        name: "tinyllama-1.1b",
        vocab_size: 32_000,
        hidden_size: 2048,
        intermediate_size: 5632,
        num_hidden_layers: 22,
        num_attention_heads: 32,
        num_key_value_heads: 4,
        max_position_embeddings: 2048,
        rope_theta: 10_000.0,
        rms_norm_eps: 1e-5,
        tie_word_embeddings: false,
    },
    // meta-llama/Llama-3.2-1B (context capped at 8k: the rope scaling for 128k is not modelled).
    Shape {
        family: Family::Llama,
        name: "llama-3.2-1b",
        vocab_size: 128_256,
        hidden_size: 2048,
        intermediate_size: 8192,
        num_hidden_layers: 16,
        num_attention_heads: 32,
        num_key_value_heads: 8,
        max_position_embeddings: 8192,
        rope_theta: 500_000.0,
        rms_norm_eps: 1e-5,
        tie_word_embeddings: true,
    },
    // Qwen/Qwen2.5-0.5B-Instruct: rows 896 wide, not whole 256-value super-blocks, so its K-quant
    // files fall back to Q5_0/Q8_0 there, as llama.cpp's are.
    Shape {
        family: Family::Qwen2,
        name: "qwen2.5-0.5b",
        vocab_size: 151_936,
        hidden_size: 896,
        intermediate_size: 4864,
        num_hidden_layers: 24,
        num_attention_heads: 14,
        num_key_value_heads: 2,
        max_position_embeddings: 32_768,
        rope_theta: 1_000_000.0,
        rms_norm_eps: 1e-6,
        tie_word_embeddings: true,
    },
    // Qwen/Qwen3-1.7B (context capped at 32k, its native length).
    Shape {
        family: Family::Qwen3,
        name: "qwen3-1.7b",
        vocab_size: 151_936,
        hidden_size: 2048,
        intermediate_size: 6144,
        num_hidden_layers: 28,
        num_attention_heads: 16,
        num_key_value_heads: 8,
        max_position_embeddings: 32_768,
        rope_theta: 1_000_000.0,
        rms_norm_eps: 1e-6,
        tie_word_embeddings: true,
    },
];

/// Looks a shape up by name; the error lists the known ones.
pub fn shape(name: &str) -> Result<&'static Shape, GenError> {
    SHAPES
        .iter()
        .find(|s| s.name.eq_ignore_ascii_case(name.trim()))
        .ok_or_else(|| GenError::UnknownShape {
            name: name.to_owned(),
            known: SHAPES.iter().map(|s| s.name).collect::<Vec<_>>().join(", "),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_shape_lists_the_known_ones() {
        let err = shape("gpt-5").unwrap_err().to_string();
        assert!(
            err.contains("tiny") && err.contains("tinyllama-1.1b"),
            "{err}"
        );
    }

    #[test]
    fn parameter_counts_match_the_real_models() {
        // TinyLlama-1.1B has 1,100,048,384 parameters; Llama-3.2-1B 1,235,814,400.
        assert_eq!(
            shape("tinyllama-1.1b").unwrap().parameter_count(),
            1_100_048_384
        );
        assert_eq!(
            shape("llama-3.2-1b").unwrap().parameter_count(),
            1_235_814_400
        );
        // Qwen2.5-0.5B: 494,032,768 (its model card's 0.49B); Qwen3-1.7B: 1.4B without the
        // embedding, as its model card says.
        assert_eq!(
            shape("qwen2.5-0.5b").unwrap().parameter_count(),
            494_032_768
        );
        let qwen3 = shape("qwen3-1.7b").unwrap();
        assert_eq!(qwen3.parameter_count(), 1_720_574_976);
        assert_eq!(
            qwen3.parameter_count() - qwen3.vocab_size * qwen3.hidden_size,
            1_409_410_048
        );
    }

    #[test]
    fn every_row_is_a_whole_number_of_quant_blocks() {
        for s in SHAPES {
            for row in [s.hidden_size, s.intermediate_size] {
                assert_eq!(row % 32, 0, "{}: {row}", s.name);
            }
        }
    }
}
