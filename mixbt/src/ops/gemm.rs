//! Single-precision matrix product for the convolution kernels: BLIS-style blocking (packed
//! panels of A and B, sized for L1/L2) around a 6×16 AVX2/FMA micro-kernel, which keeps twelve
//! accumulators in registers and issues 12 FMAs per 8 loads, so it is bound by the FMA units
//! rather than by loads (`matrixmultiply`'s 8×8 kernel issues 9 loads per 8 FMAs). On CPUs with
//! AVX-512F a 12×32 kernel (24 accumulators, 14 loads per 24 FMAs) reads two row panels and two
//! column panels of the same packed layouts at once.
//!
//! Falls back to `matrixmultiply` on CPUs without AVX2+FMA. Strides are general (in elements),
//! so transposed operands cost only a different packing order.

use std::cell::RefCell;

/// Rows of the micro-tile.
const MR: usize = 6;
/// Columns of the micro-tile (two 8-float vectors).
const NR: usize = 16;
/// Depth of a packed block (A micro-panel 6 KiB, B micro-panel 16 KiB: both stay in L1).
const KC: usize = 256;
/// Rows of a packed A block (MC·KC floats = 144 KiB, in L2).
const MC: usize = 144;
/// Columns of a packed B block (KC·NC floats = 3 MiB, in L3).
const NC: usize = 3072;

/// A thread's packing buffers: A and B blocks in f32, and in BF16 pairs.
#[derive(Default)]
struct Pack {
    a: Vec<f32>,
    b: Vec<f32>,
    ah: Vec<u32>,
    bh: Vec<u32>,
}

thread_local! {
    static PACK: RefCell<Pack> = RefCell::new(Pack::default());
}

pub use super::Precision;

/// How a BF16 product runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bf16Path {
    /// `vdpbf16ps` (AVX512-BF16): pairs of BF16 products summed into FP32, 32 per instruction.
    Avx512Bf16,
    /// The operands rounded to BF16 and multiplied by the FP32 kernel in use (products of BF16
    /// numbers are exact in FP32), each pair of depths added in `vdpbf16ps`'s order: the native
    /// path's numbers bit for bit (subnormals aside) at the FP32 kernel's speed. On the portable
    /// path (`matrixmultiply`) the same up to the summation order. CPUs without AVX512-BF16,
    /// those where it is the faster of the two (timed once per process), or
    /// `MIXBT_GEMM_BF16=emulate`.
    Emulated,
}

impl Bf16Path {
    pub fn name(self) -> &'static str {
        match self {
            Bf16Path::Avx512Bf16 => "avx512bf16",
            Bf16Path::Emulated => "emulated",
        }
    }
}

/// 0: not decided yet, 1: native BF16 on, 2: emulated.
static BF16: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

thread_local! {
    /// A path forced on this thread while the two are timed against each other.
    static BF16_TRIAL: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
}

fn bf16_native_supported() -> bool {
    avx512_supported_with(true)
}

fn bf16_native() -> bool {
    use std::sync::atomic::Ordering::Relaxed;
    if let Some(on) = BF16_TRIAL.with(|t| t.get()) {
        return on;
    }
    match BF16.load(Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let on = bf16_native_default();
            // A `set_bf16_path` made meanwhile wins.
            let _ = BF16.compare_exchange(0, if on { 1 } else { 2 }, Relaxed, Relaxed);
            BF16.load(Relaxed) == 1
        }
    }
}

/// The process's default BF16 path: `MIXBT_GEMM_BF16` (`avx512bf16` or `emulate`) if set, else
/// the faster of the two on this CPU, timed once on a convolution-sized product (the two give the
/// same numbers, so the choice is one of speed only). `vdpbf16ps` is not faster everywhere: it
/// does two products per lane but issues at half the FMA rate on some Intel cores (a 2-core Xeon
/// with AVX512-BF16 and FP16 and no AMX: BF16 products at 0.57x the FP32 kernel's GFLOP/s,
/// `mixbt bench gemm`), while AMD Zen 5 runs it at the FMA rate (1.47x).
fn bf16_native_default() -> bool {
    static DEFAULT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DEFAULT.get_or_init(|| {
        if !bf16_native_supported() {
            return false;
        }
        match std::env::var("MIXBT_GEMM_BF16").as_deref() {
            Ok("emulate") => false,
            Ok("avx512bf16") => true,
            _ => bf16_native_is_faster(),
        }
    })
}

/// Times a BF16 product `[128×1152]·[1152×512]` (a 3×3 convolution of 128 channels, 512
/// output positions) on each path, best of five; whether `vdpbf16ps` took less time.
fn bf16_native_is_faster() -> bool {
    let (m, k, n) = (128, 1152, 512);
    let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
    let b: Vec<f32> = (0..k * n).map(|i| ((i * 104729) % 1000) as f32 / 1000.0 - 0.5).collect();
    let mut c = vec![0f32; m * n];
    let mut time = |native: bool| {
        BF16_TRIAL.with(|t| t.set(Some(native)));
        let best = (0..5)
            .map(|_| {
                let t0 = std::time::Instant::now();
                // SAFETY: a, b and c hold the m×k, k×n and m×n matrices their strides describe.
                unsafe { gemm(Precision::Bf16, m, k, n, a.as_ptr(), k as isize, 1, b.as_ptr(), n as isize, 1, c.as_mut_ptr(), n as isize, 1, false) };
                t0.elapsed()
            })
            .min()
            .unwrap_or_default();
        BF16_TRIAL.with(|t| t.set(None));
        best
    };
    let (native, emulated) = (time(true), time(false));
    native < emulated
}

/// A kernel-path switch decided on first use (`state`: 0 undecided, 1 on, 2 off): on when
/// `supported()` and the environment variable `var` is not `off`; the `set_*` functions change
/// it later.
pub(super) fn switch(state: &std::sync::atomic::AtomicU8, supported: fn() -> bool, var: &str, off: &str) -> bool {
    use std::sync::atomic::Ordering;
    match state.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let on = supported() && std::env::var(var).map(|v| v != off).unwrap_or(true);
            state.store(if on { 1 } else { 2 }, Ordering::Relaxed);
            on
        }
    }
}

/// The path BF16 products take in this process.
pub fn bf16_path() -> Bf16Path {
    if bf16_native() {
        Bf16Path::Avx512Bf16
    } else {
        Bf16Path::Emulated
    }
}

/// Whether this CPU can run BF16 products on path `p` (emulation runs everywhere).
pub fn bf16_path_supported(p: Bf16Path) -> bool {
    p == Bf16Path::Emulated || bf16_native_supported()
}

/// Choose the BF16 path (tests and benchmarks) for the products that start afterwards; switch
/// between computations, not while another thread multiplies (a product half done could change
/// path). Returns whether `p` is now in use.
pub fn set_bf16_path(p: Bf16Path) -> bool {
    if !bf16_path_supported(p) {
        return false;
    }
    BF16.store(if p == Bf16Path::Avx512Bf16 { 1 } else { 2 }, std::sync::atomic::Ordering::Relaxed);
    true
}

/// `x` rounded to the nearest BF16 (ties to even, NaN kept a quiet NaN), as the bits of the f32
/// it equals (low 16 bits zero).
#[inline(always)]
pub fn bf16_bits(x: f32) -> u32 {
    let b = x.to_bits();
    if b & 0x7fff_ffff > 0x7f80_0000 {
        return (b | 0x0040_0000) & 0xffff_0000;
    }
    b.wrapping_add(0x7fff + ((b >> 16) & 1)) & 0xffff_0000
}

/// `x` rounded to the nearest BF16 number.
#[inline(always)]
pub fn round_bf16(x: f32) -> f32 {
    f32::from_bits(bf16_bits(x))
}

super::simd_fn! {
/// Rounds every element to BF16 in place.
pub fn round_bf16_slice(v: &mut [f32]) {
    for x in v.iter_mut() {
        *x = round_bf16(*x);
    }
}
}

/// Rounds packed micro-panels (`panels` of `width` lanes, depth `kc`: lane `r` of depth `p` at
/// `(i·kc + p)·width + r`) to BF16 and swaps the depths of each pair (`2q ↔ 2q + 1`), so that
/// the FP32 kernels, which add the depths in order with FMA, add each pair's odd depth first as
/// `vdpbf16ps` does (two FMAs, odd depth first): the emulation then gives the native path's
/// numbers bit for bit, subnormals aside (`vdpbf16ps` flushes them to zero).
fn round_panels_bf16(panels: usize, width: usize, kc: usize, data: &mut [f32]) {
    let data = &mut data[..panels * width * kc];
    round_bf16_slice(data);
    for panel in data.chunks_exact_mut(width * kc) {
        for pair in panel.chunks_exact_mut(2 * width) {
            let (even, odd) = pair.split_at_mut(width);
            even.swap_with_slice(odd);
        }
    }
}

super::simd_fn! {
/// Converts packed micro-panels (`panels` of `width` lanes, depth `kc`: lane `r` of depth `p` at
/// `src[(i·kc + p)·width + r]`) into BF16 pairs: `dst[(i·kc2 + q)·width + r]` holds depth `2q` in
/// its low half and `2q + 1` in its high half (zero past `kc`), `kc2 = ⌈kc/2⌉`.
fn panels_bf16(panels: usize, width: usize, kc: usize, src: &[f32], dst: &mut [u32]) {
    let kc2 = kc.div_ceil(2);
    for i in 0..panels {
        let s = &src[i * width * kc..][..width * kc];
        let d = &mut dst[i * width * kc2..][..width * kc2];
        for (q, dq) in d.chunks_exact_mut(width).enumerate() {
            let e = &s[2 * q * width..][..width];
            match s.get((2 * q + 1) * width..(2 * q + 2) * width) {
                Some(o) => dq.iter_mut().zip(e).zip(o).for_each(|((d, e), o)| *d = (bf16_bits(*e) >> 16) | bf16_bits(*o)),
                None => dq.iter_mut().zip(e).for_each(|(d, e)| *d = bf16_bits(*e) >> 16),
            }
        }
    }
}
}

