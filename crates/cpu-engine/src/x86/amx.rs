//! AMX int8 tiles for prompts (Intel Xeon since Sapphire Rapids): one `tdpbssd` multiplies 16
//! tokens' activation bytes by 16 rows' weight bytes over 32 values (16 for Q6_K's groups), what
//! the AVX-512 kernels do in 128 `dpbusd`. Per row group the weights are unpacked once into
//! signed bytes laid out as B tiles (four consecutive values of each of the 16 rows per 64-byte
//! tile row, the rows-in-lanes layout of the packing, so Q8_0's payload is already one); the
//! activations are laid out once per product as A tiles ([`TileActs`]). Each block's (or
//! sub-block's) 16 × 16 integer product goes to memory and is scaled in AVX-512 registers in the
//! portable kernel's order, so the results are its bits:
//! - Q4_0, Q8_0: per block `fma(d_w × d_x, dot, total)`.
//! - Q4_K: values − 8 (so a sub-block's dot, at most 32 × 8 × 127 in magnitude, fits 16 bits)
//!   times the sub-block scale by `dpwssd`; the + 8 × Σx and the mins from the activation sums;
//!   per super-block the two multiply-adds.
//! - Q5_K: as Q4_K with values − 16, whose dots need 17 bits, so times the scale by `mullo`.
//! - Q6_K: values − 32, per 16-value group times its int8 scale (`mullo`); per super-block one
//!   multiply-add.
//!
//! Linux hands tile state to a process only after it asks (`arch_prctl(ARCH_REQ_XCOMP_PERM)`);
//! [`available`] asks once. The intrinsics are not stable Rust, so the tile instructions are
//! `asm!`.

use std::arch::asm;
use std::arch::x86_64::*;
use std::mem::MaybeUninit;
use std::sync::OnceLock;

use super::avx512::fifth_bits;
use crate::isa::Isa;
use crate::packing::{Group, ROWS, payloads_at, q4_k, q5_k, q6_k, scales_at};
use crate::parallel::new_rows;
use crate::quant::{BLOCK, QActs, SUPER, WeightFormat};

/// Tokens per A tile (a tile's 16 rows).
pub(crate) const TOKENS: usize = 16;

/// Whether this processor has AMX int8 tiles and the OS lets this process use them.
pub(crate) fn available() -> bool {
    static ALLOWED: OnceLock<bool> = OnceLock::new();
    *ALLOWED.get_or_init(|| processor_has_tiles() && os_allows_tiles())
}

fn processor_has_tiles() -> bool {
    // CPUID leaf 7: EDX bit 24 AMX-TILE, bit 25 AMX-INT8.
    #[allow(unused_unsafe)] // safe in newer toolchains
    // SAFETY: CPUID exists on every x86-64 processor; leaf 7 is asked for only where leaf 0
    // says it exists.
    let (max_leaf, edx) = unsafe {
        let max = __cpuid(0).eax;
        (max, if max >= 7 { __cpuid_count(7, 0).edx } else { 0 })
    };
    max_leaf >= 7 && edx & (3 << 24) == 3 << 24
}

#[cfg(target_os = "linux")]
fn os_allows_tiles() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: a request for permission; it changes no memory of ours.
    unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        ) == 0
    }
}

#[cfg(not(target_os = "linux"))]
fn os_allows_tiles() -> bool {
    false // where the permission request is unknown to us, the AVX-512 kernels run
}

/// The weight formats the tiles run; the others stay on the AVX-512 kernels.
pub(crate) fn covers(format: WeightFormat) -> bool {
    matches!(
        format,
        WeightFormat::Q4_0
            | WeightFormat::Q8_0
            | WeightFormat::Q4_K
            | WeightFormat::Q5_K
            | WeightFormat::Q6_K
    )
}

/// Values per tile product: a block (Q4_0, Q8_0), a sub-block (Q4_K, Q5_K), a group (Q6_K).
const fn depth(format: WeightFormat) -> usize {
    match format {
        WeightFormat::Q6_K => 16,
        _ => 32,
    }
}

