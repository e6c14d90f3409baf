//! Winograd F(2×2, 3×3) convolution (Lavin & Gray, 2016) for 3×3 kernels at stride 1 with
//! padding 1 on maps of even height and width: every 3×3 convolution of a CIFAR ResNet after
//! the stem, in the forward pass and (as a convolution with the flipped kernel) the input
//! gradient. Each 2×2 block of outputs (a *tile*) comes from a 4×4 block of inputs:
//! `Y = Aᵀ·[Σ_c (G·g·Gᵀ) ⊙ (Bᵀ·d·B)]·A`, 16 products per tile instead of 36, so a convolution
//! is 16 matrix products `M_ξ [O, T] = U_ξ [O, C] · V_ξ [C, T]` (ξ the 16 positions of the 4×4
//! transformed tile, T the tiles of a chunk of images) between an input and an output
//! transform: 2.25× fewer multiplications than the direct convolution.
//!
//! The transforms only add, subtract and halve (exact in FP32 except for the rounding of each
//! sum), so the results differ from a direct convolution's by a few units in the last place,
//! like any other order of summation; the products run on the same FP32 micro-kernels, so the
//! AVX2 and AVX-512 kernels give the same results bit for bit. At BF16 the 16 products round
//! their transformed operands (U and V, not the kernel and the image) to bfloat16, as any BF16
//! Winograd does: the error is that of BF16 products of operands a few times larger, not the
//! direct BF16 convolution's bits. On by default where the fast kernels run;
//! `MIXBT_CONV_WINOGRAD=0` (the process) or [`with_enabled`] (a scope) turn it off.

use rayon::prelude::*;

use super::geom::{images_per_chunk, with_scratch, ConvGeom};
use super::gemm::{BSource, PackedA};
use super::{Precision, SendPtr};

/// The process default: 0 not decided yet, 1 on, 2 off.
static ON: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Winograd convolutions run so far in this process (for tests and profiles).
static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

thread_local! {
    /// This thread's choice within [`with_enabled`].
    static CHOICE: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
}

/// Whether 3×3 convolutions built on this thread may run as Winograd F(2×2, 3×3): with the fast
/// kernels, unless `MIXBT_CONV_WINOGRAD=0` or an enclosing [`with_enabled`] says otherwise.
pub fn enabled() -> bool {
    let default = || super::gemm::switch(&ON, super::gemm::fast_kernel, "MIXBT_CONV_WINOGRAD", "0");
    super::gemm::fast_kernel() && CHOICE.with(|c| c.get()).unwrap_or_else(default)
}

/// Runs `f` with the Winograd path on or off for the convolutions it runs on this thread (their
/// backward passes included: the choice is made when a convolution is built); off, they run as
/// direct convolutions like every other shape.
pub fn with_enabled<R>(on: bool, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<bool>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CHOICE.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(CHOICE.with(|c| c.replace(Some(on))));
    f()
}

/// How many convolutions have run as Winograd in this process.
pub fn runs() -> usize {
    RUNS.load(std::sync::atomic::Ordering::Relaxed)
}

/// The algorithm of the 3×3 stride-1 convolutions on this thread (for bench output).
pub fn name() -> &'static str {
    if enabled() {
        "winograd"
    } else {
        "direct"
    }
}

/// Whether the shape and precision of `g` suit the Winograd path (3×3, stride 1, padding 1,
/// even output maps, at least 16 input channels).
pub fn fits(g: &ConvGeom) -> bool {
    g.k == 3 && g.stride == 1 && g.pad == 1 && g.ho.is_multiple_of(2) && g.wo.is_multiple_of(2) && g.c >= 16
}