/// Whether the AVX2/FMA kernel runs on this CPU (decided once per process; `MIXBT_GEMM_FALLBACK`
/// forces the portable `matrixmultiply` path).
pub fn fast_kernel() -> bool {
    static FAST: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FAST.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            std::env::var_os("MIXBT_GEMM_FALLBACK").is_none() && is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// Which micro-kernel the fast path uses, both on the same packed layouts (so they can be
/// switched at any time, and give bit-identical results: every element of C sums over k in the
/// same order with FMA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// `matrixmultiply` (no AVX2/FMA, or `MIXBT_GEMM_FALLBACK`).
    Portable,
    /// 6×16 tiles in 256-bit registers.
    Avx2,
    /// 12×32 tiles in 512-bit registers (two 6-row A panels and two 16-column B panels at once).
    Avx512,
}

impl Kernel {
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Portable => "portable",
            Kernel::Avx2 => "avx2",
            Kernel::Avx512 => "avx512f",
        }
    }
}

/// 0: not decided yet, 1: AVX-512 on, 2: off.
static WIDE: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

fn avx512_supported() -> bool {
    avx512_supported_with(false)
}

/// Whether the fast kernels run and the CPU has AVX-512F (and, with `bf16`, AVX512-BF16).
fn avx512_supported_with(bf16: bool) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        fast_kernel() && is_x86_feature_detected!("avx512f") && (!bf16 || is_x86_feature_detected!("avx512bf16"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = bf16;
        false
    }
}

/// Whether the 12×32 AVX-512 micro-kernel runs: on CPUs with AVX-512F, unless
/// `MIXBT_GEMM_KERNEL=avx2` (or [`set_kernel`]) asks for the 6×16 AVX2 one.
fn wide() -> bool {
    switch(&WIDE, avx512_supported, "MIXBT_GEMM_KERNEL", "avx2")
}

/// The micro-kernel in use.
pub fn kernel() -> Kernel {
    if !fast_kernel() {
        Kernel::Portable
    } else if wide() {
        Kernel::Avx512
    } else {
        Kernel::Avx2
    }
}

/// Whether this CPU (and this process's `MIXBT_GEMM_FALLBACK`) can run `k`.
pub fn kernel_supported(k: Kernel) -> bool {
    match k {
        Kernel::Portable => !fast_kernel(),
        Kernel::Avx2 => fast_kernel(),
        Kernel::Avx512 => avx512_supported(),
    }
}

/// Choose between the AVX2 and AVX-512 micro-kernels (tests and benchmarks) for the products
/// that start afterwards; switch between computations, not while another thread multiplies (a
/// product half done could change kernel).
/// The portable path is chosen per process, with `MIXBT_GEMM_FALLBACK=1`. Returns whether `k`
/// is now in use.
pub fn set_kernel(k: Kernel) -> bool {
    if !kernel_supported(k) {
        return false;
    }
    match k {
        Kernel::Avx512 => WIDE.store(1, std::sync::atomic::Ordering::Relaxed),
        Kernel::Avx2 => WIDE.store(2, std::sync::atomic::Ordering::Relaxed),
        Kernel::Portable => {}
    }
    true
}

/// `A[m×k]` packed once into the micro-panel layout of every depth block, for products that
/// reuse one A with many Bs (a convolution's kernel, used by every chunk of images).
///
/// Without the fast kernel it holds a plain row-major copy of A for `matrixmultiply`.
pub struct PackedA {
    data: Vec<f32>,
    m: usize,
    k: usize,
    packed: bool,
    /// The panels as BF16 pairs, every depth block one after the other (made on first use).
    bf16: std::sync::OnceLock<Vec<u32>>,
    /// The panels rounded to BF16 (the emulated path; made on first use).
    rounded: std::sync::OnceLock<Vec<f32>>,
}

/// Storage of dropped [`PackedA`]s, reused: a convolution packs its kernel on every call, and a
/// fresh multi-megabyte allocation costs a page fault per 4 KiB on every call.
static POOL: std::sync::Mutex<Vec<Vec<f32>>> = std::sync::Mutex::new(Vec::new());

/// A buffer of `n` floats (contents unspecified) from the pool, or a new one.
fn take_buffer(n: usize) -> Vec<f32> {
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    let fits = pool.iter().enumerate().filter(|(_, v)| v.capacity() >= n).min_by_key(|(_, v)| v.capacity()).map(|(i, _)| i);
    let pick = fits.or_else(|| pool.iter().enumerate().max_by_key(|(_, v)| v.capacity()).map(|(i, _)| i));
    let mut v = pick.map(|i| pool.swap_remove(i)).unwrap_or_default();
    drop(pool);
    // Truncates, or zero-fills only the part never used before.
    v.resize(n, 0.0);
    v
}

/// A raw pointer that may be shared by threads (reads only).
#[derive(Clone, Copy)]
struct ConstPtr(*const f32);
unsafe impl Send for ConstPtr {}
unsafe impl Sync for ConstPtr {}
impl ConstPtr {
    fn get(self) -> *const f32 {
        self.0
    }
}

impl PackedA {
    /// Packs `A[m×k]` (strides in elements).
    ///
    /// # Safety
    /// Every addressed element of A must be valid.
    pub unsafe fn new(m: usize, k: usize, a: *const f32, rsa: isize, csa: isize) -> Self {
        let a = ConstPtr(a);
        #[cfg(target_arch = "x86_64")]
        if csa == 1 && fast_kernel() {
            // Rows contiguous: six rows at a time, eight depths transposed in registers.
            // SAFETY: the caller vouches for every element of A.
            return Self::from_panels(m, k, |i0, p0, kc, d| unsafe { pack_a_rows6(a.get().offset(i0 as isize * rsa + p0 as isize), rsa, kc, d) }, |i, p| unsafe {
                *a.get().offset(i as isize * rsa + p as isize)
            });
        }
        // SAFETY: the caller vouches for every element of A.
        Self::from_fn(m, k, move |i, p| unsafe { *a.get().offset(i as isize * rsa + p as isize * csa) })
    }

    /// Packs `A[m×k]` with `A[i, p] = f(i, p)`, in parallel over the micro-panels.
    pub fn from_fn(m: usize, k: usize, f: impl Fn(usize, usize) -> f32 + Sync) -> Self {
        let full = |i0: usize, p0: usize, kc: usize, d: &mut [f32]| {
            for (p, dp) in d[..kc * MR].chunks_exact_mut(MR).enumerate() {
                for (r, v) in dp.iter_mut().enumerate() {
                    *v = f(i0 + r, p0 + p);
                }
            }
        };
        Self::from_panels(m, k, full, &f)
    }

    /// Packs `A[m×k]`: `full(i0, p0, kc, dst)` packs the whole micro-panel of rows `i0..i0+6`,
    /// depths `p0..p0+kc` (`A[i0 + r, p0 + p]` into `dst[p·6 + r]`); `f(i, p)` gives single
    /// elements (for the last, partial panel).
    pub fn from_panels(m: usize, k: usize, full: impl Fn(usize, usize, usize, &mut [f32]) + Sync, f: impl Fn(usize, usize) -> f32 + Sync) -> Self {
        use rayon::prelude::*;
        let _p = super::profile::scope("gemm.pack-a");
        if !fast_kernel() {
            let mut data = vec![0f32; m * k];
            data.par_chunks_mut(k.max(1)).enumerate().for_each(|(i, row)| row.iter_mut().enumerate().for_each(|(p, d)| *d = f(i, p)));
            return Self { data, m, k, packed: false, bf16: Default::default(), rounded: Default::default() };
        }
        let panels = m.div_ceil(MR);
        let mut data = take_buffer(panels * MR * k);
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            let block = &mut data[pc * panels * MR..][..panels * MR * kc];
            block.par_chunks_mut(MR * kc).with_min_len(4).enumerate().for_each(|(pi, d)| {
                let i0 = pi * MR;
                if i0 + MR <= m {
                    full(i0, pc, kc, d);
                } else {
                    for p in 0..kc {
                        for r in 0..MR {
                            d[p * MR + r] = if i0 + r < m { f(i0 + r, pc + p) } else { 0.0 };
                        }
                    }
                }
            });
        }
        Self { data, m, k, packed: true, bf16: Default::default(), rounded: Default::default() }
    }
    /// `N` matrices `A_q[m×k]` packed together (fast kernels only), for kernels computed
    /// jointly: `full(i0, p0, kc, rows, dst)` fills micro-panel `i0..i0+6` (`rows` of them inside
    /// A, the rest zero), depths `p0..p0+kc`, of every matrix: `A_q[i0 + r, p0 + p]` into
    /// `dst[q][p·6 + r]`. In parallel over the micro-panels.
    pub fn many_from_panels<const N: usize>(m: usize, k: usize, full: impl Fn(usize, usize, usize, usize, [&mut [f32]; N]) + Sync) -> [Self; N] {
        use rayon::prelude::*;
        assert!(fast_kernel(), "PackedA::many_from_panels packs for the fast kernels");
        let _p = super::profile::scope("gemm.pack-a");
        let panels = m.div_ceil(MR);
        let mut data: [Vec<f32>; N] = std::array::from_fn(|_| take_buffer(panels * MR * k));
        let ptrs: [super::SendPtr; N] = std::array::from_fn(|q| super::SendPtr(data[q].as_mut_ptr()));
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            (0..panels).into_par_iter().with_min_len(4).for_each(|pi| {
                let off = pc * panels * MR + pi * MR * kc;
                // SAFETY: each task fills its own micro-panel of every matrix.
                let dst: [&mut [f32]; N] = std::array::from_fn(|q| unsafe { std::slice::from_raw_parts_mut(ptrs[q].0.add(off), MR * kc) });
                full(pi * MR, pc, kc, MR.min(m - pi * MR), dst);
            });
        }
        data.map(|data| Self { data, m, k, packed: true, bf16: Default::default(), rounded: Default::default() })
    }
    pub fn rows(&self) -> usize {
        self.m
    }
    pub fn depth(&self) -> usize {
        self.k
    }
    /// The packed block of depth `pc..pc+kc` starting at row `ic` (a multiple of `MR`).
    fn block(&self, pc: usize, kc: usize, ic: usize) -> *const f32 {
        let panels = self.m.div_ceil(MR);
        debug_assert!(ic.is_multiple_of(MR));
        self.data[pc * panels * MR + (ic / MR) * MR * kc..].as_ptr()
    }
    /// [`Self::block`] rounded to BF16.
    fn block_rounded(&self, pc: usize, kc: usize, ic: usize) -> *const f32 {
        let panels = self.m.div_ceil(MR);
        let r = self.rounded.get_or_init(|| {
            let mut r = self.data.clone();
            for pc in (0..self.k).step_by(KC) {
                let kc = KC.min(self.k - pc);
                round_panels_bf16(panels, MR, kc, &mut r[pc * panels * MR..]);
            }
            r
        });
        r[pc * panels * MR + (ic / MR) * MR * kc..].as_ptr()
    }
    /// [`Self::block`] as BF16 pairs (every depth block but the last has an even depth, `KC`).
    fn block_bf16(&self, pc: usize, kc: usize, ic: usize) -> *const u32 {
        let panels = self.m.div_ceil(MR);
        let h = self.bf16.get_or_init(|| {
            let last = self.k - (self.k - 1) / KC * KC;
            let mut h = vec![0u32; panels * MR * ((self.k - last) / 2 + last.div_ceil(2))];
            for pc in (0..self.k).step_by(KC) {
                let kc = KC.min(self.k - pc);
                panels_bf16(panels, MR, kc, &self.data[pc * panels * MR..][..panels * MR * kc], &mut h[pc / 2 * panels * MR..]);
            }
            h
        });
        h[pc / 2 * panels * MR + (ic / MR) * MR * kc.div_ceil(2)..].as_ptr()
    }
}

