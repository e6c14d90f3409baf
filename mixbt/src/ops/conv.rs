//! 2-d convolution (no bias, NCHW, f32) as candle custom ops for the CPU: forward, input gradient
//! and weight gradient.
//!
//! Each is an im2col / col2im (implicit where the shapes allow: read while packing) plus one matrix product per *chunk* of images: the im2col columns of
//! several images sit side by side, so the products stay wide (≥ 512 columns) even for the 4×4
//! maps of the last stage. Chunks are spread over the rayon threads (a whole number per thread),
//! each with its own scratch buffers (and, for the weight gradient, its own accumulator); when
//! there are fewer chunks than threads the products are split by rows instead. Products use
//! [`super::gemm`] (6×16 AVX2 or 12×32 AVX-512 micro-kernels); the kernel is packed once per call
//! (once per training step in a [`with_weight_cache`] scope) and shared by every chunk, and
//! scratch matrices get a padded row stride to avoid cache-set aliasing. Most shapes never
//! build an im2col matrix: the forward pass reads it from laid-out copies of the images
//! ([`super::gemm::DirectB`]), the weight gradient of 3×3 kernels from padded images
//! ([`super::gemm::DirectA`]).
//!
//! candle's own CPU conv computes the input gradient with a direct `conv_transpose2d` loop, ~10×
//! slower than its forward; here all three passes cost about the same.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

pub use super::geom::ConvGeom;
use super::geom::{images_per_chunk, with_scratch};
use super::Precision;

/// Columns of the im2col matrix targeted per product.
const TARGET_COLS: usize = 512;

/// Leading dimension of a scratch matrix with `ld` columns: padded by one cache line when the row
/// length is a multiple of 256 bytes, so that consecutive rows do not map to the same cache sets
/// (packing a 16-column panel reads one line from each of hundreds of rows).
fn padded(ld: usize) -> usize {
    if ld.is_multiple_of(64) {
        ld + 16
    } else {
        ld
    }
}

/// How a batch is cut into chunks and spread over threads.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// Images per chunk.
    nc: usize,
    chunks: usize,
    /// Chunks run in parallel (else one after the other, products split by rows).
    par_chunks: bool,
    threads: usize,
}

fn plan(g: &ConvGeom) -> Plan {
    let threads = rayon::current_num_threads().max(1);
    let nc = images_per_chunk(g.n, TARGET_COLS.div_ceil(g.hwo()), threads);
    let chunks = g.n.div_ceil(nc);
    Plan { nc, chunks, par_chunks: chunks >= threads, threads }
}

/// What a packed kernel is packed for: the forward pass (`W [O, C·k·k]`) or the input gradient
/// (`W'`, flipped and transposed: `[C, O·k·k]`).
type PackKey = (candle_core::TensorId, bool);

/// A kernel packed for the products of one pass: one matrix, or the 16 of a Winograd
/// convolution ([`super::winograd`]).
type Packs = std::sync::Arc<[super::gemm::PackedA]>;