/// The tile configuration (`ldtilecfg`'s 64 bytes): palette 1; tiles 0 and 3 the 16 × 16
/// products (i32), 1 and 4 the A tiles (16 tokens × `depth` bytes), 2 and 5 the B tiles
/// (`depth` / 4 rows of 64 bytes).
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    bytes_per_row: [u16; 16],
    rows: [u8; 16],
}

impl TileConfig {
    fn new(depth: usize) -> Self {
        let mut config = TileConfig {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            bytes_per_row: [0; 16],
            rows: [0; 16],
        };
        for set in [0, 3] {
            config.bytes_per_row[set] = 64;
            config.rows[set] = 16;
            config.bytes_per_row[set + 1] = depth as u16;
            config.rows[set + 1] = 16;
            config.bytes_per_row[set + 2] = 64;
            config.rows[set + 2] = (depth / 4) as u8;
        }
        config
    }
}

/// The activations of a product laid out as A tiles: per 16 tokens, per tile product (a block,
/// sub-block or group: `depth` values), the 16 tokens' bytes one after another, so a tile load
/// reads 8 whole cache lines (as it lay, 16 lines `cols` apart, mostly from L2); the last tile's
/// missing tokens are zeros. Built once per product, read by every row group.
pub(crate) struct TileActs<'a> {
    tiles: Vec<i8>,
    depth: usize,
    scale: &'a [f32],
    sums32: &'a [i16],
    rows: usize,
    cols: usize,
}

impl<'a> TileActs<'a> {
    pub(crate) fn new(a: &'a QActs, format: WeightFormat, isa: Isa) -> Self {
        let (qs, scale, sums32): (&[i8], &[f32], &[i16]) = if format.is_k_quant() {
            let s = a.supers(isa);
            (&s.qs, &s.scale, &s.sums32)
        } else {
            let b = a.blocks(isa);
            (&b.qs, &b.scale, &[])
        };
        let (rows, cols, depth) = (a.rows, a.cols, depth(format));
        // Tasks of 16 tokens × up to 16 tile products (a tile of tokens alone left 8 tasks for
        // 16 threads at 128 tokens); the missing tokens of the last tile written as zeros.
        let products = cols / depth;
        let per_task = gcd(products, 16);
        let tiles = new_rows(
            rows.div_ceil(TOKENS) * TOKENS * cols,
            TOKENS * depth * per_task,
            |at, out| {
                let (tile, k0) = (
                    at / (TOKENS * cols),
                    at % (TOKENS * cols) / (TOKENS * depth),
                );
                for (i, values) in out.chunks_exact_mut(depth).enumerate() {
                    let (k, m) = (k0 + i / TOKENS, i % TOKENS);
                    let token = tile * TOKENS + m;
                    if token < rows {
                        let row = &qs[token * cols + k * depth..][..depth];
                        for (slot, v) in values.iter_mut().zip(row) {
                            slot.write(*v);
                        }
                    } else {
                        values.fill(MaybeUninit::new(0));
                    }
                }
            },
            |_, _| {},
        );
        Self {
            tiles,
            depth,
            scale,
            sums32,
            rows,
            cols,
        }
    }

    /// Where the tile of tokens `t0..t0 + 16` starts: its tile product `k`'s A tile lies
    /// `16 × depth × k` bytes on, its rows `depth` bytes apart.
    fn tile(&self, t0: usize) -> *const i8 {
        self.tiles[t0 * self.cols..].as_ptr()
    }

    /// Token `t0 + m` of a tile, the last token standing in past the end (never emitted).
    fn token(&self, t0: usize, m: usize) -> usize {
        (t0 + m).min(self.rows - 1)
    }
}

/// The greatest common divisor: how many tile products a layout task takes.
fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// One task's tile state: the tile configuration in force on its thread, the unpacked weights
/// of the row group at hand, the tile products' buffer. Dropping it releases the tiles (the
/// thread's tile registers go back to their initial state, which keeps context switches cheap).
pub(crate) struct Tiles {
    configured: Option<usize>,
    weights: Vec<i8>,
    products: Box<Products>,
}