impl Drop for PackedA {
    fn drop(&mut self) {
        if self.packed {
            let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
            if pool.len() < 4 {
                pool.push(std::mem::take(&mut self.data));
            }
        }
    }
}

/// Rows of C a thread should take when a product is split by rows: a multiple of the packed
/// block height, so that split products can share one [`PackedA`].
pub fn row_split(m: usize, parts: usize) -> usize {
    m.div_ceil(parts.max(1)).next_multiple_of(MR)
}

/// Where the micro-kernels read A from.
#[derive(Clone, Copy)]
enum ASource<'a> {
    Raw { a: *const f32, rsa: isize, csa: isize },
    /// Rows `r0..` of a packed A.
    Packed { pa: &'a PackedA, r0: usize },
}

/// The im2col matrix of a stride-1 convolution, read straight from the images while packing
/// (an *implicit* GEMM: the `[C·k·k, N·Ho·Wo]` matrix is never written):
/// `B[(c, ky, kx), j] = x[image j][c][oy + ky − pad][ox + kx − pad]`, zero outside the image.
///
/// Requires `Ho·Wo` to be a multiple of 16 and `Wo` a multiple or a divisor of 16, so that each
/// 16-column panel is made of whole row segments of one image ([`ConvB::applies`]).
#[derive(Clone, Copy, Debug)]
pub struct ConvB {
    /// First element of the first image of the chunk.
    pub x: *const f32,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub pad: usize,
    pub ho: usize,
    pub wo: usize,
}

unsafe impl Send for ConvB {}
unsafe impl Sync for ConvB {}

impl ConvB {
    /// Whether a stride-1 convolution with these output maps can be packed implicitly.
    pub fn applies(ho: usize, wo: usize) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            (ho * wo).is_multiple_of(NR) && (wo.is_multiple_of(NR) || NR.is_multiple_of(wo)) && fast_kernel()
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (ho, wo);
            false
        }
    }

    /// Whether the *transposed* im2col matrix of a stride-1 convolution with these output maps
    /// can be packed implicitly ([`BSource::ConvT`]): every group of 8 consecutive output
    /// positions must be one row segment of one image (`Wo` a multiple of 8) or two (`Wo` = 4).
    pub fn applies_t(ho: usize, wo: usize) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            (ho * wo).is_multiple_of(8) && (wo.is_multiple_of(8) || wo == 4) && fast_kernel()
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (ho, wo);
            false
        }
    }
}

/// The im2col matrix of a stride-1 convolution read by the micro-kernel itself, without packing:
/// the images are zero-padded beforehand (`[C, H + 2·pad, W + 2·pad]` each), so that row
/// `(c, ky, kx)` of a 16-column panel is one or two unmasked 8-float loads at a fixed offset from
/// the panel's first output position (one row segment of 16 when `Wo` is a multiple of 16, two
/// segments of 8 one padded row apart when `Wo` = 8).
///
/// Maps narrower than 8 (`Wo` = 4, 2, 1: a panel spans several output rows) use the images
/// *expanded along kx* instead ([`DirectB::expanded`]): `[k, C, H + 2·pad, Wo]` per image, copy
/// `kx` holding the padded rows shifted by `kx` and cut to `Wo`, so that the 16 outputs of a
/// panel are 16 consecutive floats for every tap.
///
/// Stride-2 convolutions (maps 8 wide or more) read padded images split into their four
/// *phases* (`[C, 2, 2, ⌈Hp/2⌉, ⌈Wp/2⌉]`: even/odd rows × even/odd columns), where the inputs of
/// consecutive outputs are consecutive again.
#[derive(Clone, Copy, Debug)]
pub struct DirectB {
    /// First element of the first padded (expanded, phase-split) image of the chunk.
    pub x: *const f32,
    pub c: usize,
    /// Padded height and width.
    pub hp: usize,
    pub wp: usize,
    pub k: usize,
    pub ho: usize,
    pub wo: usize,
    /// 1, or 2 (phase-split images).
    pub stride: usize,
}

unsafe impl Send for DirectB {}
unsafe impl Sync for DirectB {}

impl DirectB {
    /// Whether a convolution with these output maps and stride can be read directly.
    pub fn applies(ho: usize, wo: usize, stride: usize) -> bool {
        let panels = (ho * wo).is_multiple_of(NR) && fast_kernel();
        match stride {
            1 => panels && (wo.is_multiple_of(NR) || NR.is_multiple_of(wo)),
            2 => panels && (wo.is_multiple_of(NR) || wo == 8),
            _ => false,
        }
    }
    /// Whether the images are laid out expanded along kx (stride 1, maps narrower than 8).
    pub fn expanded(&self) -> bool {
        self.stride == 1 && self.wo < 8
    }
    /// Height and width of a phase plane (stride 2).
    fn phase(&self) -> (usize, usize) {
        (self.hp.div_ceil(2), self.wp.div_ceil(2))
    }
    /// Floats per (padded, expanded or phase-split) image.
    pub fn image_len(&self) -> usize {
        if self.stride == 2 {
            let (hq, wq) = self.phase();
            4 * self.c * hq * wq
        } else if self.expanded() {
            self.k * self.c * self.hp * self.wo
        } else {
            self.c * self.hp * self.wp
        }
    }
    /// Distance between the first inputs of consecutive output rows.
    fn row(&self) -> usize {
        if self.stride == 2 {
            self.phase().1
        } else if self.expanded() {
            self.wo
        } else {
            self.wp
        }
    }
    /// The first element of panel column `j` (an output position) and the offset of its second
    /// half.
    fn panel(&self, j: usize) -> (*const f32, usize) {
        let hwo = self.ho * self.wo;
        let (img, r) = (j / hwo, j % hwo);
        let (oy, ox) = (r / self.wo, r % self.wo);
        // SAFETY (of later reads): the panel lies inside the chunk's images.
        let base = self.x.wrapping_add(img * self.image_len() + oy * self.row() + ox);
        (base, if self.wo >= NR || self.expanded() { 8 } else { self.row() })
    }
    /// Offsets of rows `(c, ky, kx)` from a panel's first element.
    fn offsets(&self) -> Vec<u32> {
        let k = self.k;
        let (hq, wq) = self.phase();
        (0..self.c * k * k)
            .map(|p| {
                let (c, ky, kx) = (p / (k * k), (p / k) % k, p % k);
                (if self.stride == 2 {
                    ((c * 2 + ky % 2) * 2 + kx % 2) * hq * wq + (ky / 2) * wq + kx / 2
                } else if self.expanded() {
                    (kx * self.c + c) * self.hp * self.wo + ky * self.wo
                } else {
                    c * self.hp * self.wp + ky * self.wp + kx
                }) as u32
            })
            .collect()
    }
}

/// The im2col matrix of a convolution as the *A* operand, read by the micro-kernel itself:
/// `A[i, p] = x[rows[i] + cols[p]]`, row `i` a tap `(c, ky, kx)` and column `p` an output
/// position of zero-padded images. The weight gradient `dWᵀ = col·dYᵀ` then needs neither an
/// im2col matrix nor its packing: each depth step of a 12×32 tile broadcasts twelve taps straight
/// from the images and loads 32 output channels of the packed `dYᵀ` ([`sgemm_direct_a`]).
#[derive(Clone, Copy, Debug)]
pub struct DirectA<'a> {
    pub x: *const f32,
    /// Offset of each row (tap) from `x`: groups of three consecutive offsets (the `kx` taps of
    /// a 3×3 kernel), the first group first.
    pub rows: &'a [u32],
    /// Offset of each column (output position).
    pub cols: &'a [u32],
}

unsafe impl Send for DirectA<'_> {}
unsafe impl Sync for DirectA<'_> {}

/// Whether [`sgemm_direct_a`] runs in this process (the AVX-512 kernel is in use).
pub fn direct_a_applies() -> bool {
    kernel() == Kernel::Avx512
}

/// Where the packing reads B from.
#[derive(Clone, Copy)]
pub enum BSource {
    /// A matrix with strides (in elements).
    Raw { b: *const f32, rsb: isize, csb: isize },
    /// The implicit im2col matrix of a convolution.
    Conv(ConvB),
    /// Its transpose, `[N·Ho·Wo, C·k·k]` (the B of a weight gradient `dW = dY·colᵀ`), for
    /// shapes where [`ConvB::applies_t`] holds.
    ConvT(ConvB),
    /// The im2col matrix of a convolution, read unpacked from padded images.
    Direct(DirectB),
    /// B already in the packed layout, all `k` rows of each 16-column panel together: column
    /// `j` of row `p` at `b[(j / 16)·16·k + p·16 + j % 16]` (FP32 fast kernels only).
    Panels { b: *const f32, k: usize },
}

