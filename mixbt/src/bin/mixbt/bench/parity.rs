//! `mixbt bench parity`: one Mixed Barlow Twins step (three forward passes in train mode, the
//! loss, backward) on two devices from the same weights, the same batch, permutation and α,
//! comparing the loss components and every gradient. `--device cpu --against cpu` must agree
//! exactly (the tests run it so); CPU against `cuda:0` shows the GPU's numerical agreement.

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;

use mixbt::loss::{mix_batch, sample_mix, MixVariant, MixedBarlowTwins};
use mixbt::model::{encoder, Arch, EncoderConfig, Stem};
use mixbt::params::ParamStore;
use mixbt::Result;

/// What one device computed.
struct Side {
    loss: Vec<f64>,
    grads: Vec<(String, Vec<f32>)>,
}

fn step_on(dev: &Device, cfg: &EncoderConfig, x_a: &Tensor, x_b: &Tensor, seed: u64) -> Result<Side> {
    let store = ParamStore::new(seed, DType::F32, dev);
    let enc = encoder(cfg, store.var_builder())?;
    let (a, b) = (x_a.to_device(dev)?, x_b.to_device(dev)?);
    let n = a.dim(0)?;
    let (perm, alpha) = sample_mix(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed), n);
    let (_, h_a) = enc.forward_t(&a, true)?;
    let (_, h_b) = enc.forward_t(&b, true)?;
    let (_, h_m) = enc.forward_t(&mix_batch(&a, &b, &perm, alpha)?, true)?;
    let loss = MixedBarlowTwins { lambda_bt: 0.0078125, lambda_reg: 4.0, variant: MixVariant::Small, l2_normalize: true };
    let p = loss.compute(&h_a, &h_b, &h_m, &perm, alpha)?;
    let grads = p.total.backward()?;
    let vals = Tensor::stack(&[&p.loss_bt, &p.loss_reg, &p.total], 0)?.to_dtype(DType::F64)?.to_vec1()?;
    let mut out = vec![];
    for (name, var) in store.trainable() {
        if let Some(g) = grads.get(var.as_tensor()) {
            out.push((name, g.to_device(&Device::Cpu)?.flatten_all()?.to_vec1()?));
        }
    }
    Ok(Side { loss: vals, grads: out })
}

/// Compare one step on `device` and on `against`; prints the comparison and
/// `parity_max_rel_grad=…`, `parity_loss_rel=…`, `parity_ok=…` (relative tolerance `tol`).
pub fn run(device: &Device, against: &Device, batch: usize, width: f64, tol: f64) -> Result<bool> {
    let cfg = EncoderConfig::small(Arch::R18, Stem::Cifar, 128, width);
    let mut r = mixbt::rng::SplitMix64::new(11);
    let mut img = || Tensor::from_vec((0..batch * 3 * 32 * 32).map(|_| r.next_sym() as f32).collect::<Vec<f32>>(), (batch, 3, 32, 32), &Device::Cpu);
    let (x_a, x_b) = (img()?, img()?);
    let one = step_on(device, &cfg, &x_a, &x_b, 0)?;
    let two = step_on(against, &cfg, &x_a, &x_b, 0)?;
    let rel = |a: f64, b: f64| (a - b).abs() / a.abs().max(b.abs()).max(1e-30);
    let loss_rel = one.loss.iter().zip(&two.loss).map(|(a, b)| rel(*a, *b)).fold(0.0, f64::max);
    let (mut worst, mut worst_name) = (0.0f64, String::new());
    for ((name, g1), (_, g2)) in one.grads.iter().zip(&two.grads) {
        let scale = g1.iter().chain(g2).fold(0f32, |m, v| m.max(v.abs())) as f64;
        let diff = g1.iter().zip(g2).fold(0f32, |m, (a, b)| m.max((a - b).abs())) as f64;
        let r = if scale > 0.0 { diff / scale } else { diff };
        if r > worst || worst_name.is_empty() {
            (worst, worst_name) = (r, name.clone());
        }
    }
    let ok = one.grads.len() == two.grads.len() && loss_rel <= tol && worst <= tol;
    println!("parity {:?} vs {:?}: ResNet-18 x{width}, batch {batch}, {} gradients", device, against, one.grads.len());
    println!("  loss (bt, reg, total): {:?} vs {:?}", one.loss, two.loss);
    println!("  largest gradient difference: {worst:.3e} of the tensor's largest value ({worst_name})");
    println!("parity_loss_rel={loss_rel:.3e}");
    println!("parity_max_rel_grad={worst:.3e}");
    println!("parity_ok={ok}");
    Ok(ok)
}