thread_local! {
    /// Row transforms of one image plane / output tiles of one output plane (per thread).
    static PLANE: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The 16 packed matrices `U_ξ [O, C]` of a kernel whose 3×3 taps for output `o`, input `c` are
/// `taps(o, c)` (row-major), computed straight into the packed layout.
pub fn kernel(o: usize, c: usize, taps: impl Fn(usize, usize) -> [f32; 9] + Sync) -> Vec<PackedA> {
    let _p = super::profile::scope("conv.winograd.kernel");
    PackedA::many_from_panels::<16>(o, c, |i0, p0, kc, rows, mut dst| {
        // Element `l = p·6 + r` of every packed micro-panel is kernel (i0 + r, p0 + p).
        const L: usize = 96;
        let mut g = [[0f32; L]; 9];
        for l0 in (0..6 * kc).step_by(L) {
            let len = L.min(6 * kc - l0);
            for l in 0..len {
                let (p, r) = ((l0 + l) / 6, (l0 + l) % 6);
                let t = if r < rows { taps(i0 + r, p0 + p) } else { [0.0; 9] };
                for (gt, v) in g.iter_mut().zip(t) {
                    gt[l] = v;
                }
            }
            transform_kernels(&g, &mut dst, l0, len);
        }
    })
    .into()
}

/// Never called: the Winograd path needs the fast (x86-64) kernels.
#[cfg(not(target_arch = "x86_64"))]
pub fn forward(_g: &ConvGeom, _x: &[f32], _u: &[PackedA], _prec: Precision) -> Vec<f32> {
    unreachable!("Winograd convolutions run on the fast kernels only")
}

super::simd_fn! {
/// `G·g·Gᵀ` of kernels `0..len` (tap `t` of kernel `l` at `g[t][l]`) into `dst[ξ][l0 + l]`,
/// `G = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]]`.
fn transform_kernels(g: &[[f32; 96]; 9], dst: &mut [&mut [f32]; 16], l0: usize, len: usize) {
    // t[i][j] = (G·g)[i][j]
    let mut t = [[[0f32; 96]; 3]; 4];
    for j in 0..3 {
        for l in 0..96 {
            let (a, b, c) = (g[j][l], g[3 + j][l], g[6 + j][l]);
            t[0][j][l] = a;
            t[1][j][l] = 0.5 * (a + b + c);
            t[2][j][l] = 0.5 * (a - b + c);
            t[3][j][l] = c;
        }
    }
    for (i, ti) in t.iter().enumerate() {
        let mut u = [[0f32; 96]; 4];
        for l in 0..96 {
            let (a, b, c) = (ti[0][l], ti[1][l], ti[2][l]);
            u[0][l] = a;
            u[1][l] = 0.5 * (a + b + c);
            u[2][l] = 0.5 * (a - b + c);
            u[3][l] = c;
        }
        for (j, uj) in u.iter().enumerate() {
            dst[4 * i + j][l0..l0 + len].copy_from_slice(&uj[..len]);
        }
    }
}
}

/// Tiles per image, images per chunk and tile rows per band. A chunk's transformed inputs and
/// outputs (`16·(C + O)` floats per tile) are meant to stay in L2 (≈ 512 KiB: 64 tiles of a
/// 64-channel layer, at least 32), made a band at a time when an image has more tiles; layers
/// wider than 128 channels, whose transformed kernels do not fit in L2 anyway, take 128 tiles
/// so that each product is wide. Chunks of whole images as [`super::geom::images_per_chunk`] says.
struct Plan {
    th: usize,
    tw: usize,
    nc: usize,
    band: usize,
    par_chunks: bool,
}

fn plan(g: &ConvGeom) -> Plan {
    let (th, tw) = (g.ho / 2, g.wo / 2);
    let threads = rayon::current_num_threads().max(1);
    let target = if g.c + g.o > 256 { 128 } else { (8192 / (g.c + g.o)).clamp(32, 256) };
    let band = if th * tw > target { (target / tw).clamp(1, th) } else { th };
    let nc = images_per_chunk(g.n, target.div_ceil(th * tw), threads);
    Plan { th, tw, nc, band, par_chunks: g.n.div_ceil(nc) >= threads }
}

/// A stride of at least `n` floats that is an odd number of cache lines, so that the 16
/// matrices `V_ξ` (or `M_ξ`) read or written side by side map to 16 different cache sets
/// (strides of a multiple of 4 KiB put them all in one set of L1).
fn odd_lines(n: usize) -> usize {
    let lines = n.div_ceil(16);
    16 * (lines | 1)
}

/// Row stride of the `M_ξ` matrices for `t` tiles (a cache line more when a multiple of 64).
fn ldm(t: usize) -> usize {
    if t.is_multiple_of(64) {
        t + 16
    } else {
        t
    }
}

/// `Y = conv(x, W)` for `g` (see [`applies`]) with the kernel transformed by [`kernel`].
#[cfg(target_arch = "x86_64")]
pub fn forward(g: &ConvGeom, x: &[f32], u: &[PackedA], prec: Precision) -> Vec<f32> {
    assert!(u.len() == 16 && u[0].rows() == g.o && u[0].depth() == g.c, "winograd kernel for another convolution");
    RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let p = plan(g);
    super::par_new_written(g.n * g.o * g.hwo(), p.nc * g.o * g.hwo(), p.par_chunks, |ci, yc, len| {
        let i0 = ci * p.nc;
        let nc = len / (g.o * g.hwo());
        let most = nc * p.band * p.tw;
        let (vs, lm) = (odd_lines(most.div_ceil(16) * 16 * g.c), ldm(most));
        let ms = odd_lines(g.o * lm);
        let par = !p.par_chunks;
        with_scratch(16 * vs, 16 * ms, |v, m| {
            let (vp, mp) = (SendPtr(v.as_mut_ptr()), SendPtr(m.as_mut_ptr()));
            for ty0 in (0..p.th).step_by(p.band) {
                let ty1 = (ty0 + p.band).min(p.th);
                // The band's tiles: `bt` per image, `tc` in the chunk.
                let bt = (ty1 - ty0) * p.tw;
                let tc = nc * bt;
                {
                    let _pi = super::profile::scope("conv.winograd.input");
                    // SAFETY: `v` holds 16 × `vs` floats; channel c writes its own lanes; the
                    // fast kernels (AVX2) run.
                    let one = |c: usize| unsafe { input_planes(g, &p, x, (i0, nc), (ty0, ty1), c, vp, vs) };
                    if par {
                        (0..g.c).into_par_iter().for_each(one);
                    } else {
                        (0..g.c).for_each(one);
                    }
                }
                {
                    let _pg = super::profile::scope("conv.winograd.gemm");
                    let one = |xi: usize| {
                        let (vp, mp) = (vp, mp);
                        // SAFETY: V_ξ holds the band's panels of C rows; M_ξ holds O rows of `lm`.
                        unsafe { super::gemm::sgemm_packed(&u[xi], 0, g.o, tc, BSource::Panels { b: vp.0.add(xi * vs), k: g.c }, mp.0.add(xi * ms), lm, false, prec) };
                    };
                    if par {
                        (0..16).into_par_iter().for_each(one);
                    } else {
                        (0..16).for_each(one);
                    }
                }
                let _po = super::profile::scope("conv.winograd.output");
                let m: &[f32] = m;
                let yp = SendPtr(yc);
                let one = |o: usize| {
                    let yp = yp;
                    for j in 0..nc {
                        // SAFETY: the chunk's output holds `nc` images of O planes.
                        let plane = unsafe { std::slice::from_raw_parts_mut(yp.0.add((j * g.o + o) * g.hwo()), g.hwo()) };
                        // SAFETY: the fast kernels (AVX2) run.
                        unsafe { output_plane(g, &p, m, o * lm + j * bt, ms, (ty0, ty1), plane) };
                    }
                };
                if par {
                    (0..g.o).into_par_iter().for_each(one);
                } else {
                    (0..g.o).for_each(one);
                }
            }
        });
    })
}

/// Eight lanes of `a[0..16]` at even (first) and odd (second) positions.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn deinterleave(p: *const f32) -> (std::arch::x86_64::__m256, std::arch::x86_64::__m256) {
    use std::arch::x86_64::*;
    let (a, b) = (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)));
    // [a0 a2 b0 b2 | a4 a6 b4 b6] → [a0 a2 a4 a6 | b0 b2 b4 b6] (64-bit lanes 0 2 1 3).
    let even = _mm256_castps_pd(_mm256_shuffle_ps::<0b10_00_10_00>(a, b));
    let odd = _mm256_castps_pd(_mm256_shuffle_ps::<0b11_01_11_01>(a, b));
    (_mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(even)), _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(odd)))
}