/// `C[m×n] = A[m×k]·B[k×n]`, or `C += A·B` with `accumulate`; strides in elements.
///
/// # Safety
/// Every addressed element of A, B and C must be valid; C must not alias A or B.
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm(m: usize, k: usize, n: usize, a: *const f32, rsa: isize, csa: isize, b: *const f32, rsb: isize, csb: isize, c: *mut f32, rsc: isize, csc: isize, accumulate: bool) {
    gemm(Precision::F32, m, k, n, a, rsa, csa, b, rsb, csb, c, rsc, csc, accumulate)
}

/// [`sgemm`] at a chosen precision: with [`Precision::Bf16`], A and B are rounded to BF16 and
/// their products summed in FP32 (C stays FP32).
///
/// # Safety
/// As [`sgemm`].
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm(
    prec: Precision,
    m: usize,
    k: usize,
    n: usize,
    a: *const f32,
    rsa: isize,
    csa: isize,
    b: *const f32,
    rsb: isize,
    csb: isize,
    c: *mut f32,
    rsc: isize,
    csc: isize,
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    *c.offset(i as isize * rsc + j as isize * csc) = 0.0;
                }
            }
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if fast_kernel() {
        // The micro-kernel writes rows of C with vector stores: make C's columns the contiguous
        // direction by computing Cᵀ = Bᵀ·Aᵀ when C is column-major.
        if csc != 1 && rsc == 1 {
            blocked(n, k, m, ASource::Raw { a: b, rsa: csb, csa: rsb }, BSource::Raw { b: a, rsb: csa, csb: rsa }, c, csc, rsc, accumulate, prec);
        } else {
            blocked(m, k, n, ASource::Raw { a, rsa, csa }, BSource::Raw { b, rsb, csb }, c, rsc, csc, accumulate, prec);
        }
        return;
    }
    portable(prec, m, k, n, a, rsa, csa, b, rsb, csb, c, rsc, csc, accumulate);
}

/// The portable product (`matrixmultiply`); at BF16, on rounded copies of A and B.
#[allow(clippy::too_many_arguments)]
unsafe fn portable(prec: Precision, m: usize, k: usize, n: usize, a: *const f32, rsa: isize, csa: isize, b: *const f32, rsb: isize, csb: isize, c: *mut f32, rsc: isize, csc: isize, accumulate: bool) {
    let beta = if accumulate { 1.0 } else { 0.0 };
    if prec == Precision::Bf16 {
        let ar: Vec<f32> = (0..m * k).map(|i| round_bf16(*a.offset((i / k) as isize * rsa + (i % k) as isize * csa))).collect();
        let br: Vec<f32> = (0..k * n).map(|i| round_bf16(*b.offset((i / n) as isize * rsb + (i % n) as isize * csb))).collect();
        matrixmultiply::sgemm(m, k, n, 1.0, ar.as_ptr(), k as isize, 1, br.as_ptr(), n as isize, 1, beta, c, rsc, csc);
        return;
    }
    matrixmultiply::sgemm(m, k, n, 1.0, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc);
}

/// [`sgemm`] with B from any [`BSource`]; C row-major with row stride `ldc`.
///
/// # Safety
/// As [`sgemm`]; an implicit B needs the fast kernel (its `applies` check).
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm_src(m: usize, k: usize, n: usize, a: *const f32, rsa: isize, csa: isize, b: BSource, c: *mut f32, ldc: usize, accumulate: bool, prec: Precision) {
    match b {
        BSource::Raw { b, rsb, csb } => gemm(prec, m, k, n, a, rsa, csa, b, rsb, csb, c, ldc as isize, 1, accumulate),
        _ if m == 0 || n == 0 || k == 0 => sgemm(m, k, n, a, rsa, csa, std::ptr::null(), 0, 0, c, ldc as isize, 1, accumulate),
        _ => {
            assert!(fast_kernel(), "implicit convolution operands need the fast kernel");
            #[cfg(target_arch = "x86_64")]
            blocked(m, k, n, ASource::Raw { a, rsa, csa }, b, c, ldc as isize, 1, accumulate, prec);
        }
    }
}

/// `C[rows×n] (+)= A[r0..r0+rows, :]·B` with a pre-packed A (`r0` a multiple of
/// [`row_split`]'s granularity); C's rows are contiguous with stride `ldc`.
///
/// # Safety
/// As [`sgemm`]; `r0 + rows <= pa.rows()`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm_packed(pa: &PackedA, r0: usize, rows: usize, n: usize, b: BSource, c: *mut f32, ldc: usize, accumulate: bool, prec: Precision) {
    assert!(r0.is_multiple_of(MR) && r0 + rows <= pa.m, "sgemm_packed: rows {r0}+{rows} of {}", pa.m);
    if rows == 0 || n == 0 {
        return;
    }
    if !pa.packed {
        let BSource::Raw { b, rsb, csb } = b else {
            unreachable!("implicit convolution operands need the fast kernel (ConvB::applies)")
        };
        let a = pa.data[r0 * pa.k..].as_ptr();
        portable(prec, rows, pa.k, n, a, pa.k as isize, 1, b, rsb, csb, c, ldc as isize, 1, accumulate);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    blocked(rows, pa.k, n, ASource::Packed { pa, r0 }, b, c, ldc as isize, 1, accumulate, prec);
}

/// `C[m×n] = A·B[k×n]`, or `C += A·B` with `accumulate`, with A read through `a` (`m` its rows,
/// `k` its columns), B and C strided (C may be stored transposed: `rsc = 1`). The depth is summed
/// in blocks of at most 256 within segments of `seg` (a convolution's chunks), each block's sum
/// added to C in turn: the same sums in the same order as [`sgemm_src`] called once per
/// segment, so the results are the same bit for bit. FP32 on the AVX-512 kernel only
/// ([`direct_a_applies`]).
///
/// C is computed 32 columns at a time, in a strip `m × 32` that stays in L2 while every depth
/// block adds to it (each block's 32 columns of B packed once, read from L1 by every row tile),
/// then written to C once, in whatever layout C has.
///
/// # Safety
/// Every addressed element of A, B and C must be valid; C must not alias A or B.
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm_direct_a(a: DirectA, seg: usize, n: usize, b: *const f32, rsb: isize, csb: isize, c: *mut f32, rsc: isize, csc: isize, accumulate: bool, prec: Precision) {
    assert!(direct_a_applies(), "sgemm_direct_a needs the AVX-512 kernel");
    assert!(prec == Precision::F32 || !bf16_native(), "sgemm_direct_a runs BF16 products by emulation only");
    assert!(a.rows.chunks(3).all(|g| g.iter().enumerate().all(|(i, &r)| r == g[0] + i as u32)), "DirectA rows must come in groups of three consecutive offsets");
    #[cfg(target_arch = "x86_64")]
    PACK.with(|p| {
        let Pack { a: strip, b: pb, .. } = &mut *p.borrow_mut();
        let (m, k) = (a.rows.len(), a.cols.len());
        let seg = seg.max(1);
        const W: usize = 2 * NR;
        let mp = m.next_multiple_of(2 * MR);
        if strip.len() < mp * W {
            strip.resize(mp * W, 0.0);
        }
        if pb.len() < W * KC {
            pb.resize(W * KC, 0.0);
        }
        // (first depth, depth) of each block.
        let blocks: Vec<(usize, usize)> = (0..k).step_by(seg).flat_map(|s| (s..(s + seg).min(k)).step_by(KC).map(move |pc| (pc, KC.min((s + seg).min(k) - pc)))).collect();
        // The first offset of each group of three rows of each 12-row tile (past the end: the
        // tile's first; computed, never stored).
        let tile_groups: Vec<[u32; 4]> = (0..m)
            .step_by(2 * MR)
            .map(|ir| {
                let mut rg = [a.rows[ir]; 4];
                for (q, g) in rg.iter_mut().enumerate().take((m - ir).min(2 * MR).div_ceil(3)) {
                    *g = a.rows[ir + 3 * q];
                }
                rg
            })
            .collect();
        // BF16 (A already rounded by the caller): B rounded as it is packed and each pair of
        // depths of a block taken odd first, in A's columns as in B's panels, as the emulated
        // BF16 path of [`blocked`] does: the same sums as `vdpbf16ps` on an im2col matrix.
        let bf16 = prec == Precision::Bf16;
        let swapped: Vec<u32> = if bf16 {
            let mut v = a.cols.to_vec();
            for &(pc, kc) in &blocks {
                for pair in v[pc..pc + kc].chunks_exact_mut(2) {
                    pair.swap(0, 1);
                }
            }
            v
        } else {
            Vec::new()
        };
        let all_cols = if bf16 { swapped.as_slice() } else { a.cols };
        for jr in (0..n).step_by(W) {
            let nr = W.min(n - jr);
            let cp = c.offset(jr as isize * csc);
            if accumulate {
                for i in 0..m {
                    for j in 0..nr {
                        strip[i * W + j] = *cp.offset(i as isize * rsc + j as isize * csc);
                    }
                }
            }
            for (bi, &(pc, kc)) in blocks.iter().enumerate() {
                pack_b(kc, nr, b.offset(pc as isize * rsb + jr as isize * csb), rsb, csb, pb);
                if bf16 {
                    round_panels_bf16(nr.div_ceil(NR), NR, kc, pb);
                }
                let (cols, load_c) = (all_cols[pc..].as_ptr(), accumulate || bi > 0);
                for (t, rg) in tile_groups.iter().enumerate() {
                    let ir = t * 2 * MR;
                    let mr = (2 * MR).min(m - ir);
                    let sp = strip.as_mut_ptr().add(ir * W);
                    match (mr > MR, nr > NR) {
                        (true, true) => kernel_da::<2, 2>(kc, a.x, rg, cols, pb.as_ptr(), sp, W, mr, nr, load_c),
                        (true, false) => kernel_da::<2, 1>(kc, a.x, rg, cols, pb.as_ptr(), sp, W, mr, nr, load_c),
                        (false, true) => kernel_da::<1, 2>(kc, a.x, rg, cols, pb.as_ptr(), sp, W, mr, nr, load_c),
                        (false, false) => kernel_da::<1, 1>(kc, a.x, rg, cols, pb.as_ptr(), sp, W, mr, nr, load_c),
                    }
                }
            }
            if blocks.is_empty() && !accumulate {
                strip[..m * W].fill(0.0);
            }
            if rsc == 1 {
                for j in 0..nr {
                    let cj = cp.offset(j as isize * csc);
                    for i in 0..m {
                        *cj.add(i) = strip[i * W + j];
                    }
                }
            } else {
                for i in 0..m {
                    for j in 0..nr {
                        *cp.offset(i as isize * rsc + j as isize * csc) = strip[i * W + j];
                    }
                }
            }
        }
    });
}

