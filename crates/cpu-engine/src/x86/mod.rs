//! The x86-64 kernels: the same layout and order of operations as the portable kernel, so the
//! same bits. This file dispatches a row group to the kernel for the instruction set and weight
//! format and holds the unchecked loads the kernels share; `avx2` and `avx512` hold the kernels.

#![allow(unsafe_code)] // SIMD loads; each unsafe block says why it stays inside its slices.

pub(crate) mod amx;
mod avx2;
mod avx512;
pub(crate) mod quantize;

use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};

use crate::isa::Isa;
use crate::matmul::MAX_TILE;
use crate::memory::CacheLines;
use crate::packing::{FLOAT_COLUMN_BYTES, Group, ROWS, group_stride, payloads_at, scales_at};
use crate::quant::{ActRow, BLOCK, SUPER, SuperRow, WeightFormat};

use avx2::{
    float_avx2, q4_0_avx2, q4_1_avx2, q4_k_avx2, q5_0_avx2, q5_1_avx2, q5_k_avx2,
    q5_k_unpacked_avx2, q6_k_avx2, q6_k_unpacked_avx2, q8_0_avx2,
};
use avx512::{
    float_vnni, q4_0_vnni, q4_0_vnni_one, q4_1_vnni, q4_1_vnni_one, q4_k_vnni, q5_0_vnni,
    q5_0_vnni_one, q5_1_vnni, q5_1_vnni_one, q5_k_vnni, q6_k_vnni, q8_0_vnni, q8_0_vnni_one,
};

/// Calls `$kernel::<N>(args)` with `N` the tile's token count `$n`: up to 8 (`tile`) or up to 2
/// (`pair`), the const generics the kernels are compiled for; `kernel[X]` passes `X` as a
/// second const generic.
macro_rules! tile {
    ($kernel:ident $([$extra:expr])?, $n:expr, $($arg:expr),+) => {
        match $n {
            1 => $kernel::<1 $(, $extra)?>($($arg),+),
            2 => $kernel::<2 $(, $extra)?>($($arg),+),
            3 => $kernel::<3 $(, $extra)?>($($arg),+),
            4 => $kernel::<4 $(, $extra)?>($($arg),+),
            5 => $kernel::<5 $(, $extra)?>($($arg),+),
            6 => $kernel::<6 $(, $extra)?>($($arg),+),
            7 => $kernel::<7 $(, $extra)?>($($arg),+),
            _ => $kernel::<8 $(, $extra)?>($($arg),+),
        }
    };
}

macro_rules! pair {
    ($kernel:ident $([$extra:expr])?, $n:expr, $($arg:expr),+) => {
        match $n {
            1 => $kernel::<1 $(, $extra)?>($($arg),+),
            _ => $kernel::<2 $(, $extra)?>($($arg),+),
        }
    };
}

