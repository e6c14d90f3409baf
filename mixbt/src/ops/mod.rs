//! Fast CPU kernels as candle custom ops (convolution, batch norm, fused add+ReLU). Each falls
//! back to candle's own operations on other devices and dtypes, so CUDA keeps candle's path.

pub mod bn;
pub mod conv;
pub mod gemm;
pub mod geom;
pub mod profile;
pub mod winograd;

use candle_core::{DType, Result, Tensor};

pub use bn::{add_relu, channel_affine};
pub use conv::{conv2d, with_weight_cache};

/// How convolutions and linear layers multiply. FP32 is the default and the reference; BF16
/// rounds both operands of each product to bfloat16 and sums the products in FP32 (like
/// PyTorch's CPU autocast to bfloat16), while weights, activations between layers, batch norm,
/// the loss and the optimiser stay FP32. Products run on `vdpbf16ps` or on the FP32 kernels with
/// rounded operands (the same numbers): where the CPU has AVX512-BF16 the faster of the two,
/// timed once per process ([`gemm::bf16_path`]), else the latter. 3×3 stride-1 convolutions
/// run as Winograd at both precisions ([`winograd`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    Bf16,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Precision::F32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            _ => Err(format!("unknown precision {s:?} (expected f32 or bf16)")),
        }
    }
}

thread_local! {
    static PRECISION: std::cell::Cell<Precision> = const { std::cell::Cell::new(Precision::F32) };
}

/// The precision of the convolutions and linear layers this thread builds now (see
/// [`with_precision`]).
pub fn precision() -> Precision {
    PRECISION.with(|p| p.get())
}

