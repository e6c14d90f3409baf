//! GFLOP/s of the fast conv ops per ResNet-18 CIFAR layer shape (batch 32).
use candle_core::{Device, Tensor, Var};
use std::time::Instant;
fn main() -> candle_core::Result<()> {
    let n: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(32);
    for (c, h, o, k, s) in [(64usize, 32usize, 64usize, 3usize, 1usize), (64, 32, 128, 3, 2), (128, 16, 128, 3, 1), (256, 8, 256, 3, 1), (512, 4, 512, 3, 1), (64, 32, 128, 1, 2)] {
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (n, c, h, h), &Device::Cpu)?)?;
        let w = Var::from_tensor(&Tensor::randn(0f32, 0.1, (o, c, k, k), &Device::Cpu)?)?;
        let y = mixbt::ops::conv2d(x.as_tensor(), w.as_tensor(), s, k / 2)?;
        let ho = y.dim(2)?;
        let flops = 2.0 * (n * o * ho * ho * c * k * k) as f64;
        let reps = 6;
        let t = Instant::now();
        for _ in 0..reps { let _ = mixbt::ops::conv2d(x.as_tensor(), w.as_tensor(), s, k / 2)?; }
        let f = t.elapsed().as_secs_f64() / reps as f64;
        let dy = Tensor::randn(0f32, 1.0, y.dims(), &Device::Cpu)?;
        let t = Instant::now();
        for _ in 0..reps { let y = mixbt::ops::conv2d(x.as_tensor(), w.as_tensor(), s, k / 2)?; let _ = (y * &dy)?.sum_all()?.backward()?; }
        let b = t.elapsed().as_secs_f64() / reps as f64 - f;
        for (name, secs, calls) in mixbt::ops::profile::report() { println!("   {name:<24} {:.1} ms/call", secs / calls as f64 * 1e3); }
        mixbt::ops::profile::reset();
        println!("c{c} h{h} o{o} k{k} s{s}: fwd {:.1} ms ({:.1} GFLOP/s), bwd {:.1} ms ({:.1} GFLOP/s)", f * 1e3, flops / f / 1e9, b * 1e3, 2.0 * flops / b / 1e9);
    }
    Ok(())
}