thread_local! {
    /// The kernels packed in the current [`with_weight_cache`] scope of this thread (the key's
    /// last field: the Winograd form).
    static PACKED: std::cell::RefCell<Option<std::collections::HashMap<(candle_core::TensorId, bool, bool), Packs>>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` with the convolutions' packed kernels kept for the whole of `f`: each kernel tensor
/// is packed once for its forward passes and once for its input gradients, however often `f`
/// uses it (a Mixed BT step applies every kernel to three batches, forward and backward).
/// The kernels must not change in place while `f` runs; the trainer wraps each step's forward
/// and backward passes, and updates the weights after. Nested scopes share the outer cache.
pub fn with_weight_cache<R>(f: impl FnOnce() -> R) -> R {
    struct Clear(bool);
    impl Drop for Clear {
        fn drop(&mut self) {
            if self.0 {
                PACKED.with(|c| c.borrow_mut().take());
            }
        }
    }
    let _clear = Clear(PACKED.with(|c| {
        let mut c = c.borrow_mut();
        let outer = c.is_none();
        if outer {
            *c = Some(Default::default());
        }
        outer
    }));
    f()
}

/// How many packed kernels this thread's open [`with_weight_cache`] scope holds (0 outside one).
pub fn cached_kernels() -> usize {
    PACKED.with(|c| c.borrow().as_ref().map_or(0, |m| m.len()))
}

/// The cache key of kernel `w` for its forward pass (`flipped`: its input gradient), when a
/// [`with_weight_cache`] scope is open on this thread.
fn pack_key(w: &Tensor, flipped: bool) -> Option<PackKey> {
    PACKED.with(|c| c.borrow().is_some()).then(|| (w.id(), flipped))
}

/// The packed kernel for `key` from the scope's cache, or `make()` (cached when a scope is open).
fn cached_pack(key: Option<PackKey>, make: impl FnOnce() -> super::gemm::PackedA) -> Packs {
    cached_packs(key, false, || vec![make()])
}

/// The packed kernel for `key` (in its Winograd form when `winograd`) from the scope's cache,
/// or `make()` (cached when a scope is open).
fn cached_packs(key: Option<PackKey>, winograd: bool, make: impl FnOnce() -> Vec<super::gemm::PackedA>) -> Packs {
    let Some((id, flipped)) = key else { return make().into() };
    let key = (id, flipped, winograd);
    if let Some(p) = PACKED.with(|c| c.borrow().as_ref().and_then(|m| m.get(&key).cloned())) {
        return p;
    }
    let p: Packs = make().into();
    PACKED.with(|c| {
        if let Some(m) = c.borrow_mut().as_mut() {
            m.insert(key, p.clone());
        }
    });
    p
}

use super::SendPtr;

/// Runs `f(first row, rows)` over the blocks of rows a product is split into: one block (on
/// this thread) unless `split > 1` and C has enough rows, else `split` blocks in parallel, each a
/// multiple of the GEMM's packed block height.
fn row_blocks(m: usize, split: usize, f: impl Fn(usize, usize) + Sync + Send) {
    let per = if split <= 1 || m < 2 * 16 { m } else { super::gemm::row_split(m, split) };
    if per >= m {
        f(0, m);
    } else {
        (0..m.div_ceil(per)).into_par_iter().for_each(|t| f(t * per, per.min(m - t * per)));
    }
}

/// `C[m×n] (= | +=) A[m×k] · B[k×n]`, strides in elements; `C` row-major with row stride `ldc`.
/// With `split`, the rows of `C` are divided among the rayon threads.
#[allow(clippy::too_many_arguments)]
fn sgemm(m: usize, k: usize, n: usize, a: *const f32, rsa: isize, csa: isize, b: BSrc, c: *mut f32, ldc: usize, accumulate: bool, split: usize, prec: Precision) {
    let (ap, cp) = (SendPtr(a as *mut f32), SendPtr(c));
    row_blocks(m, split, |r0, rows| {
        let (ap, b, cp) = (ap, b, cp);
        // SAFETY: callers pass buffers covering every addressed element; each block writes its
        // own rows of C.
        unsafe { super::gemm::sgemm_src(rows, k, n, ap.0.offset(r0 as isize * rsa), rsa, csa, b.0, cp.0.add(r0 * ldc), ldc, accumulate, prec) };
    });
}

/// A B operand that may cross threads (read only).
#[derive(Clone, Copy)]
struct BSrc(super::gemm::BSource);
unsafe impl Send for BSrc {}
unsafe impl Sync for BSrc {}

impl BSrc {
    fn raw(b: *const f32, rsb: isize, csb: isize) -> Self {
        Self(super::gemm::BSource::Raw { b, rsb, csb })
    }
    /// The convolution's im2col matrix of the images from `x` on, read while packing.
    fn conv(g: &ConvGeom, x: *const f32) -> super::gemm::ConvB {
        super::gemm::ConvB { x, c: g.c, h: g.h, w: g.w, k: g.k, pad: g.pad, ho: g.ho, wo: g.wo }
    }
}

/// `C[m×n] = A·B[k×n]` with a pre-packed `A` (m×k), C row-major with stride `ldc`; with
/// `split`, the rows of C are divided among the rayon threads.
fn sgemm_pa(pa: &super::gemm::PackedA, n: usize, b: BSrc, c: *mut f32, ldc: usize, split: usize, prec: Precision) {
    let cp = SendPtr(c);
    row_blocks(pa.rows(), split, |r0, rows| {
        let (b, cp) = (b, cp);
        // SAFETY: callers pass buffers covering every addressed element; each block writes its
        // own rows of C.
        unsafe { super::gemm::sgemm_packed(pa, r0, rows, n, b.0, cp.0.add(r0 * ldc), ldc, false, prec) };
    });
}

super::simd_fn! {
/// im2col of one image `x` [C, H, W] into columns `off..off + Ho·Wo` of `col`
/// ([C·k·k, ld], row-major).
///
/// # Safety
/// `col` must cover `C·k·k` rows of `ld` elements; concurrent callers must use disjoint columns.
unsafe fn im2col(g: &ConvGeom, x: &[f32], col: SendPtr, ld: usize, off: usize) {
    let (k, s, p) = (g.k, g.stride, g.pad as isize);
    for c in 0..g.c {
        let xc = &x[c * g.hw()..(c + 1) * g.hw()];
        for ky in 0..k {
            for kx in 0..k {
                let row = col.0.add(((c * k + ky) * k + kx) * ld + off);
                for oy in 0..g.ho {
                    let dst = std::slice::from_raw_parts_mut(row.add(oy * g.wo), g.wo);
                    let y = (oy * s + ky) as isize - p;
                    if y < 0 || y >= g.h as isize {
                        dst.fill(0.0);
                        continue;
                    }
                    let src = &xc[y as usize * g.w..(y as usize + 1) * g.w];
                    if s == 1 {
                        // x index = ox + kx − p: a shifted copy with zeros at the borders.
                        let sh = kx as isize - p;
                        let lo = (-sh).max(0) as usize;
                        let hi = ((g.w as isize - sh).min(g.wo as isize)).max(lo as isize) as usize;
                        dst[..lo].fill(0.0);
                        dst[lo..hi].copy_from_slice(&src[(lo as isize + sh) as usize..(hi as isize + sh) as usize]);
                        dst[hi..].fill(0.0);
                    } else {
                        for (ox, d) in dst.iter_mut().enumerate() {
                            let xx = (ox * s + kx) as isize - p;
                            *d = if xx >= 0 && xx < g.w as isize { src[xx as usize] } else { 0.0 };
                        }
                    }
                }
            }
        }
    }
}

}

super::simd_fn! {
/// col2im of one image: `dx` [C, H, W] = scatter-add of columns `off..off + Ho·Wo` of `col`.
fn col2im(g: &ConvGeom, col: &[f32], ld: usize, off: usize, dx: &mut [f32]) {
    let (k, s, p) = (g.k, g.stride, g.pad as isize);
    dx.fill(0.0);
    for c in 0..g.c {
        let hw = g.hw();
        let dxc = &mut dx[c * hw..(c + 1) * hw];
        for ky in 0..k {
            for kx in 0..k {
                let row = &col[((c * k + ky) * k + kx) * ld + off..][..g.hwo()];
                for oy in 0..g.ho {
                    let y = (oy * s + ky) as isize - p;
                    if y < 0 || y >= g.h as isize {
                        continue;
                    }
                    let src = &row[oy * g.wo..(oy + 1) * g.wo];
                    let dst = &mut dxc[y as usize * g.w..(y as usize + 1) * g.w];
                    if s == 1 {
                        let sh = kx as isize - p;
                        let lo = (-sh).max(0) as usize;
                        let hi = ((g.w as isize - sh).min(g.wo as isize)).max(lo as isize) as usize;
                        let d = &mut dst[(lo as isize + sh) as usize..(hi as isize + sh) as usize];
                        for (a, b) in d.iter_mut().zip(&src[lo..hi]) {
                            *a += *b;
                        }
                    } else {
                        for (ox, v) in src.iter().enumerate() {
                            let xx = (ox * s + kx) as isize - p;
                            if xx >= 0 && xx < g.w as isize {
                                dst[xx as usize] += *v;
                            }
                        }
                    }
                }
            }
        }
    }
}

}

/// The im2col matrix `[C·k·k, nc·Ho·Wo]` (row stride `padded(nc·Ho·Wo)`) of images `i0..i0+nc` (in parallel over images when
/// `par`).
fn build_col(g: &ConvGeom, x: &[f32], i0: usize, nc: usize, col: &mut [f32], par: bool) {
    let ld = padded(nc * g.hwo());
    let cp = SendPtr(col.as_mut_ptr());
    let one = |j: usize| {
        let cp = cp;
        let xi = &x[(i0 + j) * g.in_size()..(i0 + j + 1) * g.in_size()];
        // SAFETY: image j owns columns j·HWo..(j+1)·HWo.
        unsafe { im2col(g, xi, cp, ld, j * g.hwo()) };
    };
    if par {
        (0..nc).into_par_iter().for_each(one);
    } else {
        (0..nc).for_each(one);
    }
}

/// `f((j, image j of dst))` for the images of `per` floats in `dst`, in parallel when `par` (the
/// copies of the images the direct reads need).
fn for_images(dst: &mut [f32], per: usize, par: bool, f: impl Fn((usize, &mut [f32])) + Sync + Send) {
    if par {
        dst.par_chunks_mut(per).enumerate().for_each(f);
    } else {
        dst.chunks_mut(per).enumerate().for_each(f);
    }
}

/// Images `i0..i0+nc` of `x`, zero-padded by `pad` on every side, into `dst`
/// (`[nc, C, H + 2·pad, W + 2·pad]`; every element written). In parallel over images when `par`.
fn pad_images(g: &ConvGeom, x: &[f32], i0: usize, nc: usize, dst: &mut [f32], par: bool) {
    let (p, w) = (g.pad, g.w);
    let wp = w + 2 * p;
    let plane = (g.h + 2 * p) * wp;
    let one = |(j, d): (usize, &mut [f32])| {
        let xi = &x[(i0 + j) * g.in_size()..(i0 + j + 1) * g.in_size()];
        for (c, dp) in d.chunks_exact_mut(plane).enumerate() {
            dp[..p * wp].fill(0.0);
            dp[(p + g.h) * wp..].fill(0.0);
            for (y, row) in dp[p * wp..(p + g.h) * wp].chunks_exact_mut(wp).enumerate() {
                row[..p].fill(0.0);
                row[p..p + w].copy_from_slice(&xi[(c * g.h + y) * w..][..w]);
                row[p + w..].fill(0.0);
            }
        }
    };
    for_images(&mut dst[..nc * g.c * plane], g.c * plane, par, one);
}

/// Images `i0..i0+nc` of `x` subsampled by the stride (no padding): `dst[j][c][oy][ox] =
/// x[i0 + j][c][s·oy][s·ox]` (every element written). In parallel over images when `par`.
fn subsample_images(g: &ConvGeom, x: &[f32], i0: usize, nc: usize, dst: &mut [f32], par: bool) {
    let s = g.stride;
    let per = g.c * g.hwo();
    let one = |(j, d): (usize, &mut [f32])| {
        let xi = &x[(i0 + j) * g.in_size()..(i0 + j + 1) * g.in_size()];
        for (q, row) in d.chunks_exact_mut(g.wo).enumerate() {
            let (c, oy) = (q / g.ho, q % g.ho);
            let src = &xi[(c * g.h + s * oy) * g.w..];
            for (ox, v) in row.iter_mut().enumerate() {
                *v = src[s * ox];
            }
        }
    };
    for_images(&mut dst[..nc * per], per, par, one);
}

/// Images `i0..i0+nc` of `x`, zero-padded by `pad` and split into their four stride-2 phases for
/// [`super::gemm::DirectB`]: `dst[j][c][py][px][yq][xq] = x_padded[i0 + j][c][2·yq + py][2·xq + px]`
/// (`⌈(H + 2·pad)/2⌉ × ⌈(W + 2·pad)/2⌉` planes, zero outside the image; every element written).
/// In parallel over images when `par`.
fn phase_images(g: &ConvGeom, x: &[f32], i0: usize, nc: usize, dst: &mut [f32], par: bool) {
    let p = g.pad as isize;
    let (hq, wq) = ((g.h + 2 * g.pad).div_ceil(2), (g.w + 2 * g.pad).div_ceil(2));
    let per = 4 * g.c * hq * wq;
    let one = |(j, d): (usize, &mut [f32])| {
        let xi = &x[(i0 + j) * g.in_size()..(i0 + j + 1) * g.in_size()];
        for (q, plane) in d.chunks_exact_mut(hq * wq).enumerate() {
            let (c, py, px) = (q / 4, (q / 2) % 2, q % 2);
            for (yq, row) in plane.chunks_exact_mut(wq).enumerate() {
                let y = (2 * yq + py) as isize - p;
                if y < 0 || y >= g.h as isize {
                    row.fill(0.0);
                    continue;
                }
                let src = &xi[(c * g.h + y as usize) * g.w..][..g.w];
                for (xq, v) in row.iter_mut().enumerate() {
                    let xx = (2 * xq + px) as isize - p;
                    *v = if xx >= 0 && xx < g.w as isize { src[xx as usize] } else { 0.0 };
                }
            }
        }
    };
    for_images(&mut dst[..nc * per], per, par, one);
}

/// Images `i0..i0+nc` of `x` expanded along kx for [`super::gemm::DirectB`] (maps narrower than
/// 8): `dst[j][kx][c][y][ox] = x_padded[i0 + j][c][y][ox + kx]` for `y < H + 2·pad`, `ox < Wo`
/// (every element written). In parallel over images when `par`.
fn expand_images(g: &ConvGeom, x: &[f32], i0: usize, nc: usize, dst: &mut [f32], par: bool) {
    let (k, p, wo) = (g.k, g.pad as isize, g.wo);
    let hp = g.h + 2 * g.pad;
    let per = k * g.c * hp * wo;
    let one = |(j, d): (usize, &mut [f32])| {
        let xi = &x[(i0 + j) * g.in_size()..(i0 + j + 1) * g.in_size()];
        for (kx, dk) in d.chunks_exact_mut(g.c * hp * wo).enumerate() {
            // Row segment `ox` of copy kx reads input column ox + kx − pad: columns lo..hi are
            // inside the image.
            let sh = kx as isize - p;
            let lo = (-sh).clamp(0, wo as isize) as usize;
            let hi = (g.w as isize - sh).clamp(lo as isize, wo as isize) as usize;
            for (c, dc) in dk.chunks_exact_mut(hp * wo).enumerate() {
                for (y, row) in dc.chunks_exact_mut(wo).enumerate() {
                    let yi = y as isize - p;
                    if yi < 0 || yi >= g.h as isize {
                        row.fill(0.0);
                        continue;
                    }
                    let src = &xi[(c * g.h + yi as usize) * g.w..][..g.w];
                    row[..lo].fill(0.0);
                    row[lo..hi].copy_from_slice(&src[(lo as isize + sh) as usize..(hi as isize + sh) as usize]);
                    row[hi..].fill(0.0);
                }
            }
        }
    };
    for_images(&mut dst[..nc * per], per, par, one);
}

/// NCHW images `i0..i0+nc` → `[O, nc·HWo]` (column blocks per image, row stride `padded(nc·HWo)`).
fn gather_images(src: &[f32], per_image: usize, rows: usize, i0: usize, nc: usize, dst: &mut [f32]) {
    let cols = per_image / rows;
    let ld = padded(nc * cols);
    for j in 0..nc {
        for r in 0..rows {
            dst[r * ld + j * cols..][..cols].copy_from_slice(&src[(i0 + j) * per_image + r * cols..][..cols]);
        }
    }
}

/// `[O, nc·HWo]` (column blocks per image) → NCHW images at `dst` (every element written).
///
/// # Safety
/// `dst` must be valid for `nc · per_image` writes.
unsafe fn scatter_images(src: &[f32], per_image: usize, rows: usize, nc: usize, dst: *mut f32) {
    let cols = per_image / rows;
    for j in 0..nc {
        for r in 0..rows {
            std::ptr::copy_nonoverlapping(src[r * nc * cols + j * cols..][..cols].as_ptr(), dst.add(j * per_image + r * cols), cols);
        }
    }
}


/// A new output of `n` images of `per_image` floats, filled by `f(chunk index, the chunk's images)`
/// over the chunks, in parallel when the plan says so.
fn for_chunks(p: &Plan, n: usize, per_image: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) -> Vec<f32> {
    super::par_new(n * per_image, p.nc * per_image, p.par_chunks, f)
}

/// `Y = conv(x, W)` (NCHW) with `W` pre-packed as `[O, C·k·k]`. Convolutions whose outputs tile
/// 16-column panels read the im2col matrix unpacked, by the micro-kernel itself, from a copy of
/// the chunk's images ([`super::gemm::DirectB`]): zero-padded (stride 1, maps 8 wide or more),
/// expanded along kx (stride 1, narrower maps), split into stride-2 phases, or subsampled
/// (strided 1×1 without padding); other stride-1 ones read it from `x` while packing
/// ([`super::gemm::ConvB`]); the rest build it in scratch memory first.
fn forward(g: &ConvGeom, x: &[f32], pw: &super::gemm::PackedA, prec: Precision) -> Vec<f32> {
    let p = plan(g);
    let split = if p.par_chunks { 1 } else { p.threads };
    // A strided 1×1 convolution without padding is a 1×1 convolution of the subsampled images.
    let sub = g.k == 1 && g.pad == 0 && g.stride > 1 && super::gemm::DirectB::applies(g.ho, g.wo, 1);
    let direct = sub || super::gemm::DirectB::applies(g.ho, g.wo, g.stride);
    let implicit = !direct && g.stride == 1 && super::gemm::ConvB::applies(g.ho, g.wo);
    let (hp, wp) = if sub { (g.ho, g.wo) } else { (g.h + 2 * g.pad, g.w + 2 * g.pad) };
    let db = super::gemm::DirectB { x: std::ptr::null(), c: g.c, hp, wp, k: g.k, ho: g.ho, wo: g.wo, stride: if sub { 1 } else { g.stride } };
    // Every output element is written by the product (or the scatter after it): no zeroing.
    super::par_new_written(g.n * g.out_size(), p.nc * g.out_size(), p.par_chunks, |ci, yc, len| {
        let i0 = ci * p.nc;
        let nc = len / g.out_size();
        let ld = nc * g.hwo();
        let lc = padded(ld);
        let tmp_len = if nc == 1 { 0 } else { g.o * ld };
        let col_len = if direct {
            nc * db.image_len()
        } else if implicit {
            0
        } else {
            g.ckk() * lc
        };
        with_scratch(col_len, tmp_len, |col, tmp| {
            let b = if direct {
                let _pc = super::profile::scope("conv.fwd.pad");
                if sub {
                    subsample_images(g, x, i0, nc, col, !p.par_chunks);
                } else if g.stride == 2 {
                    phase_images(g, x, i0, nc, col, !p.par_chunks);
                } else if db.expanded() {
                    expand_images(g, x, i0, nc, col, !p.par_chunks);
                } else {
                    pad_images(g, x, i0, nc, col, !p.par_chunks);
                }
                BSrc(super::gemm::BSource::Direct(super::gemm::DirectB { x: col.as_ptr(), ..db }))
            } else if implicit {
                BSrc(super::gemm::BSource::Conv(BSrc::conv(g, x[i0 * g.in_size()..].as_ptr())))
            } else {
                let _pc = super::profile::scope("conv.fwd.im2col");
                build_col(g, x, i0, nc, col, !p.par_chunks);
                BSrc::raw(col.as_ptr(), lc as isize, 1)
            };
            let _pg = super::profile::scope("conv.fwd.gemm");
            let out = if nc == 1 { yc } else { tmp.as_mut_ptr() };
            // Y [O, ld] = W [O, CKK] · col [CKK, ld] (written, not accumulated)
            sgemm_pa(pw, ld, b, out, ld, split, prec);
            if nc > 1 {
                // SAFETY: `yc` holds the chunk's `nc` output images.
                unsafe { scatter_images(tmp, g.out_size(), g.o, nc, yc) };
            }
        });
    })
}

/// Forward convolution (its backward passes multiply at the same precision).
pub struct Conv2dOp {
    pub stride: usize,
    pub pad: usize,
    pub prec: Precision,
    /// The kernel's key in the [`with_weight_cache`] scope, if one is open.
    pub key: Option<(candle_core::TensorId, bool)>,
    /// Whether the forward pass and input gradient may run as Winograd F(2×2, 3×3) where the
    /// shape allows ([`super::winograd`]; [`conv2d`] takes [`super::winograd::enabled`]).
    pub winograd: bool,
}

/// Input gradient: `(dy, w) → dx`.
struct ConvBwdInput {
    g: ConvGeom,
    prec: Precision,
    key: Option<PackKey>,
    winograd: bool,
}

/// Weight gradient: `(x, dy) → dw`.
struct ConvBwdWeight {
    g: ConvGeom,
    prec: Precision,
}

impl CustomOp2 for Conv2dOp {
    fn name(&self) -> &'static str {
        "mixbt-conv2d"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, ws: &CpuStorage, wl: &Layout) -> Result<(CpuStorage, Shape)> {
        let _p = super::profile::scope("conv.forward");
        let g = ConvGeom::new(xl.dims(), wl.dims(), self.stride, self.pad)?;
        let _pl = super::profile::scope_with(|| format!("conv.forward {}", g.label()));
        let x = super::f32_slice(xs, xl, "conv2d input")?;
        let w = super::f32_slice(ws, wl, "conv2d kernel")?;
        if self.winograd && super::winograd::fits(&g) {
            let u = cached_packs(self.key, true, || super::winograd::kernel(g.o, g.c, |o, c| w[(o * g.c + c) * 9..][..9].try_into().unwrap()));
            let y = super::winograd::forward(&g, x, &u, self.prec);
            return Ok((CpuStorage::F32(y), Shape::from((g.n, g.o, g.ho, g.wo))));
        }
        // W [O, CKK], packed once for every chunk (and, in a weight-cache scope, every call).
        // SAFETY: `w` holds O·CKK elements.
        let pw = cached_pack(self.key, || unsafe { super::gemm::PackedA::new(g.o, g.ckk(), w.as_ptr(), g.ckk() as isize, 1) });
        let y = forward(&g, x, &pw[0], self.prec);
        Ok((CpuStorage::F32(y), Shape::from((g.n, g.o, g.ho, g.wo))))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = ConvGeom::new(x.dims(), w.dims(), self.stride, self.pad)?;
        let dy = dy.contiguous()?;
        // Only the gradients autograd will use (not the images' at the first layer, nor a
        // frozen kernel's).
        let prec = self.prec;
        let key = self.key.and_then(|_| pack_key(w, true));
        let dx = if x.track_op() { Some(dy.apply_op2_no_bwd(w, &ConvBwdInput { g, prec, key, winograd: self.winograd })?) } else { None };
        let dw = if w.track_op() { Some(x.apply_op2_no_bwd(&dy, &ConvBwdWeight { g, prec })?) } else { None };
        Ok((dx, dw))
    }
}

