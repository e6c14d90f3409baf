use candle_core::{Device, Tensor};
use std::time::Instant;
fn main() -> candle_core::Result<()> {
    let a = Tensor::randn(0f32, 1.0, (32, 64, 32, 32), &Device::Cpu)?;
    let b = Tensor::randn(0f32, 1.0, (32, 64, 32, 32), &Device::Cpu)?;
    for _ in 0..3 {
        let t = Instant::now(); let c = (&a * &b)?; let m = t.elapsed();
        let t = Instant::now(); let s = c.sum_all()?; let sa = t.elapsed();
        let t = Instant::now(); let _ = (&a + 1.0)?; let af = t.elapsed();
        let t = Instant::now(); let _ = a.relu()?; let r = t.elapsed();
        let t = Instant::now(); let _ = a.zeros_like()?; let z = t.elapsed();
        let t = Instant::now(); let g = s.backward()?; let bw = t.elapsed();
        drop(g);
        println!("mul {:?} sum_all {:?} affine {:?} relu {:?} zeros {:?} backward(sum) {:?}", m, sa, af, r, z, bw);
    }
    Ok(())
}