impl Tiles {
    pub(crate) fn new() -> Self {
        Self {
            configured: None,
            weights: Vec::new(),
            products: Box::new(Products([[0; 16]; 16 * 16])),
        }
    }

    /// Row group `group` times every token of `acts`: `emit(t0, n, results)` per tile of
    /// tokens `t0..t0 + n`, `results[m]` the sixteen rows' values for token `t0 + m`.
    pub(crate) fn group_product(
        &mut self,
        group: Group<'_>,
        acts: &TileActs<'_>,
        mut emit: impl FnMut(usize, usize, &[[f32; ROWS]; TOKENS]),
    ) {
        assert!(available(), "AMX tiles are not available");
        assert!(covers(group.format));
        let cols = acts.cols;
        let values = group.blocks * group.format.block_values();
        assert_eq!(
            values, cols,
            "the group's rows and the activations differ in length"
        );
        // The bounds the unchecked loads below rely on: the group's last block lies inside it
        // (the slicing panics otherwise), the activations hold `rows` rows of `cols` bytes and
        // their scales and sums.
        if group.format.is_k_quant() {
            let _ = group.super_block(group.blocks - 1);
            let supers = cols / SUPER;
            assert!(
                acts.scale.len() >= acts.rows * supers
                    && acts.sums32.len() >= acts.rows * supers * 8
            );
        } else {
            let _ = (
                group.scales(group.blocks - 1),
                group.payloads(group.blocks - 1),
            );
            assert!(acts.scale.len() >= acts.rows * (cols / BLOCK));
        }
        assert!(acts.tiles.len() >= acts.rows.div_ceil(TOKENS) * TOKENS * cols && acts.rows > 0);
        assert_eq!(
            acts.depth,
            depth(group.format),
            "activations laid out for another format"
        );
        if self.weights.len() < ROWS * cols {
            self.weights.resize(ROWS * cols, 0);
        }
        let weights = &mut self.weights[..ROWS * cols];
        let c = self.products.0.as_mut_ptr().cast::<i32>();
        let depth = depth(group.format);
        let mut results = [[0f32; ROWS]; TOKENS];
        // SAFETY: the processor has AVX-512 and AMX int8 and the OS granted the tiles (asserted
        // above: `available`, which the ISA's `is_supported` implies); every pointer below
        // stays inside the slices whose bounds were asserted above.
        unsafe {
            if self.configured != Some(depth) {
                let config = TileConfig::new(depth);
                asm!("ldtilecfg [{}]", in(reg) &config, options(nostack, readonly));
                self.configured = Some(depth);
            }
            unpack(group, weights);
            let mut t0 = 0;
            while t0 < acts.rows {
                match group.format {
                    WeightFormat::Q4_K => {
                        q4_q5_k_tile::<false>(group, acts, weights, c, t0, &mut results)
                    }
                    WeightFormat::Q5_K => {
                        q4_q5_k_tile::<true>(group, acts, weights, c, t0, &mut results)
                    }
                    WeightFormat::Q6_K => q6_k_tile(group, acts, weights, c, t0, &mut results),
                    _ => block_tile(group, acts, weights, c, t0, &mut results),
                }
                emit(t0, (acts.rows - t0).min(TOKENS), &results);
                t0 += TOKENS;
            }
        }
    }
}

impl Drop for Tiles {
    fn drop(&mut self) {
        if self.configured.is_some() {
            // SAFETY: this thread configured the tiles (a task's state stays on its thread).
            unsafe { asm!("tilerelease", options(nostack, nomem)) };
        }
    }
}