impl CustomOp2 for ConvBwdInput {
    fn name(&self) -> &'static str {
        "mixbt-conv2d-bwd-input"
    }
    fn cpu_fwd(&self, ds: &CpuStorage, dl: &Layout, ws: &CpuStorage, wl: &Layout) -> Result<(CpuStorage, Shape)> {
        let _p = super::profile::scope("conv.backward-input");
        let g = self.g;
        let _pl = super::profile::scope_with(|| format!("conv.backward-input {}", g.label()));
        let dy = super::f32_slice(ds, dl, "conv2d grad")?;
        let w = super::f32_slice(ws, wl, "conv2d kernel")?;
        // dx = conv(dy, W') with W'[c, o, ky, kx] = W[o, c, k−1−ky, k−1−kx] and padding
        // k−1−pad (stride 1): a forward convolution, so no col2im.
        let k = g.k;
        let gt = ConvGeom { n: g.n, c: g.o, h: g.ho, w: g.wo, o: g.c, k, stride: 1, pad: (k - 1).saturating_sub(g.pad), ho: g.h, wo: g.w };
        if self.winograd && g.stride == 1 && g.pad < g.k && super::winograd::fits(&gt) {
            // W'[c, o] = W[o, c] rotated by 180°.
            let taps = |c: usize, o: usize| -> [f32; 9] { std::array::from_fn(|t| w[(o * g.c + c) * 9 + 8 - t]) };
            let u = cached_packs(self.key, true, || super::winograd::kernel(g.c, g.o, taps));
            let dx = super::winograd::forward(&gt, dy, &u, self.prec);
            return Ok((CpuStorage::F32(dx), Shape::from((g.n, g.c, g.h, g.w))));
        }
        if g.stride == 1 && g.pad < g.k && g.c >= 16 && super::gemm::ConvB::applies(g.h, g.w) {
            let kk = k * k;
            // W' as [C, O·k·k], packed straight from W: W'[c, (o, t)] = W[o, c, k·k−1−t].
            let at = |c: usize, o: usize, t: usize| (o * g.c + c) * kk + kk - 1 - t;
            let panel = |c0: usize, q0: usize, kc: usize, d: &mut [f32]| {
                let (mut o, mut t) = (q0 / kk, q0 % kk);
                for dp in d[..kc * 6].chunks_exact_mut(6) {
                    let src = &w[at(c0, o, t)..][..5 * kk + 1];
                    for (r, v) in dp.iter_mut().enumerate() {
                        *v = src[r * kk];
                    }
                    t += 1;
                    if t == kk {
                        (o, t) = (o + 1, 0);
                    }
                }
            };
            let pw = cached_pack(self.key, || super::gemm::PackedA::from_panels(g.c, g.o * kk, panel, |c, q| w[at(c, q / kk, q % kk)]));
            let dx = forward(&gt, dy, &pw[0], self.prec);
            return Ok((CpuStorage::F32(dx), Shape::from((g.n, g.c, g.h, g.w))));
        }
        let p = plan(&g);
        let split = if p.par_chunks { 1 } else { p.threads };
        // Wᵀ [CKK, O], packed once for every chunk.
        // SAFETY: `w` holds O·CKK elements.
        let pwt = unsafe { super::gemm::PackedA::new(g.ckk(), g.o, w.as_ptr(), 1, g.ckk() as isize) };
        let dx = for_chunks(&p, g.n, g.in_size(), |ci, dxc| {
            let i0 = ci * p.nc;
            let nc = dxc.len() / g.in_size();
            let lc = padded(nc * g.hwo());
            with_scratch(g.ckk() * lc, g.o * lc, |dcol, tmp| {
                // dY of the chunk as [O, ld] (row stride lc).
                gather_images(dy, g.out_size(), g.o, i0, nc, tmp);
                // dcol [CKK, ld] = Wᵀ [CKK, O] · dY [O, ld]
                let _pg = super::profile::scope("conv.bwd-in.gemm");
                sgemm_pa(&pwt, nc * g.hwo(), BSrc::raw(tmp.as_ptr(), lc as isize, 1), dcol.as_mut_ptr(), lc, split, self.prec);
                drop(_pg);
                let _pc = super::profile::scope("conv.bwd-in.col2im");
                let per = g.in_size();
                let dcol: &[f32] = dcol;
                if p.par_chunks {
                    for (j, dxi) in dxc.chunks_mut(per).enumerate() {
                        col2im(&g, dcol, lc, j * g.hwo(), dxi);
                    }
                } else {
                    dxc.par_chunks_mut(per).enumerate().for_each(|(j, dxi)| col2im(&g, dcol, lc, j * g.hwo(), dxi));
                }
            });
        });
        Ok((CpuStorage::F32(dx), Shape::from((g.n, g.c, g.h, g.w))))
    }
}

