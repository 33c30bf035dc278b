//! The layers transformer architectures share, on f32 rows: RMS norm, rotary embedding,
//! SwiGLU, the residual add.

/// Each `dim`-wide row of `x`, normalised by its root mean square and scaled by `weight`.
pub(crate) fn rms_norm(x: &[f32], weight: &[f32], dim: usize, eps: f32) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks_exact(dim) {
        // Divided, not multiplied by the inverse: candle's rounding, so 8-bit activation
        // quantization downstream sees the same values.
        let rms = (row.iter().map(|v| v * v).sum::<f32>() / dim as f32 + eps).sqrt();
        out.extend(row.iter().zip(weight).map(|(v, w)| v / rms * w));
    }
    out
}

/// Rotary position embedding with interleaved pairs (GGUF's Q/K layout).
pub(crate) struct Rope {
    head_dim: usize,
    inv_freq: Vec<f32>,
}

impl Rope {
    pub(crate) fn new(head_dim: usize, base: f32) -> Self {
        // As candle computes them: f32 powers, then f32 angles.
        let inv_freq = (0..head_dim)
            .step_by(2)
            .map(|i| 1.0 / base.powf(i as f32 / head_dim as f32))
            .collect();
        Self { head_dim, inv_freq }
    }

    /// Rotates adjacent pairs of every head in `x` to `position`.
    pub(crate) fn apply(&self, x: &mut [f32], position: usize) {
        let angles: Vec<(f32, f32)> = self
            .inv_freq
            .iter()
            .map(|f| (position as f32 * f).sin_cos())
            .collect();
        for head in x.chunks_exact_mut(self.head_dim) {
            for (pair, (sin, cos)) in head.chunks_exact_mut(2).zip(&angles) {
                let (a, b) = (pair[0], pair[1]);
                pair[0] = a * cos - b * sin;
                pair[1] = a * sin + b * cos;
            }
        }
    }
}

/// SwiGLU on rows of `[gate | up]`, each half `ffn` wide: silu(gate) × up.
pub(crate) fn swiglu(gate_up: &[f32], ffn: usize) -> Vec<f32> {
    gate_up
        .chunks_exact(2 * ffn)
        .flat_map(|row| {
            let (gate, up) = row.split_at(ffn);
            gate.iter().zip(up).map(|(g, u)| g / (1.0 + (-g).exp()) * u)
        })
        .collect()
}

/// The residual connection: `x += y`.
pub(crate) fn add(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}