/// Runs `f` with the convolutions and linear layers it builds on this thread multiplying at
/// `p` (an autocast scope; their backward passes keep the precision of their forward pass).
pub fn with_precision<R>(p: Precision, f: impl FnOnce() -> R) -> R {
    struct Restore(Precision);
    impl Drop for Restore {
        fn drop(&mut self) {
            PRECISION.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(PRECISION.with(|c| c.replace(p)));
    f()
}

/// `x·Wᵀ (+ b)` of a linear layer at the thread's [`precision`]: at BF16, `x` and `W` are rounded
/// to bfloat16 first (their products are exact in FP32, so the FP32 matrix product then sums
/// them in FP32: the numbers of a BF16 product; linear layers are a small part of a step, so this
/// path is not made faster). Gradients pass through the rounding unchanged, as through
/// autocast's casts.
pub fn linear(x: &Tensor, l: &candle_nn::Linear) -> Result<Tensor> {
    use candle_core::Module;
    if precision() == Precision::F32 || x.dtype() != DType::F32 {
        return l.forward(x);
    }
    let r = |t: &Tensor| t.to_dtype(DType::BF16)?.to_dtype(DType::F32);
    let y = r(x)?.broadcast_matmul(&r(l.weight())?.t()?)?;
    match l.bias() {
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}

/// Whether the fused batch-norm kernel handles `x` (f32 on the CPU).
pub fn fast_bn_applies(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32 && (x.rank() == 2 || x.rank() == 4)
}

/// Fused train-mode batch norm (+ReLU): returns (y, batch mean, biased batch variance).
pub fn batch_norm_train(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64, relu: bool) -> Result<(Tensor, Tensor, Tensor)> {
    bn::batch_norm_train(x, w, b, eps, relu)
}

/// [`batch_norm_train`] over the global batch of every rank of `sync` (synchronised batch
/// norm); also returns the elements per channel the statistics are over.
pub fn batch_norm_train_sync(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64, relu: bool, sync: Option<crate::dist::Group>) -> Result<(Tensor, Tensor, Tensor, f64)> {
    bn::batch_norm_train_sync(x, w, b, eps, relu, sync)
}

/// The f32 data of a contiguous CPU storage, `what` naming the operand in errors (shared by the
/// conv and BN custom ops).
pub(crate) fn f32_slice<'a>(s: &'a candle_core::CpuStorage, l: &candle_core::Layout, what: &str) -> candle_core::Result<&'a [f32]> {
    let data = match s {
        candle_core::CpuStorage::F32(v) => v.as_slice(),
        _ => candle_core::bail!("{what}: the mixbt CPU ops support f32 only"),
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{what}: non-contiguous input"),
    }
}

/// A new vector of `len` floats filled by `f(i, part)` for its parts of `chunk` floats (the last
/// may be shorter), in parallel when `par`. Each part arrives zeroed, zeroed on the thread that
/// fills it right before `f` runs: `vec![0.0; len]` would zero the whole buffer on the calling
/// thread (glibc's calloc reuses freed memory with a `memset`), leaving the other cores idle.
/// A raw pointer that may cross threads; every use writes disjoint elements.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub(crate) *mut f32);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

pub(crate) fn par_new(len: usize, chunk: usize, par: bool, f: impl Fn(usize, &mut [f32]) + Sync + Send) -> Vec<f32> {
    let [v] = par_new_n(len, chunk, par, |i, [part]| f(i, part));
    v
}

/// [`par_new`] for `N` vectors of the same length filled together: `f(i, parts)` gets part `i`
/// of each.
pub(crate) fn par_new_n<const N: usize>(len: usize, chunk: usize, par: bool, f: impl Fn(usize, [&mut [f32]; N]) + Sync + Send) -> [Vec<f32>; N] {
    par_fill(len, chunk, par, |i, ptrs, n| {
        // SAFETY: part `i` of each buffer (`n` floats at `ptrs[j]`) is this call's alone, and
        // zeroed (a valid f32) before it is viewed as `&mut [f32]`.
        let parts = ptrs.map(|p| unsafe {
            std::ptr::write_bytes(p, 0, n);
            std::slice::from_raw_parts_mut(p, n)
        });
        f(i, parts)
    })
}

/// A new vector of `len` floats filled by `f(i, part, part_len)` for its parts of `chunk` floats
/// (the last may be shorter), in parallel when `par`, *without* zeroing them first: `f` must
/// write every element of its part through the pointer (the convolutions' outputs, written
/// whole by their matrix products).
pub(crate) fn par_new_written(len: usize, chunk: usize, par: bool, f: impl Fn(usize, *mut f32, usize) + Sync + Send) -> Vec<f32> {
    let [v] = par_fill(len, chunk, par, |i, [p], n| f(i, p, n));
    v
}

/// `N` new vectors of `len` floats, part `i` (`chunk` floats from `i·chunk`, the last maybe
/// shorter) of each handed to `f(i, pointers, part_len)`, in parallel when `par`. `f` must
/// write every element of its parts.
fn par_fill<const N: usize>(len: usize, chunk: usize, par: bool, f: impl Fn(usize, [*mut f32; N], usize) + Sync + Send) -> [Vec<f32>; N] {
    use rayon::prelude::*;
    /// The vectors' buffers, shared by the threads; each writes only its own parts.
    struct Bufs<const N: usize>([*mut f32; N]);
    // SAFETY: the parts the threads write are disjoint.
    unsafe impl<const N: usize> Sync for Bufs<N> {}
    impl<const N: usize> Bufs<N> {
        fn get(&self, j: usize) -> *mut f32 {
            self.0[j]
        }
    }
    let mut vs: [Vec<f32>; N] = std::array::from_fn(|_| Vec::with_capacity(len));
    let bufs: Bufs<N> = Bufs(std::array::from_fn(|j| vs[j].as_mut_ptr()));
    let chunk = chunk.max(1);
    let fill = |i: usize| {
        let (start, n) = (i * chunk, chunk.min(len - i * chunk));
        // SAFETY: `start + n <= len <= capacity`.
        f(i, std::array::from_fn(|j| unsafe { bufs.get(j).add(start) }), n)
    };
    let count = len.div_ceil(chunk);
    if par {
        (0..count).into_par_iter().for_each(fill);
    } else {
        (0..count).for_each(fill);
    }
    for v in &mut vs {
        // SAFETY: every part, hence every element below `len`, was written by `f` (its contract).
        unsafe { v.set_len(len) };
    }
    vs
}

/// Defines a function whose body is compiled twice: for AVX2/FMA, run when the CPU has them (its
/// loops vectorise 8 lanes wide), and for the crate's baseline target (x86-64 = SSE2).
///
/// (A closure passed to a `#[target_feature]` trampoline is not enough: rustc may keep the
/// closure out of line, in another codegen unit, and then it is compiled for the baseline.)
macro_rules! simd_fn {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU supports the enabled features.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
    // The same for an `unsafe fn` (its body may use unsafe operations; callers uphold its
    // contract).
    ($(#[$m:meta])* $vis:vis unsafe fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        $vis unsafe fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            unsafe fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                    return avx2($($arg),*);
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use simd_fn;