/// `Bᵀ·(d0, d1, d2, d3)` = `(d0 − d2, d1 + d2, d2 − d1, d1 − d3)` for 8 lanes, stored at `dst`
/// (`+ i` each): the 1-d input transform, along rows and then along columns.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn bt_store(dst: [*mut f32; 4], i: usize, d: [std::arch::x86_64::__m256; 4]) {
    use std::arch::x86_64::*;
    _mm256_storeu_ps(dst[0].add(i), _mm256_sub_ps(d[0], d[2]));
    _mm256_storeu_ps(dst[1].add(i), _mm256_add_ps(d[1], d[2]));
    _mm256_storeu_ps(dst[2].add(i), _mm256_sub_ps(d[2], d[1]));
    _mm256_storeu_ps(dst[3].add(i), _mm256_sub_ps(d[1], d[3]));
}

/// [`bt_store`] for one lane.
#[inline(always)]
unsafe fn bt_store1(dst: [*mut f32; 4], i: usize, d: [f32; 4]) {
    *dst[0].add(i) = d[0] - d[2];
    *dst[1].add(i) = d[1] + d[2];
    *dst[2].add(i) = d[2] - d[1];
    *dst[3].add(i) = d[1] - d[3];
}

/// Row `i` of `m·A` for 8 tiles (`M_ξ` at `m + ξ·ms`): `(m_i0 + m_i1 + m_i2, m_i1 − m_i2 − m_i3)`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn out_row(m: *const f32, ms: usize, i: usize) -> (std::arch::x86_64::__m256, std::arch::x86_64::__m256) {
    use std::arch::x86_64::*;
    let q0 = _mm256_loadu_ps(m.add(4 * i * ms));
    let q1 = _mm256_loadu_ps(m.add((4 * i + 1) * ms));
    let q2 = _mm256_loadu_ps(m.add((4 * i + 2) * ms));
    let q3 = _mm256_loadu_ps(m.add((4 * i + 3) * ms));
    (_mm256_add_ps(_mm256_add_ps(q0, q1), q2), _mm256_sub_ps(_mm256_sub_ps(q1, q2), q3))
}

