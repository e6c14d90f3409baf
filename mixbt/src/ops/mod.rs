//! Fast CPU kernels as candle custom ops.

use candle_core::{Result, Tensor};

/// 2-d convolution without bias (fast CPU path).
pub fn conv2d(x: &Tensor, w: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    x.conv2d(w, padding, stride, 1, 1)
}

/// Whether the fused batch-norm kernel handles `x`.
pub fn fast_bn_applies(_x: &Tensor) -> bool {
    false
}

/// Fused train-mode batch norm: returns (y, batch mean, biased batch variance).
pub fn batch_norm_train(_x: &Tensor, _w: &Tensor, _b: &Tensor, _eps: f64) -> Result<(Tensor, Tensor, Tensor)> {
    candle_core::bail!("fused batch norm not available")
}