impl CustomOp2 for ConvBwdWeight {
    fn name(&self) -> &'static str {
        "mixbt-conv2d-bwd-weight"
    }
    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, ds: &CpuStorage, dl: &Layout) -> Result<(CpuStorage, Shape)> {
        let _p = super::profile::scope("conv.backward-weight");
        let g = self.g;
        let _pl = super::profile::scope_with(|| format!("conv.backward-weight {}", g.label()));
        let x = super::f32_slice(xs, xl, "conv2d input")?;
        let dy = super::f32_slice(ds, dl, "conv2d grad")?;
        let p = plan(&g);
        let wsize = g.o * g.ckk();
        // Chunks in parallel, one accumulator per thread, unless those would be large (a
        // megabyte or more: the last two stages): then the rows of dW are split among the threads
        // and every thread sees every chunk (`mixbt bench conv --batch 32`, 2-core Zen 5: the
        // last stage's 3×3 weight gradients 11.2–11.4 ms per call before, 8.8–9.8 after).
        let par = p.par_chunks && wsize < 1 << 18;
        // In place at FP32, and at BF16 where it is emulated (on `vdpbf16ps` it packs im2col).
        let in_place = self.prec == Precision::F32 || super::gemm::bf16_path() == super::gemm::Bf16Path::Emulated;
        if in_place && g.k == 3 && super::gemm::direct_a_applies() {
            if let Some(dw) = backward_weight_direct(&g, x, dy, &p, par, self.prec) {
                return Ok((CpuStorage::F32(dw), Shape::from((g.o, g.c, g.k, g.k))));
            }
        }
        // Stride-1 convolutions read colᵀ straight from the images while packing.
        let implicit = g.stride == 1 && super::gemm::ConvB::applies_t(g.ho, g.wo);
        // One chunk's contribution, accumulated into `acc` [O, CKK].
        let chunk = |ci: usize, acc: &mut [f32], first: bool, split: usize| {
            let i0 = ci * p.nc;
            let nc = p.nc.min(g.n - i0);
            let lc = padded(nc * g.hwo());
            with_scratch(if implicit { 0 } else { g.ckk() * lc }, g.o * lc, |col, tmp| {
                let pc = super::profile::scope("conv.bwd-w.im2col");
                let b = if implicit {
                    BSrc(super::gemm::BSource::ConvT(BSrc::conv(&g, x[i0 * g.in_size()..].as_ptr())))
                } else {
                    build_col(&g, x, i0, nc, col, split > 1);
                    BSrc::raw(col.as_ptr(), 1, lc as isize)
                };
                gather_images(dy, g.out_size(), g.o, i0, nc, tmp);
                drop(pc);
                let _pg = super::profile::scope("conv.bwd-w.gemm");
                // dW [O, CKK] (+)= dY [O, ld] · colᵀ [ld, CKK]
                sgemm(g.o, nc * g.hwo(), g.ckk(), tmp.as_ptr(), lc as isize, 1, b, acc.as_mut_ptr(), g.ckk(), !first, split, self.prec);
            });
        };
        let dw = if par {
            sum_partials(per_thread_partials(&p, wsize, |chunks, acc| chunks.enumerate().for_each(|(k, ci)| chunk(ci, acc, k == 0, 1))), wsize)
        } else {
            let mut acc = vec![0f32; wsize];
            for ci in 0..p.chunks {
                chunk(ci, &mut acc, ci == 0, p.threads);
            }
            acc
        };
        Ok((CpuStorage::F32(dw), Shape::from((g.o, g.c, g.k, g.k))))
    }
}