/// `a` and `b` (8 lanes each) interleaved into 16 floats at `dst`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn store_interleaved(dst: *mut f32, a: std::arch::x86_64::__m256, b: std::arch::x86_64::__m256) {
    use std::arch::x86_64::*;
    let (lo, hi) = (_mm256_unpacklo_ps(a, b), _mm256_unpackhi_ps(a, b));
    _mm256_storeu_ps(dst, _mm256_permute2f128_ps::<0x20>(lo, hi));
    _mm256_storeu_ps(dst.add(8), _mm256_permute2f128_ps::<0x31>(lo, hi));
}

/// The input transform `Bᵀ·d·B` of the tiles in rows `ty0..ty1` of channel `c` of images
/// `i0..i0+nc` (image `j`'s tiles numbered from `j·(ty1 − ty0)·tw` in the chunk) into the 16 pre-packed matrices `V_ξ` (`V_ξ` at `v + ξ·vs`;
/// tile `t`, channel `c` at `(t/16)·16·C + c·16 + t%16`).
/// `Bᵀ = [[1, 0, −1, 0], [0, 1, 1, 0], [0, −1, 1, 0], [0, 1, 0, −1]]`. AVX2 (the Winograd path
/// runs with the fast kernels only); every lane computes what the scalar tail computes.
///
/// # Safety
/// `v` must hold the 16 matrices of the chunk; the CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn input_planes(g: &ConvGeom, p: &Plan, x: &[f32], (i0, nc): (usize, usize), (ty0, ty1): (usize, usize), c: usize, v: SendPtr, vs: usize) {
    use std::arch::x86_64::*;
    let (h, w, tw) = (g.h, g.w, p.tw);
    // Row transforms e_k (k = 0..4) of the zero-padded rows R = 2·ty0..2·ty1 + 2, even rows and
    // odd rows apart: e[(R%2)·4 + k][(R/2 − ty0)·tw + tx] (rows 0 and h+1 are the padding);
    // `pr`: one padded row (zero past its end, for whole-vector reads).
    let rows = (ty1 - ty0 + 1) * tw;
    let mut s = PLANE.with(|s| std::mem::take(&mut *s.borrow_mut()));
    if s.len() < 8 * rows + w + 32 {
        s.resize(8 * rows + w + 32, 0.0);
    }
    let (e, pr) = s.split_at_mut(8 * rows);
    let (e, pr) = (e.as_mut_ptr(), pr.as_mut_ptr());
    std::ptr::write_bytes(pr, 0, w + 32);
    assert!((i0 + nc) * g.c * h * w <= x.len());
    for j in 0..nc {
        let xp = x.as_ptr().add(((i0 + j) * g.c + c) * h * w);
        let t0 = j * (ty1 - ty0) * tw;
        for r in 2 * ty0..2 * ty1 + 2 {
            let (par, q) = (r % 2, r / 2 - ty0);
            let ek = [0, 1, 2, 3].map(|k| e.add((par * 4 + k) * rows + q * tw));
            if r == 0 || r == h + 1 {
                for d in ek {
                    std::ptr::write_bytes(d, 0, tw);
                }
                continue;
            }
            // pr[0] = 0, pr[1..=w] = the image row, zeros after.
            let src = xp.add((r - 1) * w);
            let mut i = 0;
            while i + 8 <= w {
                _mm256_storeu_ps(pr.add(1 + i), _mm256_loadu_ps(src.add(i)));
                i += 8;
            }
            while i < w {
                *pr.add(1 + i) = *src.add(i);
                i += 1;
            }
            // Tile tx reads padded columns 2tx..2tx+4: ev = pr[2tx], od = pr[2tx+1], then the next.
            let mut i = 0;
            while i + 8 <= tw {
                let (ev0, od0) = deinterleave(pr.add(2 * i));
                let (ev1, od1) = deinterleave(pr.add(2 * i + 2));
                bt_store(ek, i, [ev0, od0, ev1, od1]);
                i += 8;
            }
            while i < tw {
                bt_store1(ek, i, [*pr.add(2 * i), *pr.add(2 * i + 1), *pr.add(2 * i + 2), *pr.add(2 * i + 3)]);
                i += 1;
            }
        }
        // Column transforms: tile s = ty·tw + tx uses rows 2ty (even row ty), 2ty + 1 (odd row ty),
        // 2ty + 2 (even row ty + 1), 2ty + 3 (odd row ty + 1), runs of tiles within one panel.
        let t_img = (ty1 - ty0) * tw;
        let mut s0 = 0;
        while s0 < t_img {
            let t = t0 + s0;
            let len = (16 - t % 16).min(t_img - s0);
            let off = (t / 16) * 16 * g.c + c * 16 + t % 16;
            for k in 0..4 {
                let (ev0, od0) = (e.add(k * rows + s0), e.add((4 + k) * rows + s0));
                let (ev1, od1) = (ev0.add(tw), od0.add(tw));
                let d = [0, 4, 8, 12].map(|i| v.0.add((i + k) * vs + off));
                let mut i = 0;
                // Rows 2ty, 2ty + 1, 2ty + 2, 2ty + 3 of the tiles: even, odd, even, odd.
                while i + 8 <= len {
                    bt_store(d, i, [_mm256_loadu_ps(ev0.add(i)), _mm256_loadu_ps(od0.add(i)), _mm256_loadu_ps(ev1.add(i)), _mm256_loadu_ps(od1.add(i))]);
                    i += 8;
                }
                while i < len {
                    bt_store1(d, i, [*ev0.add(i), *od0.add(i), *ev1.add(i), *od1.add(i)]);
                    i += 1;
                }
            }
            s0 += len;
        }
    }
    PLANE.with(|p| *p.borrow_mut() = s);
}