/// `c` (16 × 16 i32, 64 bytes a row) = A (16 rows at `a`, `a_stride` apart) · B (at `b`, 64
/// bytes a row), in tile set `SET` (0: tiles 0–2, 1: tiles 3–5) so that one product's store can
/// wait while the next one runs.
///
/// # Safety
/// Tiles configured ([`TileConfig`]); A's 16 rows of the configured depth, B's rows and `c`'s
/// 1024 bytes lie inside their buffers.
#[inline(always)]
unsafe fn tile_product<const SET: usize>(a: *const i8, a_stride: usize, b: *const i8, c: *mut i32) {
    // SAFETY: the caller's promise.
    unsafe {
        if SET == 0 {
            asm!(
                "tilezero tmm0",
                "tileloadd tmm1, [{a} + {a_stride}*1]",
                "tileloadd tmm2, [{b} + {row}*1]",
                "tdpbssd tmm0, tmm1, tmm2",
                "tilestored [{c} + {row}*1], tmm0",
                a = in(reg) a, a_stride = in(reg) a_stride, b = in(reg) b, c = in(reg) c,
                row = in(reg) 64usize, options(nostack),
            );
        } else {
            asm!(
                "tilezero tmm3",
                "tileloadd tmm4, [{a} + {a_stride}*1]",
                "tileloadd tmm5, [{b} + {row}*1]",
                "tdpbssd tmm3, tmm4, tmm5",
                "tilestored [{c} + {row}*1], tmm3",
                a = in(reg) a, a_stride = in(reg) a_stride, b = in(reg) b, c = in(reg) c,
                row = in(reg) 64usize, options(nostack),
            );
        }
    }
}

/// Tile products `first..first + count` of a tile of tokens into `c` (product `first` at `c`,
/// the others 1024 bytes on): A tiles at `a`, B tiles at `weights`, `16 × depth` bytes each,
/// product k in tile set k % 2 so that one product's store waits while the next runs.
///
/// # Safety
/// As for [`tile_product`], for each of these products.
#[inline(always)]
unsafe fn tile_products(
    a: *const i8,
    weights: *const i8,
    depth: usize,
    first: usize,
    count: usize,
    c: *mut i32,
) {
    for (i, k) in (first..first + count).enumerate() {
        // SAFETY: the caller's promise.
        unsafe {
            let (at, to, into) = (
                a.add(16 * depth * k),
                weights.add(16 * depth * k),
                c.add(256 * i),
            );
            if k % 2 == 0 {
                tile_product::<0>(at, depth, to, into);
            } else {
                tile_product::<1>(at, depth, to, into);
            }
        }
    }
}

/// Sixteen tokens' results, as the kernels hold them, into `out`.
#[target_feature(enable = "avx512f")]
fn store(total: [__m512; TOKENS], out: &mut [[f32; ROWS]; TOKENS]) {
    for (o, total) in out.iter_mut().zip(total) {
        // SAFETY: `o` holds sixteen floats.
        unsafe { _mm512_storeu_ps(o.as_mut_ptr(), total) };
    }
}