/// A row group of K-quant super-blocks against up to eight tokens (AVX-512 VNNI) or two (AVX2).
pub(crate) fn k_group_tile(
    isa: Isa,
    group: Group<'_>,
    acts: &[SuperRow<'_>; MAX_TILE],
    n: usize,
    out: &mut [[f32; ROWS]; MAX_TILE],
) {
    let blocks = group.blocks;
    check_k_bounds(group, acts);
    match (isa, group.format) {
        (Isa::Avx512Vnni, WeightFormat::Q4_K) => {
            // SAFETY: the caller checked (Isa::is_supported) that this processor has the
            // kernel's features; the slice bounds were asserted above.
            unsafe { tile!(q4_k_vnni, n, group, acts, blocks, out) }
        }
        (Isa::Avx512Vnni, WeightFormat::Q5_K) => {
            // SAFETY: the caller checked (Isa::is_supported) that this processor has the
            // kernel's features; the slice bounds were asserted above.
            unsafe { tile!(q5_k_vnni, n, group, acts, blocks, out) }
        }
        (Isa::Avx512Vnni, WeightFormat::Q6_K) => {
            // SAFETY: the caller checked (Isa::is_supported) that this processor has the
            // kernel's features; the slice bounds were asserted above.
            unsafe { tile!(q6_k_vnni, n, group, acts, blocks, out) }
        }
        (_, WeightFormat::Q4_K) => {
            // SAFETY: the caller checked (Isa::is_supported) that this processor has the
            // kernel's features; the slice bounds were asserted above.
            unsafe { pair!(q4_k_avx2, n, group, acts, blocks, out) }
        }
        (_, WeightFormat::Q5_K) => {
            // SAFETY: the caller checked (Isa::is_supported) that this processor has the
            // kernel's features; the slice bounds were asserted above.
            unsafe { pair!(q5_k_avx2, n, group, acts, blocks, out) }
        }
        (_, WeightFormat::Q6_K) => {
            // SAFETY: the caller checked (Isa::is_supported) that this processor has the
            // kernel's features; the slice bounds were asserted above.
            unsafe { pair!(q6_k_avx2, n, group, acts, blocks, out) }
        }
        (_, other) => unreachable!("{other:?} is not a K-quant"),
    }
}

/// Bytes of one super-block of a row group unpacked: sixteen rows × 256 values.
const UNPACKED_SUPER_BYTES: usize = ROWS * SUPER;

/// Where half `h` (eight rows) of the low nibbles' values of word `c` of pair `p` lie in an
/// unpacked super-block; the high nibbles' lie 64 bytes on.
#[inline(always)]
const fn unpacked_at(p: usize, c: usize, h: usize) -> usize {
    1024 * p + 128 * c + 32 * h
}

/// A row group's Q5_K or Q6_K values one byte each, rebuilt once from their bit fields for
/// all of a prompt's token tiles (the kernels rebuilt them for every tile, which cost their
/// AVX2 prompts as much as the products). Per super-block 4 KB: per pair `p` of 32-value
/// sub-blocks (1 KB), per nibble word `c` (128 bytes), the values of its low nibbles then of
/// its high ones, 64 bytes each laid out as the packed word's bytes (row j at 4j..4j + 4).
/// Scales and mins stay in the packed group.
pub(crate) struct UnpackedGroup {
    bytes: CacheLines,
}

impl UnpackedGroup {
    pub(crate) fn new() -> Self {
        Self {
            bytes: CacheLines::zeroed(0),
        }
    }

    /// Whether prompts of `format` on `isa` go through an unpacked group: AVX2's Q5_K and Q6_K,
    /// whose values take more than nibble masks to rebuild. Measured on AMD Zen 5, one thread,
    /// 1024 × 2048, 128 tokens (16): AVX2 Q5_K 3.51 → 2.53 ms (484 → 373 µs), Q6_K 3.61 → 2.43
    /// (495 → 398); AVX2 Q4_K 2.55 → 2.58 (unchanged); AVX-512 VNNI, eight tokens a call
    /// sharing each rebuilt word, Q5_K 1.30 → 1.22 (195 → 210 µs), Q6_K 1.25 → 1.26 (203 →
    /// 233), Q4_K 1.22 → 1.29.
    pub(crate) fn pays_for(isa: Isa, format: WeightFormat) -> bool {
        isa == Isa::Avx2 && matches!(format, WeightFormat::Q5_K | WeightFormat::Q6_K)
    }

    /// Unpacks `group` (Q5_K or Q6_K) in place of what this held.
    pub(crate) fn unpack(&mut self, group: Group<'_>) {
        assert!(
            matches!(group.format, WeightFormat::Q5_K | WeightFormat::Q6_K),
            "no unpacking for {:?}",
            group.format
        );
        let len = group.blocks * UNPACKED_SUPER_BYTES;
        if self.bytes.as_ref().len() < len {
            self.bytes = CacheLines::zeroed(len);
        }
        if let Some(last) = group.blocks.checked_sub(1) {
            let _ = group.super_block(last);
        }
        assert!(Isa::Avx2.is_supported(), "unpacking needs AVX2");
        // SAFETY: AVX2 is here (asserted); every super-block lies inside the group (the slicing
        // above panics otherwise) and `bytes` holds as many unpacked.
        unsafe { avx2::unpack_k_avx2(group, self.bytes.as_mut()) }
    }

    fn bytes(&self, blocks: usize) -> &[u8] {
        &self.bytes.as_ref()[..blocks * UNPACKED_SUPER_BYTES]
    }
}

/// [`k_group_tile`] on `unpacked`, which holds `group` unpacked.
pub(crate) fn k_unpacked_tile(
    isa: Isa,
    group: Group<'_>,
    unpacked: &UnpackedGroup,
    acts: &[SuperRow<'_>; MAX_TILE],
    n: usize,
    out: &mut [[f32; ROWS]; MAX_TILE],
) {
    let blocks = group.blocks;
    check_k_bounds(group, acts);
    // Panics unless the unpacked group holds as many super-blocks.
    let values = unpacked.bytes(blocks);
    // SAFETY (each arm): the caller checked (Isa::is_supported) that this processor has the
    // kernel's features; the bounds were checked above.
    match (isa, group.format) {
        (Isa::Avx2, WeightFormat::Q5_K) => unsafe {
            pair!(q5_k_unpacked_avx2, n, group, values, acts, blocks, out)
        },
        (Isa::Avx2, WeightFormat::Q6_K) => unsafe {
            pair!(q6_k_unpacked_avx2, n, group, values, acts, blocks, out)
        },
        (isa, format) => unreachable!("no unpacked {format:?} kernel for {isa:?}"),
    }
}

/// The bounds the K-quant kernels' unchecked loads rely on: the last super-block lies inside
/// the group (the slicing panics otherwise), the activations hold as many.
fn check_k_bounds(group: Group<'_>, acts: &[SuperRow<'_>; MAX_TILE]) {
    let blocks = group.blocks;
    if let Some(last) = blocks.checked_sub(1) {
        let _ = group.super_block(last);
    }
    for a in acts {
        assert!(a.qs.len() >= blocks * SUPER && a.scale.len() >= blocks);
        assert!(a.sums16.len() >= blocks * 16 && a.sums32.len() >= blocks * 8);
    }
}

/// A row group of F16 or BF16 weights against up to eight tokens' floats (AVX-512) or two
/// (AVX2).
pub(crate) fn float_group_tile(
    isa: Isa,
    group: Group<'_>,
    acts: &[&[f32]; MAX_TILE],
    n: usize,
    out: &mut [[f32; ROWS]; MAX_TILE],
) {
    let cols = group.blocks * BLOCK;
    // The bounds the kernels' unchecked loads rely on: every column inside the group, every
    // activation row as long.
    assert!(group.bytes.len() >= cols * FLOAT_COLUMN_BYTES);
    for a in acts {
        assert!(a.len() >= cols);
    }
    let bf16 = group.format == WeightFormat::BF16;
    // SAFETY (each arm): the caller checked (Isa::is_supported) that this processor has the
    // kernel's features; the bounds were asserted above.
    match (isa, bf16) {
        (Isa::Avx512Vnni, false) => unsafe { tile!(float_vnni[false], n, group, acts, cols, out) },
        (Isa::Avx512Vnni, true) => unsafe { tile!(float_vnni[true], n, group, acts, cols, out) },
        (_, false) => unsafe { pair!(float_avx2[false], n, group, acts, cols, out) },
        (_, true) => unsafe { pair!(float_avx2[true], n, group, acts, cols, out) },
    }
}

pub(crate) fn group_tile(
    isa: Isa,
    group: Group<'_>,
    acts: &[ActRow<'_>; MAX_TILE],
    n: usize,
    out: &mut [[f32; ROWS]; MAX_TILE],
) {
    let (format, blocks) = (group.format, group.blocks);
    // The bounds every kernel relies on for its unchecked loads: the last block's scales
    // and payloads lie inside the group (the slicing panics otherwise), and so do the
    // activations' blocks.
    if let Some(last) = blocks.checked_sub(1) {
        let _ = (group.scales(last), group.payloads(last));
        if format.has_min() {
            let _ = group.mins(last);
        }
    }
    for a in acts {
        assert!(a.qs.len() >= blocks * BLOCK);
        assert!(a.scale.len() >= blocks && a.sums.len() >= blocks);
    }
    match (isa, format) {
        // SAFETY: as above.
        (Isa::Avx512Vnni, WeightFormat::Q4_0) if n == 1 => unsafe {
            q4_0_vnni_one(group, &acts[0], &mut out[0])
        },
        // SAFETY: as above.
        (Isa::Avx512Vnni, WeightFormat::Q8_0) if n == 1 => unsafe {
            q8_0_vnni_one(group, &acts[0], &mut out[0])
        },
        // SAFETY: as above.
        (Isa::Avx512Vnni, WeightFormat::Q5_0) if n == 1 => unsafe {
            q5_0_vnni_one(group, &acts[0], &mut out[0])
        },
        (Isa::Avx512Vnni, WeightFormat::Q5_0) => {
            // SAFETY: the caller checked (Isa::is_supported) that this processor has the
            // kernel's features; the slice bounds were asserted above.
            unsafe { tile!(q5_0_vnni, n, group, acts, blocks, out) }
        }
        // SAFETY: as above.
        (Isa::Avx512Vnni, WeightFormat::Q5_1) if n == 1 => unsafe {
            q5_1_vnni_one(group, &acts[0], &mut out[0])
        },
        (Isa::Avx512Vnni, WeightFormat::Q5_1) => {
            // SAFETY: the caller checked (Isa::is_supported) that this processor has the
            // kernel's features; the slice bounds were asserted above.
            unsafe { tile!(q5_1_vnni, n, group, acts, blocks, out) }
        }
        // SAFETY: as above.
        (Isa::Avx512Vnni, WeightFormat::Q4_1) if n == 1 => unsafe {
            q4_1_vnni_one(group, &acts[0], &mut out[0])
        },
        (Isa::Avx512Vnni, WeightFormat::Q4_1) => {
            // SAFETY: the caller checked (Isa::is_supported) that this processor has the
            // kernel's features; the slice bounds were asserted above.
            unsafe { tile!(q4_1_vnni, n, group, acts, blocks, out) }
        }
        (Isa::Avx512Vnni, WeightFormat::Q4_0) => {
            // SAFETY: the caller checked (Isa::is_supported) that this processor has the
            // kernel's features; the slice bounds were asserted above.
            unsafe { tile!(q4_0_vnni, n, group, acts, blocks, out) }
        }
        (Isa::Avx512Vnni, WeightFormat::Q8_0) => {
            // SAFETY: the caller checked (Isa::is_supported) that this processor has the
            // kernel's features; the slice bounds were asserted above.
            unsafe { tile!(q8_0_vnni, n, group, acts, blocks, out) }
        }
        (_, WeightFormat::Q4_0) => {
            // SAFETY: the caller checked (Isa::is_supported) that this processor has the
            // kernel's features; the slice bounds were asserted above.
            unsafe { pair!(q4_0_avx2, n, group, acts, blocks, out) }
        }
        (_, WeightFormat::Q8_0) => {
            // SAFETY: the caller checked (Isa::is_supported) that this processor has the
            // kernel's features; the slice bounds were asserted above.
            unsafe { pair!(q8_0_avx2, n, group, acts, blocks, out) }
        }
        (_, WeightFormat::Q4_1) => {
            // SAFETY: the caller checked (Isa::is_supported) that this processor has the
            // kernel's features; the slice bounds were asserted above.
            unsafe { pair!(q4_1_avx2, n, group, acts, blocks, out) }
        }
        (_, WeightFormat::Q5_0) => {
            // SAFETY: the caller checked (Isa::is_supported) that this processor has the
            // kernel's features; the slice bounds were asserted above.
            unsafe { pair!(q5_0_avx2, n, group, acts, blocks, out) }
        }
        (_, WeightFormat::Q5_1) => {
            // SAFETY: the caller checked (Isa::is_supported) that this processor has the
            // kernel's features; the slice bounds were asserted above.
            unsafe { pair!(q5_1_avx2, n, group, acts, blocks, out) }
        }
        (
            _,
            WeightFormat::Q4_K
            | WeightFormat::Q5_K
            | WeightFormat::Q6_K
            | WeightFormat::F16
            | WeightFormat::BF16,
        ) => unreachable!("see k_group_tile and float_group_tile"),
    }
}

/// Activation row `a`'s block `b`: its 32 bytes as eight 4-byte words, their sum, its scale.
///
/// # Safety
/// The row holds more than `b` blocks.
#[inline(always)]
unsafe fn act_block(a: &ActRow<'_>, b: usize) -> (*const i32, i32, f32) {
    // SAFETY: block b is inside the row (the caller's promise), so are its 32 bytes at
    // b * 32, its sum and its scale at b.
    unsafe {
        (
            a.qs.as_ptr().add(b * BLOCK).cast(),
            *a.sums.get_unchecked(b),
            *a.scale.get_unchecked(b),
        )
    }
}

/// Where block `b` of a group starts: its payloads, its scales.
///
/// # Safety
/// The group holds more than `b` blocks of `format`.
#[inline(always)]
unsafe fn block_at(group: &Group<'_>, format: WeightFormat, b: usize) -> (*const u8, *const u8) {
    let base = group.bytes.as_ptr();
    // SAFETY: both offsets of a block the group holds lie inside its bytes.
    unsafe {
        (
            base.add(payloads_at(format, b)),
            base.add(scales_at(format, b)),
        )
    }
}

/// Two neighbouring 16-bit activation sums from `at` as one 32-bit value: the pair a `madd` or
/// `dpwssd` multiplies against a row's two scales or mins.
///
/// # Safety
/// `at + 1 < sums.len()`.
#[inline(always)]
unsafe fn sum_pair(sums: &[i16], at: usize) -> i32 {
    // SAFETY: the caller's promise; the sums have 2-byte alignment only.
    unsafe { sums.as_ptr().add(at).cast::<i32>().read_unaligned() }
}

/// Four activation bytes (word `c` of a block) in every 32-bit lane.
///
/// # Safety
/// `words` points at a block's 32 bytes and `c` < 8.
#[inline(always)]
unsafe fn word(words: *const i32, c: usize) -> i32 {
    // SAFETY: the caller's promise; activation bytes have no alignment.
    unsafe { words.add(c).read_unaligned() }
}

/// Asks for the `bytes` from `at` (the next super-block of a one-token kernel's stream) ahead of
/// their use: the hardware prefetcher alone fell behind the weight stream in decode (AMD Zen 3,
/// AVX2, 2 threads, TinyLlama-1.1B: Q6_K 15.2 → 19.9 t/s, Q4_K_M 27.8 → 31.2, Q4_0 31.1 → 37.2).
#[inline(always)]
fn prefetch(at: *const u8, bytes: usize) {
    for line in (0..bytes).step_by(64) {
        // SAFETY: a prefetch is a hint: it never faults, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(line).cast()) };
    }
}

/// How far ahead of its block a one-token kernel asks for the weights: about 2 KB. Two blocks
/// ahead (576 bytes of Q4_0) was too close on Intel: Xeon with AMX, TinyLlama-1.1B, 2 threads,
/// Q4_0 decode 25.5 t/s (four runs, 24.8–26.3) → 33 (29.0–38.4) at eight blocks, 2.3 KB; AMD
/// Zen 5 gained a little too. The K-quants' one super-block ahead is already 2.3–3.4 KB.
const PREFETCH_AHEAD_BYTES: usize = 2048;

/// For a one-token kernel at block `b` of `group`: asks, at every other block, for the pair of
/// blocks about [`PREFETCH_AHEAD_BYTES`] on (blocks go in pairs), as [`prefetch`] does for
/// super-blocks.
#[inline(always)]
fn prefetch_blocks_ahead(group: &Group<'_>, format: WeightFormat, b: usize) {
    if b.is_multiple_of(2) {
        let pair = group_stride(format, 2);
        let ahead = 2 * PREFETCH_AHEAD_BYTES.div_ceil(pair);
        let at = group
            .bytes
            .as_ptr()
            .wrapping_add(scales_at(format, b + ahead));
        prefetch(at, pair);
    }
}

#[cfg(test)]
mod tests {
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    use super::*;
    use crate::packing::{QMatrix, q5_k_quant, q6_k_quant};
    use crate::quant::GgufRows;

    /// An unpacked group holds, at every row and value, the quant the portable kernel reads
    /// from the packed group (Q6_K's as stored, + 32).
    #[test]
    fn unpacked_groups_hold_the_values_the_portable_kernel_reads() {
        if !Isa::Avx2.is_supported() {
            rigger_model_gen::declare_skip(
                "cpu-engine x86: unpacked groups hold the portable kernel's values",
                "AVX2 is not available on this processor",
            );
            return;
        }
        let (rows, cols) = (16, 3 * SUPER);
        let x: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 7919 % 2003) as f32 / 2003.0 - 0.5) * (1.0 + (i % 7) as f32))
            .collect();
        let t = Tensor::from_vec(x, (rows, cols), &Device::Cpu).expect("a tensor");
        for (dtype, format) in [
            (GgmlDType::Q5K, WeightFormat::Q5_K),
            (GgmlDType::Q6K, WeightFormat::Q6_K),
        ] {
            let bytes = QTensor::quantize(&t, dtype)
                .and_then(|q| q.data().map(|d| d.into_owned()))
                .expect("quantized");
            let w = QMatrix::pack(GgufRows::new(format, rows, cols, bytes).expect("whole blocks"));
            let group = w.group(0);
            let mut unpacked = UnpackedGroup::new();
            unpacked.unpack(group);
            let values = unpacked.bytes(group.blocks);
            let mut seen = [false; 64];
            for b in 0..group.blocks {
                let sb = group.super_block(b);
                for j in 0..ROWS {
                    for k in 0..SUPER {
                        let (p, within) = (k / 64, k % 64);
                        let at = b * UNPACKED_SUPER_BYTES
                            + unpacked_at(p, within % 32 / 4, 0)
                            + 64 * (within / 32)
                            + 4 * j
                            + k % 4;
                        let want = match format {
                            WeightFormat::Q5_K => q5_k_quant(sb, j, k),
                            _ => q6_k_quant(sb, j, k),
                        };
                        seen[want as usize] = true;
                        assert_eq!(
                            i32::from(values[at]),
                            want,
                            "{format:?} super-block {b} row {j} value {k}"
                        );
                    }
                }
            }
            // The values span their range, so every bit field was put back somewhere.
            let top = if format == WeightFormat::Q5_K { 32 } else { 64 };
            assert!(seen[..top].iter().filter(|s| **s).count() > top * 3 / 4);
        }
    }
}
