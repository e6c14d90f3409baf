//! GFLOP/s of candle's (gemm crate's) matmul for a few conv-like shapes.
use candle_core::{Device, Tensor};
use std::time::Instant;
fn main() -> candle_core::Result<()> {
    for (m, k, n) in [(512usize, 4608usize, 512usize), (64, 576, 1024), (64, 576, 4096), (128, 1152, 1024), (256, 2304, 1024), (512, 4608, 16), (2048, 2048, 2048)] {
        let a = Tensor::randn(0f32, 1.0, (m, k), &Device::Cpu)?;
        let b = Tensor::randn(0f32, 1.0, (k, n), &Device::Cpu)?;
        let _ = a.matmul(&b)?;
        let reps = (2e10 / (2.0 * (m * n * k) as f64)).clamp(1.0, 200.0) as usize;
        let t = Instant::now();
        for _ in 0..reps {
            let _ = a.matmul(&b)?;
        }
        let s = t.elapsed().as_secs_f64() / reps as f64;
        println!("{m}x{k}x{n}: {:.1} GFLOP/s", 2.0 * (m * n * k) as f64 / s / 1e9);
    }
    Ok(())
}