/// The group's weights as signed bytes in B tiles, one per tile product in order (`depth` / 4
/// rows of 64 bytes each): Q8_0 as stored less its +128, Q4_0 nibbles − 8, Q4_K nibbles − 8 and
/// Q5_K values − 16 per 32-value sub-block, Q6_K values − 32 per 16-value group.
///
/// # Safety
/// AVX-512 BW; the group's blocks lie inside it; `out` holds 16 bytes per value of a row.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn unpack(group: Group<'_>, out: &mut [i8]) {
    let base = group.bytes.as_ptr();
    let dst = out.as_mut_ptr();
    let nibble = _mm512_set1_epi8(0x0f);
    // SAFETY (each block): its payload words lie inside the group (the caller's promise),
    // and its tiles inside `out` (16 bytes per value).
    unsafe {
        let put = |at: usize, v: __m512i| _mm512_storeu_si512(dst.add(at).cast(), v);
        let load = |at: usize| _mm512_loadu_si512(base.add(at).cast());
        match group.format {
            WeightFormat::Q8_0 => {
                let flip = _mm512_set1_epi8(-128);
                for b in 0..group.blocks {
                    for c in 0..8 {
                        let w = load(payloads_at(WeightFormat::Q8_0, b) + 64 * c);
                        put(512 * b + 64 * c, _mm512_xor_si512(w, flip));
                    }
                }
            }
            WeightFormat::Q4_0 => {
                let eight = _mm512_set1_epi8(8);
                for b in 0..group.blocks {
                    for c in 0..4 {
                        let w = load(payloads_at(WeightFormat::Q4_0, b) + 64 * c);
                        let low = _mm512_and_si512(w, nibble);
                        let high = _mm512_and_si512(_mm512_srli_epi16(w, 4), nibble);
                        put(512 * b + 64 * c, _mm512_sub_epi8(low, eight));
                        put(512 * b + 64 * (c + 4), _mm512_sub_epi8(high, eight));
                    }
                }
            }
            WeightFormat::Q4_K | WeightFormat::Q5_K => {
                let five = group.format == WeightFormat::Q5_K;
                let (stride, offset) = if five {
                    (q5_k::BYTES, _mm512_set1_epi8(16))
                } else {
                    (q4_k::BYTES, _mm512_set1_epi8(8))
                };
                for b in 0..group.blocks {
                    let sb = b * stride;
                    for p in 0..4 {
                        for r in 0..8 {
                            // Word 8p + r: values 64p + 4r.. (low nibbles, sub-block 2p) and
                            // 32 further (high, sub-block 2p + 1).
                            let w = load(sb + q4_k::QS + 64 * (8 * p + r));
                            let mut low = _mm512_and_si512(w, nibble);
                            let mut high = _mm512_and_si512(_mm512_srli_epi16(w, 4), nibble);
                            if five {
                                // Their fifth bits: word 2p + r/4 of `HI`.
                                let hi = load(sb + q5_k::HI + 64 * (2 * p + r / 4));
                                let (l, h) = fifth_bits(hi, r % 4);
                                low = _mm512_or_si512(low, l);
                                high = _mm512_or_si512(high, h);
                            }
                            put(512 * (8 * b + 2 * p) + 64 * r, _mm512_sub_epi8(low, offset));
                            put(
                                512 * (8 * b + 2 * p + 1) + 64 * r,
                                _mm512_sub_epi8(high, offset),
                            );
                        }
                    }
                }
            }
            WeightFormat::Q6_K => {
                let (two_bits, offset) = (_mm512_set1_epi8(3), _mm512_set1_epi8(32));
                for b in 0..group.blocks {
                    let sb = b * q6_k::BYTES;
                    for c in 0..32 {
                        let w = load(sb + q6_k::LO + 64 * c);
                        let high_bits = load(sb + q6_k::HI + 64 * (c / 2));
                        let shift = 4 * (c % 2) as u32;
                        let (hb_low, hb_high) = (
                            _mm512_and_si512(
                                _mm512_srl_epi16(high_bits, _mm_cvtsi32_si128(shift as i32)),
                                two_bits,
                            ),
                            _mm512_and_si512(
                                _mm512_srl_epi16(high_bits, _mm_cvtsi32_si128(shift as i32 + 2)),
                                two_bits,
                            ),
                        );
                        let low = _mm512_or_si512(
                            _mm512_and_si512(w, nibble),
                            _mm512_slli_epi16(hb_low, 4),
                        );
                        let high = _mm512_or_si512(
                            _mm512_and_si512(_mm512_srli_epi16(w, 4), nibble),
                            _mm512_slli_epi16(hb_high, 4),
                        );
                        // Word c: values 64(c/8) + 4(c%8).. (low nibbles) and 32 further (high):
                        // group 4(c/8) + (c%8)/4 (and two groups on), tile row c % 4.
                        let g = 16 * b + 4 * (c / 8) + (c % 8) / 4;
                        put(256 * g + 64 * (c % 4), _mm512_sub_epi8(low, offset));
                        put(256 * (g + 2) + 64 * (c % 4), _mm512_sub_epi8(high, offset));
                    }
                }
            }
            other => unreachable!("{other:?} has no tiles"),
        }
    }
}

/// Tile products (16 × 16 i32 each, one 64-byte row per token), in a row.
#[repr(C, align(64))]
struct Products([[i32; 16]; 16 * 16]);