/// The chunks of plan `p` spread over the threads, a whole number each: thread `t` sums its
/// chunks, in order, into its own `wsize` floats (`f(chunks, acc)`); the partial sums in thread
/// order.
fn per_thread_partials(p: &Plan, wsize: usize, f: impl Fn(std::ops::Range<usize>, &mut [f32]) + Sync + Send) -> Vec<Vec<f32>> {
    let per_thread = p.chunks.div_ceil(p.threads);
    (0..p.chunks.div_ceil(per_thread))
        .into_par_iter()
        .map(|t| {
            let mut acc = vec![0f32; wsize];
            f(t * per_thread..((t + 1) * per_thread).min(p.chunks), &mut acc);
            acc
        })
        .collect()
}

/// The weight gradient of a 3×3 convolution on the AVX-512 kernel, with the im2col matrix read
/// in place ([`super::gemm::DirectA`]) from zero-padded copies of the images:
/// `dWᵀ [CKK, O] = col [CKK, ld] · dYᵀ [ld, O]`, stored straight into `dW [O, CKK]`. The same sums
/// in the same order as the packed path (`par`: the same per-thread partial sums), so the two
/// agree bit for bit. At BF16 (the emulated path only) the padded copies are rounded and the
/// product takes each pair of depths odd first, as the emulation does on a packed im2col matrix:
/// again the same numbers, and `vdpbf16ps`'s. `None` when the offsets would overflow 32 bits,
/// or at BF16 without padding (no copy to round).
fn backward_weight_direct(g: &ConvGeom, x: &[f32], dy: &[f32], p: &Plan, par: bool, prec: Precision) -> Option<Vec<f32>> {
    let (k, s) = (g.k, g.stride);
    let bf16 = prec == Precision::Bf16;
    if bf16 && g.pad == 0 {
        // The images are read in place, not copied: nowhere to round them.
        return None;
    }
    let (hp, wp) = (g.h + 2 * g.pad, g.w + 2 * g.pad);
    let (plane, kk, hwo) = (hp * wp, k * k, g.hwo());
    if g.n * g.c * plane >= u32::MAX as usize {
        return None;
    }
    // Offsets of each tap (c, ky, kx) and of each output position of a chunk in its padded images.
    let taps: Vec<u32> = (0..g.ckk()).map(|j| ((j / kk) * plane + (j % kk / k) * wp + j % k) as u32).collect();
    let cols: Vec<u32> = (0..g.n * hwo).map(|q| ((q / hwo) * g.c * plane + (q % hwo / g.wo) * s * wp + (q % g.wo) * s) as u32).collect();
    let (ckk, o) = (g.ckk(), g.o);
    // Chunks `cs` (contiguous images) into `acc` [O, CKK], in one product whose depth segments
    // are the chunks; its rows (taps) split among the threads when `split > 1`.
    let chunks = |cs: std::ops::Range<usize>, acc: &mut [f32], split: usize| {
        if cs.is_empty() {
            return;
        }
        let i0 = cs.start * p.nc;
        let nimg = (cs.end * p.nc).min(g.n) - i0;
        let lc = padded(nimg * hwo);
        let pad_len = if g.pad > 0 { nimg * g.c * plane } else { 0 };
        with_scratch(pad_len, o * lc, |xp, tmp| {
            let pc = super::profile::scope("conv.bwd-w.im2col");
            let xb = if g.pad > 0 {
                pad_images(g, x, i0, nimg, xp, split > 1);
                if bf16 {
                    super::gemm::round_bf16_slice(&mut xp[..pad_len]);
                }
                xp.as_ptr()
            } else {
                x[i0 * g.in_size()..].as_ptr()
            };
            gather_images(dy, g.out_size(), o, i0, nimg, tmp);
            drop(pc);
            let _pg = super::profile::scope("conv.bwd-w.gemm");
            let (xb, tp, ap) = (SendPtr(xb as *mut f32), SendPtr(tmp.as_mut_ptr()), SendPtr(acc.as_mut_ptr()));
            let cols = &cols[..nimg * hwo];
            row_blocks(ckk, split, |r0, rows| {
                let (xb, tp, ap) = (xb, tp, ap);
                let a = super::gemm::DirectA { x: xb.0, rows: &taps[r0..r0 + rows], cols };
                // dWᵀ [CKK, O] = col [CKK, ld] · dYᵀ [ld, O], stored as dW [O, CKK].
                // SAFETY: the offsets address the chunks' (padded) images, `tmp` holds dY
                // [O, lc] and each block writes its own taps (columns) of `acc`.
                unsafe { super::gemm::sgemm_direct_a(a, p.nc * hwo, o, tp.0, 1, lc as isize, ap.0.add(r0), 1, ckk as isize, false, prec) };
            });
        });
    };
    let wsize = ckk * o;
    Some(if par {
        sum_partials(per_thread_partials(p, wsize, |cs, acc| chunks(cs, acc, 1)), wsize)
    } else {
        let mut acc = vec![0f32; wsize];
        chunks(0..p.chunks, &mut acc, p.threads);
        acc
    })
}