#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
unsafe fn blocked(
    m: usize,
    k: usize,
    n: usize,
    a: ASource,
    b: BSource,
    c: *mut f32,
    rsc: isize,
    csc: isize,
    accumulate: bool,
    prec: Precision,
) {
    // What the micro-kernels multiply: FP32 panels, FP32 panels rounded to BF16, or BF16 pairs.
    let (bf16, native) = match prec {
        Precision::F32 => (false, false),
        Precision::Bf16 => (true, bf16_native()),
    };
    PACK.with(|p| {
        let mut p = p.borrow_mut();
        let Pack { a: pa, b: pb, ah, bh } = &mut *p;
        let need_a = MC.next_multiple_of(MR) * KC;
        let need_b = NC.min(n.next_multiple_of(NR)).max(2 * NR) * KC;
        if pa.len() < need_a {
            pa.resize(need_a, 0.0);
        }
        if pb.len() < need_b {
            pb.resize(need_b, 0.0);
        }
        if native && ah.len() < need_a / 2 {
            ah.resize(need_a / 2, 0);
        }
        if native && bh.len() < need_b / 2 {
            bh.resize(need_b / 2, 0);
        }
        // The packed A block of rows ic..ic+mc at depth pc..pc+kc (FP32, rounded to BF16 when
        // emulating), or as BF16 pairs in `ah`.
        let a_block = |pa: &mut Vec<f32>, ah: &mut Vec<u32>, pc: usize, kc: usize, ic: usize, mc: usize| -> (*const f32, *const u32) {
            match a {
                ASource::Raw { a, rsa, csa } => {
                    pack_a(mc, kc, a.offset(ic as isize * rsa + pc as isize * csa), rsa, csa, pa);
                    let len = mc.next_multiple_of(MR) * kc;
                    if native {
                        panels_bf16(mc.div_ceil(MR), MR, kc, &pa[..len], ah);
                    } else if bf16 {
                        round_panels_bf16(mc.div_ceil(MR), MR, kc, &mut pa[..len]);
                    }
                    (pa.as_ptr(), ah.as_ptr())
                }
                ASource::Packed { pa: packed, r0 } if native => (std::ptr::null(), packed.block_bf16(pc, kc, r0 + ic)),
                ASource::Packed { pa: packed, r0 } if bf16 => (packed.block_rounded(pc, kc, r0 + ic), std::ptr::null()),
                ASource::Packed { pa: packed, r0 } => (packed.block(pc, kc, r0 + ic), std::ptr::null()),
            }
        };
        // Column panels per micro-tile: two (12×32 tiles) with the AVX-512 kernels.
        let step = if wide() || native { 2 * NR } else { NR };
        if let (BSource::Direct(db), false) = (b, bf16) {
            assert!(db.x.is_aligned() && db.image_len() < u32::MAX as usize);
            let offs = db.offsets();
            for pc in (0..k).step_by(KC) {
                let kc = KC.min(k - pc);
                let load_c = accumulate || pc > 0;
                for ic in (0..m).step_by(MC) {
                    let mc = MC.min(m - ic);
                    let (ap, _) = a_block(pa, ah, pc, kc, ic, mc);
                    for jr in (0..n).step_by(step) {
                        let panel = |j: usize| {
                            let (base, half) = db.panel(j);
                            Direct { base, offs: offs[pc..].as_ptr(), half }
                        };
                        // The second panel only for 12×32 tiles (the AVX2 kernel would
                        // compute a 6×16 tile for it and store none of it).
                        let b1 = (step > NR && jr + NR < n).then(|| panel(jr + NR));
                        let cp = c.offset(ic as isize * rsc + jr as isize * csc);
                        micro_rows(kc, ap, panel(jr), b1, cp, rsc, csc, mc, step.min(n - jr), load_c);
                    }
                }
            }
            return;
        }
        if let (BSource::Panels { b: bp, k: kb }, false) = (b, bf16) {
            assert!(kb >= k, "pre-packed B panels are {kb} rows deep, the product {k}");
            for pc in (0..k).step_by(KC) {
                let kc = KC.min(k - pc);
                let load_c = accumulate || pc > 0;
                for ic in (0..m).step_by(MC) {
                    let mc = MC.min(m - ic);
                    let (ap, _) = a_block(pa, ah, pc, kc, ic, mc);
                    for jr in (0..n).step_by(step) {
                        let panel = |j: usize| Packed(bp.add((j / NR) * NR * kb + pc * NR));
                        let b1 = (step > NR && jr + NR < n).then(|| panel(jr + NR));
                        let cp = c.offset(ic as isize * rsc + jr as isize * csc);
                        micro_rows(kc, ap, panel(jr), b1, cp, rsc, csc, mc, step.min(n - jr), load_c);
                    }
                }
            }
            return;
        }
        let offs = if let BSource::Direct(db) = b { db.offsets() } else { Vec::new() };
        for jc in (0..n).step_by(NC) {
            let nc = NC.min(n - jc);
            for pc in (0..k).step_by(KC) {
                let kc = KC.min(k - pc);
                let kc2 = kc.div_ceil(2);
                let load_c = accumulate || pc > 0;
                // Packs B[pc..pc+kc, jc+j0..jc+j0+cols] into `pb` (and, for the native BF16
                // kernel, into `bh` as pairs; rounded in place when emulating).
                let fill_b = |pb: &mut [f32], bh: &mut [u32], j0: usize, cols: usize| {
                    match b {
                        BSource::Raw { b, rsb, csb } => pack_b(kc, cols, b.offset(pc as isize * rsb + (jc + j0) as isize * csb), rsb, csb, pb),
                        BSource::Conv(cb) => {
                            for (i, j) in (0..cols).step_by(NR).enumerate() {
                                pack_conv_panel(&cb, pc, kc, jc + j0 + j, &mut pb[i * NR * kc..]);
                            }
                        }
                        BSource::ConvT(cb) => {
                            for (i, j) in (0..cols).step_by(NR).enumerate() {
                                pack_convt_panel(&cb, pc, kc, jc + j0 + j, NR.min(cols - j), &mut pb[i * NR * kc..]);
                            }
                        }
                        BSource::Direct(db) => {
                            for (i, j) in (0..cols).step_by(NR).enumerate() {
                                let (base, half) = db.panel(jc + j0 + j);
                                pack_panel(kc, Direct { base, offs: offs[pc..].as_ptr(), half }, &mut pb[i * NR * kc..]);
                            }
                        }
                        BSource::Panels { b, k: kb } => {
                            // BF16 products of pre-packed FP32 panels: copied, then converted.
                            debug_assert!((jc + j0).is_multiple_of(NR) && kb >= k);
                            for (i, j) in (0..cols).step_by(NR).enumerate() {
                                std::ptr::copy_nonoverlapping(b.add((jc + j0 + j) / NR * NR * kb + pc * NR), pb[i * NR * kc..][..NR * kc].as_mut_ptr(), NR * kc);
                            }
                        }
                    }
                    let panels = cols.div_ceil(NR);
                    if native {
                        panels_bf16(panels, NR, kc, &pb[..panels * NR * kc], bh);
                    } else if bf16 {
                        round_panels_bf16(panels, NR, kc, pb);
                    }
                };
                // The micro-kernels over rows 0..mc of A block `ap`/`aph`, columns jr..jr+nr of
                // the packed B block (panel `jr/NR` at `pb[jr·kc]`, `bh[jr·kc2]`).
                let tiles = |pb: &[f32], bh: &[u32], ap: *const f32, aph: *const u32, jb: usize, mc: usize, nr: usize, cp: *mut f32| {
                    if native {
                        let b0 = bh.as_ptr().add(jb * kc2);
                        let b1 = (nr > NR).then(|| b0.add(NR * kc2));
                        micro_rows_bf16(kc2, aph, b0, b1, cp, rsc, csc, mc, nr, load_c);
                    } else {
                        let b0 = pb.as_ptr().add(jb * kc);
                        let b1 = (nr > NR).then(|| Packed(b0.add(NR * kc)));
                        micro_rows(kc, ap, Packed(b0), b1, cp, rsc, csc, mc, nr, load_c);
                    }
                };
                if m <= MC {
                    // One A block: pack each B micro-panel just before its use, so it is read
                    // from L1 by every micro-kernel instead of making a round trip through L3.
                    let (ap, aph) = a_block(pa, ah, pc, kc, 0, m);
                    for jr in (0..nc).step_by(step) {
                        let nr = step.min(nc - jr);
                        fill_b(pb, bh, jr, nr);
                        tiles(pb, bh, ap, aph, 0, m, nr, c.offset((jc + jr) as isize * csc));
                    }
                    continue;
                }
                fill_b(pb, bh, 0, nc);
                for ic in (0..m).step_by(MC) {
                    let mc = MC.min(m - ic);
                    let (ap, aph) = a_block(pa, ah, pc, kc, ic, mc);
                    for jr in (0..nc).step_by(step) {
                        let nr = step.min(nc - jr);
                        tiles(pb, bh, ap, aph, jr, mc, nr, c.offset(ic as isize * rsc + (jc + jr) as isize * csc));
                    }
                }
            }
        }
    })
}

