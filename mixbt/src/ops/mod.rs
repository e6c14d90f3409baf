//! Fast CPU kernels as candle custom ops (convolution, batch norm, fused add+ReLU). Each falls
//! back to candle's own operations on other devices and dtypes, so CUDA keeps candle's path.

pub mod bn;
pub mod conv;
pub mod gemm;
pub mod profile;

use candle_core::{DType, Result, Tensor};

pub use bn::{add_relu, channel_affine};
pub use conv::conv2d;

/// Whether the fused batch-norm kernel handles `x` (f32 on the CPU).
pub fn fast_bn_applies(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32 && (x.rank() == 2 || x.rank() == 4)
}

/// Fused train-mode batch norm (+ReLU): returns (y, batch mean, biased batch variance).
pub fn batch_norm_train(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64, relu: bool) -> Result<(Tensor, Tensor, Tensor)> {
    bn::batch_norm_train(x, w, b, eps, relu)
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

/// Runs `f` in a function compiled for AVX2/FMA when the CPU has them, so that the loops inlined
/// into it are vectorised 8 lanes wide (the crate itself targets baseline x86-64, i.e. SSE2).
#[inline(always)]
pub(crate) fn simd<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the enabled features.
            return unsafe { avx2(f) };
        }
    }
    f()
}
