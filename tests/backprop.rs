//! `Tensor::backward` with the vendored candle-core (vendor/README.md): the first gradient to
//! reach a tensor is stored as it is, later ones are added. Gradients of single-use tensors,
//! fan-in (a tensor used several times), broadcasts, reductions, views and our custom ops,
//! against closed forms and central finite differences in f64.

use candle_core::{DType, Device, Tensor, Var, D};

fn vals(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap()
}

fn assert_close(name: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{name}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol * (1.0 + w.abs()), "{name}[{i}]: got {g}, want {w}");
    }
}

/// Central finite differences of the scalar `f` at `x` (f64).
fn numeric_grad(x: &[f64], shape: &[usize], f: impl Fn(&Tensor) -> f64) -> Vec<f64> {
    let h = 1e-6;
    (0..x.len())
        .map(|i| {
            let mut p = x.to_vec();
            p[i] += h;
            let mut m = x.to_vec();
            m[i] -= h;
            let fp = f(&Tensor::from_vec(p, shape, &Device::Cpu).unwrap());
            let fm = f(&Tensor::from_vec(m, shape, &Device::Cpu).unwrap());
            (fp - fm) / (2.0 * h)
        })
        .collect()
}

fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

#[test]
fn single_use_and_fan_in_gradients_match_closed_forms() {
    let dev = Device::Cpu;
    let xv: Vec<f64> = (0..12).map(|i| (i as f64 - 5.5) / 7.0).collect();
    let x = Var::from_vec(xv.clone(), (3, 4), &dev).unwrap();
    let w = Tensor::from_vec((0..6).map(|i| i as f64 * 0.5 - 1.0).collect::<Vec<_>>(), (3, 2), &dev).unwrap();
    // x reaches the loss by four paths (fan-in: 2x, exp(x), the product, the transpose), the
    // intermediate tensors by one each.
    let y = (x.as_tensor() * 2.0).unwrap();
    let e = x.exp().unwrap();
    let loss = (y.sqr().unwrap().sum_all().unwrap() + (x.as_tensor() * &e).unwrap().sum_all().unwrap()).unwrap();
    let loss = (loss + x.t().unwrap().matmul(&w).unwrap().sum_all().unwrap()).unwrap();
    let grads = loss.backward().unwrap();
    let gx = grads.get(&x).unwrap();
    assert_eq!(gx.dims(), &[3, 4]);
    assert!(gx.is_contiguous());
    let wrow: Vec<f64> = vals(&w.sum(1).unwrap());
    let want: Vec<f64> = xv.iter().enumerate().map(|(i, &v)| 8.0 * v + v.exp() * (1.0 + v) + wrow[i / 4]).collect();
    assert_close("dL/dx", &vals(gx), &want, 1e-12);
}

#[test]
fn view_broadcast_and_reduction_gradients_match_finite_differences() {
    let dev = Device::Cpu;
    let xv: Vec<f64> = (0..12).map(|i| ((i * 7 % 12) as f64 - 6.0) / 5.0).collect();
    let bv = vec![0.3, -0.2, 0.1, 0.05];
    // The gradient of `b` arrives through a broadcast, that of `x` through a transpose (a
    // non-contiguous first gradient), a max and a mean over rows.
    let f = |x: &Tensor, b: &Tensor| -> Tensor {
        let s = x.broadcast_add(b).unwrap();
        let m = s.max_keepdim(1).unwrap().sqr().unwrap().sum_all().unwrap();
        let t = x.t().unwrap().contiguous().unwrap().tanh().unwrap().mean(D::Minus1).unwrap().sum_all().unwrap();
        (m + t).unwrap()
    };
    let x = Var::from_vec(xv.clone(), (3, 4), &dev).unwrap();
    let b = Var::from_vec(bv.clone(), 4, &dev).unwrap();
    let grads = f(x.as_tensor(), b.as_tensor()).backward().unwrap();
    let bt = Tensor::new(bv.as_slice(), &dev).unwrap();
    let xt = Tensor::from_vec(xv.clone(), (3, 4), &dev).unwrap();
    let gx = grads.get(&x).unwrap();
    let gb = grads.get(&b).unwrap();
    assert!(gx.is_contiguous() && gb.is_contiguous());
    assert_close("dL/dx", &vals(gx), &numeric_grad(&xv, &[3, 4], |x| scalar(&f(x, &bt))), 1e-6);
    assert_close("dL/db", &vals(gb), &numeric_grad(&bv, &[4], |b| scalar(&f(&xt, b))), 1e-6);
}