/// Packs `A[mc×kc]` into micro-panels of `MR` rows: panel `i` holds `A[i·MR + r, p]` at
/// `i·MR·kc + p·MR + r`, zero-padded to a whole panel.
unsafe fn pack_a(mc: usize, kc: usize, a: *const f32, rsa: isize, csa: isize, dst: &mut [f32]) {
    for (pi, i0) in (0..mc).step_by(MR).enumerate() {
        let rows = MR.min(mc - i0);
        let d = &mut dst[pi * MR * kc..(pi + 1) * MR * kc];
        if rows == MR && rsa == 1 {
            for p in 0..kc {
                let s = a.offset(i0 as isize + p as isize * csa);
                for r in 0..MR {
                    *d.get_unchecked_mut(p * MR + r) = *s.add(r);
                }
            }
        } else if rows == MR && csa == 1 {
            // Six row streams read in step, written contiguously.
            let s: [*const f32; MR] = std::array::from_fn(|r| a.offset((i0 + r) as isize * rsa));
            for p in 0..kc {
                for r in 0..MR {
                    *d.get_unchecked_mut(p * MR + r) = *s[r].add(p);
                }
            }
        } else {
            for r in 0..MR {
                if r < rows {
                    let s = a.offset((i0 + r) as isize * rsa);
                    for p in 0..kc {
                        *d.get_unchecked_mut(p * MR + r) = *s.offset(p as isize * csa);
                    }
                } else {
                    for p in 0..kc {
                        *d.get_unchecked_mut(p * MR + r) = 0.0;
                    }
                }
            }
        }
    }
}

/// Packs one full micro-panel of a row-major A: rows `a + r·rsa` (r < 6), depths `0..kc`, into
/// `d[p·6 + r]`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn pack_a_rows6(a: *const f32, rsa: isize, kc: usize, d: &mut [f32]) {
    use std::arch::x86_64::*;
    let d = d[..kc * MR].as_mut_ptr();
    let rows: [*const f32; MR] = std::array::from_fn(|r| a.offset(r as isize * rsa));
    let z = _mm256_setzero_ps();
    let p8 = kc - kc % 8;
    for p in (0..p8).step_by(8) {
        let mut v = [z; 8];
        for r in 0..MR {
            v[r] = _mm256_loadu_ps(rows[r].add(p));
        }
        let t = transpose8(v);
        for (j, v) in t.iter().enumerate() {
            let o = d.add((p + j) * MR);
            _mm_storeu_ps(o, _mm256_castps256_ps128(*v));
            _mm_storel_epi64(o.add(4) as *mut __m128i, _mm_castps_si128(_mm256_extractf128_ps::<1>(*v)));
        }
    }
    for p in p8..kc {
        for (r, row) in rows.iter().enumerate() {
            *d.add(p * MR + r) = *row.add(p);
        }
    }
}

/// Packs `B[kc×nc]` into micro-panels of `NR` columns: panel `j` holds `B[p, j·NR + q]` at
/// `j·NR·kc + p·NR + q`, zero-padded to a whole panel.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn pack_b(kc: usize, nc: usize, b: *const f32, rsb: isize, csb: isize, dst: &mut [f32]) {
    use std::arch::x86_64::*;
    for (pj, j0) in (0..nc).step_by(NR).enumerate() {
        let cols = NR.min(nc - j0);
        let d = dst[pj * NR * kc..(pj + 1) * NR * kc].as_mut_ptr();
        if csb == 1 && cols == NR {
            for p in 0..kc {
                let s = b.offset(p as isize * rsb + j0 as isize);
                _mm256_storeu_ps(d.add(p * NR), _mm256_loadu_ps(s));
                _mm256_storeu_ps(d.add(p * NR + 8), _mm256_loadu_ps(s.add(8)));
            }
        } else if rsb == 1 && cols == NR {
            // B is column-major here: transpose 8×8 blocks (8 columns × 8 depths at a time).
            let p8 = kc - kc % 8;
            for half in 0..2 {
                let col = |q: usize| b.offset((j0 + half * 8 + q) as isize * csb);
                let cs: [*const f32; 8] = std::array::from_fn(col);
                for p in (0..p8).step_by(8) {
                    let r: [__m256; 8] = std::array::from_fn(|q| _mm256_loadu_ps(cs[q].add(p)));
                    let t = transpose8(r);
                    for (i, v) in t.iter().enumerate() {
                        _mm256_storeu_ps(d.add((p + i) * NR + half * 8), *v);
                    }
                }
                for p in p8..kc {
                    for q in 0..8 {
                        *d.add(p * NR + half * 8 + q) = *cs[q].add(p);
                    }
                }
            }
        } else {
            for p in 0..kc {
                for q in 0..NR {
                    *d.add(p * NR + q) = if q < cols { *b.offset(p as isize * rsb + (j0 + q) as isize * csb) } else { 0.0 };
                }
            }
        }
    }
}

/// Packs rows `p0..p0+kc` of one 16-column panel (columns `j0..j0+16`) of a convolution's
/// implicit im2col matrix.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn pack_conv_panel(cb: &ConvB, p0: usize, kc: usize, j0: usize, dst: &mut [f32]) {
    use std::arch::x86_64::*;
    /// Most kernel taps handled with precomputed masks (k ≤ 7 covers every ResNet kernel).
    const KMAX: usize = 7;
    let d = dst[..NR * kc].as_mut_ptr();
    let hwo = cb.ho * cb.wo;
    let seg = cb.wo.min(NR);
    let segs = NR / seg;
    let (hw, w) = (cb.h * cb.w, cb.w as isize);
    // Per segment: first element of its image, output row and first output column.
    let mut base = [0usize; NR];
    let mut oy = [0isize; NR];
    let mut ox = [0isize; NR];
    for s in 0..segs {
        let j = j0 + s * seg;
        let (img, r) = (j / hwo, j % hwo);
        base[s] = img * cb.c * hw;
        oy[s] = (r / cb.wo) as isize - cb.pad as isize;
        ox[s] = (r % cb.wo) as isize - cb.pad as isize;
    }
    // Column masks per (segment, kx): lanes inside the image. All segments of a panel start at
    // the same output column when Wo ≤ 16, so the masks depend on kx only then.
    let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let masks = |x0: isize| -> [__m256i; 2] {
        let lo = _mm256_set1_epi32(-x0 as i32 - 1);
        let hi = _mm256_set1_epi32((w - x0) as i32);
        std::array::from_fn(|h| {
            let t = _mm256_add_epi32(lane, _mm256_set1_epi32(8 * h as i32));
            _mm256_and_si256(_mm256_cmpgt_epi32(t, lo), _mm256_cmpgt_epi32(hi, t))
        })
    };
    let uniform = segs == 1 || ox[..segs].iter().all(|&o| o == ox[0]);
    let use_masks = seg >= 4 && uniform && cb.k <= KMAX;
    let mut kmask = [[_mm256_setzero_si256(); 2]; KMAX];
    let mut inside = [false; KMAX];
    if use_masks {
        for kx in 0..cb.k {
            let x0 = ox[0] + kx as isize;
            kmask[kx] = masks(x0);
            inside[kx] = x0 >= 0 && x0 + seg as isize <= w;
        }
    }
    let kk = cb.k * cb.k;
    let (mut c, mut ky, mut kx) = (p0 / kk, (p0 % kk) / cb.k, p0 % cb.k);
    for p in 0..kc {
        for s in 0..segs {
            let out = d.add(p * NR + s * seg);
            let y = oy[s] + ky as isize;
            let x0 = ox[s] + kx as isize;
            if y < 0 || y >= cb.h as isize {
                if seg >= 8 {
                    for h in 0..seg / 8 {
                        _mm256_storeu_ps(out.add(8 * h), _mm256_setzero_ps());
                    }
                } else {
                    for t in 0..seg {
                        *out.add(t) = 0.0;
                    }
                }
                continue;
            }
            let src = cb.x.add(base[s] + c * hw + y as usize * cb.w);
            let sp = src.wrapping_offset(x0);
            if use_masks && !inside[kx] {
                // A row segment crossing the left or right border: masked loads (masked lanes
                // are neither read nor faulted), zeros outside the image.
                let m = kmask[kx];
                match seg {
                    4 => _mm_storeu_ps(out, _mm_maskload_ps(sp, _mm256_castsi256_si128(m[0]))),
                    8 => _mm256_storeu_ps(out, _mm256_maskload_ps(sp, m[0])),
                    _ => {
                        _mm256_storeu_ps(out, _mm256_maskload_ps(sp, m[0]));
                        _mm256_storeu_ps(out.add(8), _mm256_maskload_ps(sp.wrapping_add(8), m[1]));
                    }
                }
            } else if x0 >= 0 && x0 + seg as isize <= w {
                match seg {
                    16 => {
                        _mm256_storeu_ps(out, _mm256_loadu_ps(sp));
                        _mm256_storeu_ps(out.add(8), _mm256_loadu_ps(sp.add(8)));
                    }
                    8 => _mm256_storeu_ps(out, _mm256_loadu_ps(sp)),
                    4 => _mm_storeu_ps(out, _mm_loadu_ps(sp)),
                    _ => std::ptr::copy_nonoverlapping(sp, out, seg),
                }
            } else {
                for t in 0..seg {
                    let xx = x0 + t as isize;
                    *out.add(t) = if xx >= 0 && xx < w { *src.offset(xx) } else { 0.0 };
                }
            }
        }
        kx += 1;
        if kx == cb.k {
            kx = 0;
            ky += 1;
            if ky == cb.k {
                ky = 0;
                c += 1;
            }
        }
    }
}