/// Q4_0, Q8_0: per block one tile product, then per token `fma(d_w × d_x, dot, total)`.
///
/// # Safety
/// As in [`group_product`]: tiles configured for depth 32, bounds checked, `unpack` done, `c`
/// the products' buffer.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c,fma")]
unsafe fn block_tile(
    group: Group<'_>,
    acts: &TileActs<'_>,
    weights: &[i8],
    c: *mut i32,
    t0: usize,
    out: &mut [[f32; ROWS]; TOKENS],
) {
    let blocks = group.blocks;
    let (a, w) = (acts.tile(t0), weights.as_ptr());
    let mut total = [_mm512_setzero_ps(); TOKENS];
    // SAFETY: block b's activations (its 512-byte A tile), weights (512 bytes)
    // and scales lie inside their buffers (the caller's bounds); `c` holds two tiles.
    unsafe {
        tile_products(a, w, 32, 0, 1, c);
        for b in 0..blocks {
            // The next block's product runs while this one's is scaled.
            if b + 1 < blocks {
                tile_products(a, w, 32, b + 1, 1, c.add(256 * ((b + 1) % 2)));
            }
            let dw = _mm512_cvtph_ps(_mm256_loadu_si256(
                group.bytes.as_ptr().add(scales_at(group.format, b)).cast(),
            ));
            let rows = c.add(256 * (b % 2));
            for (m, total) in total.iter_mut().enumerate() {
                let dot = _mm512_cvtepi32_ps(_mm512_load_si512(rows.add(16 * m).cast()));
                let dx = *acts.scale.get_unchecked(acts.token(t0, m) * blocks + b);
                *total = _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_set1_ps(dx)), dot, *total);
            }
        }
        store(total, out);
    }
}

/// Q4_K and Q5_K (`FIVE`): per super-block eight tile products (values − 8, or − 16), then
/// per token the sub-block dots times their scales (Q4_K: `dpwssd` of each dot's low 16 bits,
/// which hold it whole, against the scale; Q5_K's dots need 17 bits: `mullo`), + 8 (16) ×
/// scale × activation sum, the mins against the activation sums; two multiply-adds.
///
/// # Safety
/// As in [`group_product`]: tiles configured for depth 32, bounds checked, `unpack` done, `c`
/// the products' buffer.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
unsafe fn q4_q5_k_tile<const FIVE: bool>(
    group: Group<'_>,
    acts: &TileActs<'_>,
    weights: &[i8],
    c: *mut i32,
    t0: usize,
    out: &mut [[f32; ROWS]; TOKENS],
) {
    let supers = group.blocks;
    let stride = if FIVE { q5_k::BYTES } else { q4_k::BYTES };
    let (a, w) = (acts.tile(t0), weights.as_ptr());
    let low16 = _mm512_set1_epi32(0xffff);
    let mut total = [_mm512_setzero_ps(); TOKENS];
    // SAFETY: super-block b's activations, weights, scales and sums lie inside their buffers
    // (the caller's bounds); `c` holds sixteen tiles.
    unsafe {
        // Super-block b's eight products go to half b % 2 of the buffer, issued before
        // super-block b − 1's are scaled, so the tiles and the vector units overlap.
        let products = |b: usize| tile_products(a, w, 32, 8 * b, 8, c.add(2048 * (b % 2)));
        products(0);
        for b in 0..supers {
            if b + 1 < supers {
                products(b + 1);
            }
            let c = c.add(2048 * (b % 2));
            let sb = group.bytes.as_ptr().add(b * stride);
            let mut scale = [_mm512_setzero_si512(); 8];
            let mut scale_offset = [_mm512_setzero_si512(); 4];
            let mut mins = [_mm512_setzero_si512(); 4];
            for p in 0..4 {
                let pair =
                    _mm512_cvtepu8_epi16(_mm256_loadu_si256(sb.add(q4_k::SCALES + 32 * p).cast()));
                scale[2 * p] = _mm512_and_si512(pair, low16);
                scale[2 * p + 1] = _mm512_srli_epi32(pair, 16);
                scale_offset[p] = if FIVE {
                    _mm512_slli_epi16(pair, 4)
                } else {
                    _mm512_slli_epi16(pair, 3)
                };
                mins[p] =
                    _mm512_cvtepu8_epi16(_mm256_loadu_si256(sb.add(q4_k::MINS + 32 * p).cast()));
            }
            let d = _mm512_cvtph_ps(_mm256_loadu_si256(sb.add(q4_k::D).cast()));
            let dmin = _mm512_cvtph_ps(_mm256_loadu_si256(sb.add(q4_k::DMIN).cast()));
            for (m, total) in total.iter_mut().enumerate() {
                let token = acts.token(t0, m);
                let mut isum = _mm512_setzero_si512();
                for (s, scale) in scale.iter().enumerate() {
                    let dot = _mm512_load_si512(c.add(256 * s + 16 * m).cast());
                    isum = if FIVE {
                        _mm512_add_epi32(isum, _mm512_mullo_epi32(dot, *scale))
                    } else {
                        _mm512_dpwssd_epi32(isum, dot, *scale)
                    };
                }
                let sums = acts
                    .sums32
                    .as_ptr()
                    .add((token * supers + b) * 8)
                    .cast::<i32>();
                let mut msum = _mm512_setzero_si512();
                for p in 0..4 {
                    let pair = _mm512_set1_epi32(sums.add(p).read_unaligned());
                    isum = _mm512_dpwssd_epi32(isum, scale_offset[p], pair);
                    msum = _mm512_dpwssd_epi32(msum, mins[p], pair);
                }
                let dx = _mm512_set1_ps(*acts.scale.get_unchecked(token * supers + b));
                *total = _mm512_fmadd_ps(_mm512_mul_ps(d, dx), _mm512_cvtepi32_ps(isum), *total);
                *total =
                    _mm512_fnmadd_ps(_mm512_mul_ps(dmin, dx), _mm512_cvtepi32_ps(msum), *total);
            }
        }
        store(total, out);
    }
}