/// The output transform `Aᵀ·m·A` of the tiles in rows `ty0..ty1` of one output plane: tile `s`
/// of the band is column `at + s` of the matrices `M_ξ` (`M_ξ` at `m[ξ·ms..]`), written to `y` (Ho×Wo).
/// `Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]]`. AVX2 over 8 tiles of a row, like [`input_planes`].
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn output_plane(g: &ConvGeom, p: &Plan, m: &[f32], at: usize, ms: usize, (ty0, ty1): (usize, usize), y: &mut [f32]) {
    use std::arch::x86_64::*;
    let (tw, wo) = (p.tw, g.wo);
    assert!(at + 15 * ms + (ty1 - ty0) * tw <= m.len() && y.len() >= g.ho * wo && ty1 <= p.th);
    let m = m.as_ptr().add(at);
    let y = y.as_mut_ptr();
    for ty in ty0..ty1 {
        let (r0, r1) = (y.add(2 * ty * wo), y.add((2 * ty + 1) * wo));
        let mut tx = 0;
        while tx + 8 <= tw {
            let mt = m.add((ty - ty0) * tw + tx);
            let ((a0, b0), (a1, b1)) = (out_row(mt, ms, 0), out_row(mt, ms, 1));
            let ((a2, b2), (a3, b3)) = (out_row(mt, ms, 2), out_row(mt, ms, 3));
            let y00 = _mm256_add_ps(_mm256_add_ps(a0, a1), a2);
            let y01 = _mm256_add_ps(_mm256_add_ps(b0, b1), b2);
            let y10 = _mm256_sub_ps(_mm256_sub_ps(a1, a2), a3);
            let y11 = _mm256_sub_ps(_mm256_sub_ps(b1, b2), b3);
            store_interleaved(r0.add(2 * tx), y00, y01);
            store_interleaved(r1.add(2 * tx), y10, y11);
            tx += 8;
        }
        while tx < tw {
            let mt = m.add((ty - ty0) * tw + tx);
            let mut r = [(0f32, 0f32); 4];
            for (i, ri) in r.iter_mut().enumerate() {
                let q = [0, 1, 2, 3].map(|j| *mt.add((4 * i + j) * ms));
                *ri = (q[0] + q[1] + q[2], q[1] - q[2] - q[3]);
            }
            let [(a0, b0), (a1, b1), (a2, b2), (a3, b3)] = r;
            *r0.add(2 * tx) = a0 + a1 + a2;
            *r0.add(2 * tx + 1) = b0 + b1 + b2;
            *r1.add(2 * tx) = a1 - a2 - a3;
            *r1.add(2 * tx + 1) = b1 - b2 - b3;
            tx += 1;
        }
    }
}