/// Packs rows `p0..p0+kc` (output positions; `p0` and `kc` multiples of 8) of columns
/// `j0..j0+cols` (taps `(c, ky, kx)`, `cols ≤ 16`, zero beyond) of a stride-1 convolution's
/// transposed im2col matrix: eight positions of sixteen taps at a time, loaded as image row
/// segments (masked at the borders) and transposed in registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn pack_convt_panel(cb: &ConvB, p0: usize, kc: usize, j0: usize, cols: usize, dst: &mut [f32]) {
    use std::arch::x86_64::*;
    debug_assert!(p0.is_multiple_of(8) && kc.is_multiple_of(8) && cols <= NR);
    let d = dst[..NR * kc].as_mut_ptr();
    let (hw, hwo, kk) = (cb.h * cb.w, cb.ho * cb.wo, cb.k * cb.k);
    let (h, w) = (cb.h as isize, cb.w as isize);
    let pad = cb.pad as isize;
    // Per tap column: channel offset and the (dy, dx) shift of the tap.
    let mut coff = [0usize; NR];
    let mut sy = [0isize; NR];
    let mut sx = [0isize; NR];
    for q in 0..cols {
        let j = j0 + q;
        coff[q] = (j / kk) * hw;
        sy[q] = ((j % kk) / cb.k) as isize - pad;
        sx[q] = (j % cb.k) as isize - pad;
    }
    let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let (zero, wv) = (_mm256_setzero_ps(), _mm256_set1_epi32(w as i32));
    // (No closures here: they would be compiled without AVX2.)
    for g in (0..kc).step_by(8) {
        let p = p0 + g;
        let (img, r) = (p / hwo, p % hwo);
        let (oy, ox) = ((r / cb.wo) as isize, (r % cb.wo) as isize);
        let xi = cb.x.add(img * cb.c * hw);
        for half in 0..2 {
            // Eight positions of tap columns half·8 + q.
            let mut v = [zero; 8];
            for (q, vq) in v.iter_mut().enumerate() {
                let q = half * 8 + q;
                if q >= cols {
                    break;
                }
                let src = xi.add(coff[q]);
                let x0 = ox + sx[q];
                // Lanes of a row segment starting at column x0 that lie inside the image.
                let t = _mm256_add_epi32(lane, _mm256_set1_epi32(x0 as i32));
                let inside = _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_setzero_si256(), t), _mm256_cmpgt_epi32(wv, t));
                let y = oy + sy[q];
                if cb.wo >= 8 {
                    if y >= 0 && y < h {
                        let sp = src.wrapping_offset(y * w + x0);
                        *vq = if x0 >= 0 && x0 + 8 <= w { _mm256_loadu_ps(sp) } else { _mm256_maskload_ps(sp, inside) };
                    }
                } else {
                    // Two rows of four positions.
                    let m = _mm256_castsi256_si128(inside);
                    let lo = if y >= 0 && y < h { _mm_maskload_ps(src.wrapping_offset(y * w + x0), m) } else { _mm_setzero_ps() };
                    let hi = if y + 1 >= 0 && y + 1 < h { _mm_maskload_ps(src.wrapping_offset((y + 1) * w + x0), m) } else { _mm_setzero_ps() };
                    *vq = _mm256_set_m128(hi, lo);
                }
            }
            let t = transpose8(v);
            for (i, v) in t.iter().enumerate() {
                _mm256_storeu_ps(d.add((g + i) * NR + half * 8), *v);
            }
        }
    }
}

/// Transposes an 8×8 block held as eight row vectors.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn transpose8(r: [std::arch::x86_64::__m256; 8]) -> [std::arch::x86_64::__m256; 8] {
    use std::arch::x86_64::*;
    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
    let t4 = _mm256_unpacklo_ps(r[4], r[5]);
    let t5 = _mm256_unpackhi_ps(r[4], r[5]);
    let t6 = _mm256_unpacklo_ps(r[6], r[7]);
    let t7 = _mm256_unpackhi_ps(r[6], r[7]);
    let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
    let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
    let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
    let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
    [
        _mm256_permute2f128_ps::<0x20>(u0, u4),
        _mm256_permute2f128_ps::<0x20>(u1, u5),
        _mm256_permute2f128_ps::<0x20>(u2, u6),
        _mm256_permute2f128_ps::<0x20>(u3, u7),
        _mm256_permute2f128_ps::<0x31>(u0, u4),
        _mm256_permute2f128_ps::<0x31>(u1, u5),
        _mm256_permute2f128_ps::<0x31>(u2, u6),
        _mm256_permute2f128_ps::<0x31>(u3, u7),
    ]
}

/// How the micro-kernel finds row `p` of its B micro-panel (two 8-float halves).
trait PanelB: Copy {
    unsafe fn row(self, p: usize) -> (*const f32, *const f32);
}

/// A packed micro-panel: rows of 16 contiguous floats.
#[derive(Clone, Copy)]
struct Packed(*const f32);

impl PanelB for Packed {
    #[inline(always)]
    unsafe fn row(self, p: usize) -> (*const f32, *const f32) {
        let r = self.0.add(p * NR);
        (r, r.add(8))
    }
}

/// A [`DirectB`] panel: row `p` at `base + offs[p]`, its second half `half` further.
#[derive(Clone, Copy)]
struct Direct {
    base: *const f32,
    offs: *const u32,
    half: usize,
}

impl PanelB for Direct {
    #[inline(always)]
    unsafe fn row(self, p: usize) -> (*const f32, *const f32) {
        let r = self.base.add(*self.offs.add(p) as usize);
        (r, r.add(self.half))
    }
}

/// `C[rows×nr] (+)= A·[B0 B1]` for a column of micro-tiles: `a` holds `rows.div_ceil(MR)` packed
/// panels of `MR` rows (each `kc·MR` floats), `b0` the first 16 columns, `b1` (when `nr > 16`)
/// the next 16, `c` points at the tile column's first row. With the AVX-512 kernel, pairs of row
/// panels and both column panels make one 12×32 tile; otherwise 6×16 tiles in 256-bit registers.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
unsafe fn micro_rows<B: PanelB>(kc: usize, a: *const f32, b0: B, b1: Option<B>, c: *mut f32, rsc: isize, csc: isize, rows: usize, nr: usize, load_c: bool) {
    debug_assert!(nr <= NR || b1.is_some());
    let wide = wide();
    let mut ir = 0;
    while ir < rows {
        let cp = c.offset(ir as isize * rsc);
        let (a0, left) = (a.add(ir * kc), rows - ir);
        let two = left > MR;
        let mr = if wide && two { 2 * MR } else { MR }.min(left);
        match (wide, b1) {
            (true, Some(b1)) if two => kernel_z::<2, 2, B>(kc, [a0, a0.add(MR * kc)], [b0, b1], cp, rsc, csc, mr, nr, load_c),
            (true, Some(b1)) => kernel_z::<1, 2, B>(kc, [a0], [b0, b1], cp, rsc, csc, mr, nr, load_c),
            (true, None) if two => kernel_z::<2, 1, B>(kc, [a0, a0.add(MR * kc)], [b0], cp, rsc, csc, mr, nr, load_c),
            (true, None) => kernel_z::<1, 1, B>(kc, [a0], [b0], cp, rsc, csc, mr, nr, load_c),
            (false, b1) => {
                kernel_6x16(kc, a0, b0, cp, rsc, csc, mr, nr.min(NR), load_c);
                if let Some(b1) = b1 {
                    kernel_6x16(kc, a0, b1, cp.offset(NR as isize * csc), rsc, csc, mr, nr - NR, load_c);
                }
            }
        }
        ir += mr.next_multiple_of(MR);
    }
}

/// `C[mr×nr] (+)= [A_0; …; A_{P−1}]·[B_0 … B_{W−1}]` for a `6P × 16W` tile in 512-bit registers
/// (`A_q`: kc×6 packed panels, rows of `A_{q+1}` below those of `A_q`; `B_w`: kc×16 panels, the
/// columns of `B_{w+1}` right of those of `B_w`), one accumulator per row and 16 columns. Every
/// element of C sums over k in order with FMA, like the 6×16 AVX2 kernel, so the results are the
/// same bit for bit. Instantiated as 12×32 (24 accumulators: 14 loads per 24 FMAs), 6×32, 12×16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel_z<const P: usize, const W: usize, B: PanelB>(kc: usize, a: [*const f32; P], b: [B; W], c: *mut f32, rsc: isize, csc: isize, mr: usize, nr: usize, load_c: bool) {
    use std::arch::x86_64::*;
    if load_c && csc == 1 {
        prefetch_tile::<W>(c, rsc, mr);
    }
    let mut acc = [[[_mm512_setzero_ps(); W]; MR]; P];
    let mut ap = a;
    for p in 0..kc {
        let mut bv = [_mm512_setzero_ps(); W];
        for w in 0..W {
            let (r0, r1) = b[w].row(p);
            bv[w] = if r1 == r0.add(8) {
                _mm512_loadu_ps(r0)
            } else {
                let lo = _mm512_castps256_ps512(_mm256_loadu_ps(r0));
                _mm512_castpd_ps(_mm512_insertf64x4::<1>(_mm512_castps_pd(lo), _mm256_castps_pd(_mm256_loadu_ps(r1))))
            };
        }
        for q in 0..P {
            for r in 0..MR {
                let av = _mm512_set1_ps(*ap[q].add(r));
                for w in 0..W {
                    acc[q][r][w] = _mm512_fmadd_ps(av, bv[w], acc[q][r][w]);
                }
            }
            ap[q] = ap[q].add(MR);
        }
    }
    store_tile(&acc, c, rsc, csc, mr, nr, load_c);
}

/// `C[mr×nr] (+)= A·[B_0 … B_{W−1}]` for a `6P × 16W` tile whose A rows are read through
/// [`DirectA`] offsets (`x[rows[i] + cols[p]]`, one broadcast each) and whose B panels are packed
/// (`kc×16` each, one after the other); C row-major with stride `ldc`. The rows come in groups of
/// three consecutive offsets (the `kx` taps of a 3×3 kernel), so the tile needs one index register
/// per group. Sums in the order of [`kernel_z`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel_da<const P: usize, const W: usize>(kc: usize, x: *const f32, groups: &[u32; 4], cols: *const u32, b: *const f32, c: *mut f32, ldc: usize, mr: usize, nr: usize, load_c: bool) {
    use std::arch::x86_64::*;
    if load_c {
        prefetch_tile::<W>(c, ldc as isize, mr);
    }
    let mut g = [0usize; 4];
    for i in 0..2 * P {
        g[i] = groups[i] as usize;
    }
    let mut acc = [[[_mm512_setzero_ps(); W]; MR]; P];
    for p in 0..kc {
        let base = x.add(*cols.add(p) as usize);
        let mut bv = [_mm512_setzero_ps(); W];
        for w in 0..W {
            bv[w] = _mm512_loadu_ps(b.add(w * NR * kc + p * NR));
        }
        for q in 0..P {
            for i in 0..MR {
                let av = _mm512_set1_ps(*base.add(g[2 * q + i / 3] + i % 3));
                for w in 0..W {
                    acc[q][i][w] = _mm512_fmadd_ps(av, bv[w], acc[q][i][w]);
                }
            }
        }
    }
    store_tile(&acc, c, ldc as isize, 1, mr, nr, load_c);
}