/// Q6_K: per super-block sixteen tile products of 16 values (values − 32), then per token each
/// group's dot times its int8 scale (`mullo`), summed; one multiply-add.
///
/// # Safety
/// As in [`group_product`]: tiles configured for depth 16, bounds checked, `unpack` done, `c`
/// the products' buffer.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c,fma")]
unsafe fn q6_k_tile(
    group: Group<'_>,
    acts: &TileActs<'_>,
    weights: &[i8],
    c: *mut i32,
    t0: usize,
    out: &mut [[f32; ROWS]; TOKENS],
) {
    let supers = group.blocks;
    let (a, w) = (acts.tile(t0), weights.as_ptr());
    let mut total = [_mm512_setzero_ps(); TOKENS];
    // SAFETY: super-block b's activations, weights and scales lie inside their buffers (the
    // caller's bounds); `c` holds sixteen tiles.
    unsafe {
        for b in 0..supers {
            tile_products(a, w, 16, 16 * b, 16, c);
            let sb = group.bytes.as_ptr().add(b * q6_k::BYTES);
            let mut scale = [_mm512_setzero_si512(); 16];
            for q in 0..8 {
                let pair =
                    _mm512_cvtepi8_epi16(_mm256_loadu_si256(sb.add(q6_k::SCALES + 32 * q).cast()));
                scale[2 * q] = _mm512_srai_epi32(_mm512_slli_epi32(pair, 16), 16);
                scale[2 * q + 1] = _mm512_srai_epi32(pair, 16);
            }
            let d = _mm512_cvtph_ps(_mm256_loadu_si256(sb.add(q6_k::D).cast()));
            for (m, total) in total.iter_mut().enumerate() {
                let token = acts.token(t0, m);
                let mut isum = _mm512_setzero_si512();
                for (g, scale) in scale.iter().enumerate() {
                    let dot = _mm512_load_si512(c.add(256 * g + 16 * m).cast());
                    isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(dot, *scale));
                }
                let dx = _mm512_set1_ps(*acts.scale.get_unchecked(token * supers + b));
                *total = _mm512_fmadd_ps(_mm512_mul_ps(d, dx), _mm512_cvtepi32_ps(isum), *total);
            }
        }
        store(total, out);
    }
}