/// `Σ_t partials[t]`, summed in order (into the first).
fn sum_partials(partials: Vec<Vec<f32>>, wsize: usize) -> Vec<f32> {
    let _pr = super::profile::scope("conv.bwd-w.reduce");
    let mut partials = partials.into_iter();
    let mut dw = partials.next().unwrap_or_else(|| vec![0f32; wsize]);
    for q in partials {
        dw.par_chunks_mut(1 << 14).zip(q.par_chunks(1 << 14)).for_each(|(a, b)| a.iter_mut().zip(b).for_each(|(a, b)| *a += *b));
    }
    dw
}

/// The input gradient `dx` of a convolution with geometry `g` (CPU, f32 tensors, products at the
/// thread's [`super::precision`]; no autograd).
pub fn conv2d_backward_input(dy: &Tensor, w: &Tensor, g: ConvGeom) -> Result<Tensor> {
    dy.contiguous()?.apply_op2_no_bwd(&w.contiguous()?, &ConvBwdInput { g, prec: super::precision(), key: None, winograd: super::winograd::enabled() })
}

/// The weight gradient `dw` of a convolution with geometry `g` (CPU, f32 tensors, products at the
/// thread's [`super::precision`]; no autograd).
pub fn conv2d_backward_weight(x: &Tensor, dy: &Tensor, g: ConvGeom) -> Result<Tensor> {
    x.contiguous()?.apply_op2_no_bwd(&dy.contiguous()?, &ConvBwdWeight { g, prec: super::precision() })
}

/// Convolution with the fast kernels when possible (f32 on the CPU), else candle's; products at
/// the thread's [`super::precision`] (candle's path: BF16 by rounding both operands).
pub fn conv2d(x: &Tensor, w: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    let prec = super::precision();
    if !x.device().is_cpu() || x.dtype() != DType::F32 || w.dtype() != DType::F32 {
        return conv2d_candle(x, w, stride, padding);
    }
    let w = w.contiguous()?;
    let key = pack_key(&w, false);
    x.contiguous()?.apply_op2(&w, Conv2dOp { stride, pad: padding, prec, key, winograd: super::winograd::enabled() })
}

/// candle's own convolution (any device), at the thread's [`super::precision`]: at BF16 both
/// operands are rounded to bfloat16 first (gradients pass through the rounding).
pub fn conv2d_candle(x: &Tensor, w: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    if super::precision() == Precision::Bf16 && x.dtype() == DType::F32 && w.dtype() == DType::F32 {
        let r = |t: &Tensor| t.to_dtype(DType::BF16)?.to_dtype(DType::F32);
        return r(x)?.conv2d(&r(w)?, padding, stride, 1, 1);
    }
    x.conv2d(w, padding, stride, 1, 1)
}