/// Starts fetching the `mr` rows of `16·W` floats of a tile of C (row stride `rsc`) that a
/// micro-kernel will add its sums to: they are read only after its loop, usually from L3.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn prefetch_tile<const W: usize>(c: *const f32, rsc: isize, mr: usize) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    for i in 0..mr {
        for w in 0..W {
            _mm_prefetch::<_MM_HINT_T0>(c.offset(i as isize * rsc).add(w * 16) as *const i8);
        }
    }
}

/// Copies rows `0..kc` of a micro-panel into the packed layout (`dst[p·16 + j]`).
#[cfg(target_arch = "x86_64")]
unsafe fn pack_panel(kc: usize, b: impl PanelB, dst: &mut [f32]) {
    let d = dst[..NR * kc].as_mut_ptr();
    for p in 0..kc {
        let (r0, r1) = b.row(p);
        std::ptr::copy_nonoverlapping(r0, d.add(p * NR), 8);
        std::ptr::copy_nonoverlapping(r1, d.add(p * NR + 8), 8);
    }
}

/// [`micro_rows`] for BF16 pairs: `a` holds `rows.div_ceil(MR)` panels of `kc2·MR` pairs, `b0`
/// and `b1` panels of `kc2·16` pairs.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
unsafe fn micro_rows_bf16(kc2: usize, a: *const u32, b0: *const u32, b1: Option<*const u32>, c: *mut f32, rsc: isize, csc: isize, rows: usize, nr: usize, load_c: bool) {
    let mut ir = 0;
    while ir < rows {
        let cp = c.offset(ir as isize * rsc);
        let (a0, left) = (a.add(ir * kc2), rows - ir);
        let two = left > MR;
        let mr = if two { 2 * MR } else { MR }.min(left);
        match b1 {
            Some(b1) if two => kernel_bz::<2, 2>(kc2, [a0, a0.add(MR * kc2)], [b0, b1], cp, rsc, csc, mr, nr, load_c),
            Some(b1) => kernel_bz::<1, 2>(kc2, [a0], [b0, b1], cp, rsc, csc, mr, nr, load_c),
            None if two => kernel_bz::<2, 1>(kc2, [a0, a0.add(MR * kc2)], [b0], cp, rsc, csc, mr, nr, load_c),
            None => kernel_bz::<1, 1>(kc2, [a0], [b0], cp, rsc, csc, mr, nr, load_c),
        }
        ir += mr.next_multiple_of(MR);
    }
}

/// [`kernel_z`] on BF16 pairs: each `vdpbf16ps` adds two depths' products (exact in FP32) to 16
/// FP32 accumulators, so a 12×32 tile takes 24 instructions per two depths.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel_bz<const P: usize, const W: usize>(kc2: usize, a: [*const u32; P], b: [*const u32; W], c: *mut f32, rsc: isize, csc: isize, mr: usize, nr: usize, load_c: bool) {
    use std::arch::x86_64::*;
    if load_c && csc == 1 {
        prefetch_tile::<W>(c, rsc, mr);
    }
    let mut acc = [[[_mm512_setzero_ps(); W]; MR]; P];
    let mut ap = a;
    for p in 0..kc2 {
        let mut bv = [_mm512_setzero_si512(); W];
        for w in 0..W {
            bv[w] = _mm512_loadu_si512(b[w].add(p * NR) as *const _);
        }
        for q in 0..P {
            for r in 0..MR {
                let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(*ap[q].add(r) as i32));
                for w in 0..W {
                    acc[q][r][w] = _mm512_dpbf16_ps(acc[q][r][w], av, std::mem::transmute::<__m512i, __m512bh>(bv[w]));
                }
            }
            ap[q] = ap[q].add(MR);
        }
    }
    store_tile(&acc, c, rsc, csc, mr, nr, load_c);
}

/// Writes (or adds, with `load_c`) the `mr × nr` corner of a `6P × 16W` tile of accumulators to C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn store_tile<const P: usize, const W: usize>(acc: &[[[std::arch::x86_64::__m512; W]; MR]; P], c: *mut f32, rsc: isize, csc: isize, mr: usize, nr: usize, load_c: bool) {
    use std::arch::x86_64::*;
    if csc == 1 {
        for w in 0..W {
            let cols = nr.saturating_sub(w * 16).min(16);
            if cols == 0 {
                break;
            }
            let mask: __mmask16 = if cols >= 16 { 0xffff } else { (1u16 << cols) - 1 };
            for q in 0..P {
                for r in 0..MR {
                    let i = q * MR + r;
                    if i >= mr {
                        break;
                    }
                    let cr = c.offset(i as isize * rsc).add(w * 16);
                    let v = if load_c { _mm512_add_ps(acc[q][r][w], _mm512_maskz_loadu_ps(mask, cr)) } else { acc[q][r][w] };
                    _mm512_mask_storeu_ps(cr, mask, v);
                }
            }
        }
    } else {
        let mut t = [0f32; 16];
        for q in 0..P {
            for r in 0..MR {
                let i = q * MR + r;
                if i >= mr {
                    continue;
                }
                for w in 0..W {
                    _mm512_storeu_ps(t.as_mut_ptr(), acc[q][r][w]);
                    for j in 0..nr.saturating_sub(w * 16).min(16) {
                        let cp = c.offset(i as isize * rsc + (w * 16 + j) as isize * csc);
                        *cp = if load_c { *cp + t[j] } else { t[j] };
                    }
                }
            }
        }
    }
}

/// `C[mr×nr] (+)= Ap·Bp` for one micro-tile (`Ap`: kc×6 packed, `Bp`: kc×16).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel_6x16(kc: usize, a: *const f32, b: impl PanelB, c: *mut f32, rsc: isize, csc: isize, mr: usize, nr: usize, load_c: bool) {
    use std::arch::x86_64::*;
    if load_c && csc == 1 {
        // The tile of C is read after the loop: start fetching it now (it is usually in L3).
        for i in 0..mr {
            let cr = c.offset(i as isize * rsc) as *const i8;
            _mm_prefetch::<_MM_HINT_T0>(cr);
            _mm_prefetch::<_MM_HINT_T0>(cr.add(60));
        }
    }
    let z = _mm256_setzero_ps();
    let (mut c00, mut c01, mut c10, mut c11, mut c20, mut c21) = (z, z, z, z, z, z);
    let (mut c30, mut c31, mut c40, mut c41, mut c50, mut c51) = (z, z, z, z, z, z);
    let mut ap = a;
    for p in 0..kc {
        let (r0, r1) = b.row(p);
        let b0 = _mm256_loadu_ps(r0);
        let b1 = _mm256_loadu_ps(r1);
        let a0 = _mm256_broadcast_ss(&*ap);
        c00 = _mm256_fmadd_ps(a0, b0, c00);
        c01 = _mm256_fmadd_ps(a0, b1, c01);
        let a1 = _mm256_broadcast_ss(&*ap.add(1));
        c10 = _mm256_fmadd_ps(a1, b0, c10);
        c11 = _mm256_fmadd_ps(a1, b1, c11);
        let a2 = _mm256_broadcast_ss(&*ap.add(2));
        c20 = _mm256_fmadd_ps(a2, b0, c20);
        c21 = _mm256_fmadd_ps(a2, b1, c21);
        let a3 = _mm256_broadcast_ss(&*ap.add(3));
        c30 = _mm256_fmadd_ps(a3, b0, c30);
        c31 = _mm256_fmadd_ps(a3, b1, c31);
        let a4 = _mm256_broadcast_ss(&*ap.add(4));
        c40 = _mm256_fmadd_ps(a4, b0, c40);
        c41 = _mm256_fmadd_ps(a4, b1, c41);
        let a5 = _mm256_broadcast_ss(&*ap.add(5));
        c50 = _mm256_fmadd_ps(a5, b0, c50);
        c51 = _mm256_fmadd_ps(a5, b1, c51);
        ap = ap.add(MR);
    }
    let acc = [[c00, c01], [c10, c11], [c20, c21], [c30, c31], [c40, c41], [c50, c51]];
    if csc == 1 {
        // Rows of C are contiguous: full vectors, or masked ones at the right edge.
        let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr as i32), lane);
        let m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr as i32 - 8), lane);
        for (i, row) in acc.iter().enumerate().take(mr) {
            let cr = c.offset(i as isize * rsc);
            let (mut v0, mut v1) = (row[0], row[1]);
            if nr == NR {
                if load_c {
                    v0 = _mm256_add_ps(v0, _mm256_loadu_ps(cr));
                    v1 = _mm256_add_ps(v1, _mm256_loadu_ps(cr.add(8)));
                }
                _mm256_storeu_ps(cr, v0);
                _mm256_storeu_ps(cr.add(8), v1);
            } else {
                if load_c {
                    v0 = _mm256_add_ps(v0, _mm256_maskload_ps(cr, m0));
                    v1 = _mm256_add_ps(v1, _mm256_maskload_ps(cr.add(8), m1));
                }
                _mm256_maskstore_ps(cr, m0, v0);
                _mm256_maskstore_ps(cr.add(8), m1, v1);
            }
        }
    } else {
        let mut t = [0f32; MR * NR];
        for (i, row) in acc.iter().enumerate() {
            _mm256_storeu_ps(t.as_mut_ptr().add(i * NR), row[0]);
            _mm256_storeu_ps(t.as_mut_ptr().add(i * NR + 8), row[1]);
        }
        for i in 0..mr {
            for j in 0..nr {
                let cp = c.offset(i as isize * rsc + j as isize * csc);
                *cp = if load_c { *cp + t[i * NR + j] } else { t[i * NR + j] };
            }
        }
    }
}