#[test]
fn a_variable_shared_by_three_passes_sums_their_gradients() {
    // As in the Mixed BT step: one set of weights, three forward passes through the custom CPU
    // ops (conv, batch norm + ReLU); the gradient of the summed loss is the sum of each pass's.
    use candle_nn::ModuleT;
    let dev = Device::Cpu;
    let store = mixbt::params::ParamStore::new(3, DType::F32, &dev);
    let vb = store.var_builder();
    let cfg = mixbt::model::ResNetConfig { width: 0.125, ..Default::default() };
    let net = mixbt::model::resnet(&cfg, cfg.stem.key_layout(), vb.pp("f")).unwrap();
    let inputs: Vec<Tensor> = (0..3).map(|i| (Tensor::randn(0f32, 1.0, (2, 3, 8, 8), &dev).unwrap() * (1.0 + i as f64)).unwrap()).collect();
    let pass = |x: &Tensor| net.forward_t(x, true).unwrap().sqr().unwrap().sum_all().unwrap();
    let total = inputs.iter().map(pass).reduce(|a, b| (a + b).unwrap()).unwrap();
    let together = total.backward().unwrap();
    let separate: Vec<_> = inputs.iter().map(|x| pass(x).backward().unwrap()).collect();
    let vars = store.trainable();
    assert!(vars.len() > 20);
    for (name, v) in &vars {
        let g = together.get(v).unwrap_or_else(|| panic!("{name}: no gradient"));
        let sum = separate.iter().filter_map(|s| s.get(v)).cloned().reduce(|a, b| (a + b).unwrap()).unwrap();
        let scale = vals(&sum).iter().fold(1e-3f64, |m, x| m.max(x.abs()));
        let diff = vals(&(g - &sum).unwrap()).iter().fold(0f64, |m, x| m.max(x.abs()));
        assert!(diff <= 1e-4 * scale, "{name}: gradient of the sum differs from the sum of gradients by {diff} (scale {scale})");
    }
}

/// Scales by 3 (forward: identity); its backward records the id of the gradient it returns.
struct Tripled(std::sync::Arc<std::sync::Mutex<Option<candle_core::TensorId>>>);

impl candle_core::CustomOp1 for Tripled {
    fn name(&self) -> &'static str {
        "tripled"
    }
    fn cpu_fwd(&self, s: &candle_core::CpuStorage, l: &candle_core::Layout) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let candle_core::CpuStorage::F64(v) = s else { candle_core::bail!("f64 only") };
        let (a, b) = l.contiguous_offsets().unwrap();
        Ok((candle_core::CpuStorage::F64(v[a..b].iter().map(|x| 3.0 * x).collect()), l.shape().clone()))
    }
    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let g = (grad_res * 3.0)?;
        *self.0.lock().unwrap() = Some(g.id());
        Ok(Some(g))
    }
}

#[test]
fn the_vendored_backward_is_in_use() {
    // With candle's own `backward` the stored gradient is `zeros + g`, a new tensor; with the
    // patch (vendor/README.md) it is `g` itself. Fails if `[patch.crates-io]` stops applying.
    let x = Var::from_vec(vec![1.0f64, -2.0, 0.5], 3, &Device::Cpu).unwrap();
    let returned = std::sync::Arc::new(std::sync::Mutex::new(None));
    let y = x.apply_op1(Tripled(returned.clone())).unwrap();
    let grads = y.sum_all().unwrap().backward().unwrap();
    let gx = grads.get(&x).unwrap();
    assert_eq!(vals(gx), vec![3.0; 3]);
    assert_eq!(Some(gx.id()), *returned.lock().unwrap(), "the first gradient was copied: the patched candle-core is not in use");
}
