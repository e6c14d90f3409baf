//! Optimisers against hand-computed PyTorch updates, and the schedules against the original formulas.

use candle_core::{DType, Device, Tensor, Var};
use mixbt::optim::*;

/// Run `steps` updates with fixed gradients `grads[t]` (gradient of Σ g·p) and return the parameter.
fn run(opt: &mut dyn Optimizer, var: &Var, grads: &[Vec<f64>]) -> Vec<f64> {
    for g in grads {
        let gt = Tensor::new(g.as_slice(), &Device::Cpu).unwrap().to_dtype(var.dtype()).unwrap();
        let loss = (var.as_tensor() * &gt).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        opt.step(&grads).unwrap();
    }
    var.as_tensor().to_dtype(DType::F64).unwrap().to_vec1().unwrap()
}

/// PyTorch's Adam (coupled L2 when !decoupled, AdamW otherwise), by hand.
fn adam_by_hand(p0: &[f64], grads: &[Vec<f64>], lr: f64, wd: f64, decoupled: bool) -> Vec<f64> {
    let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
    let mut p = p0.to_vec();
    let mut m = vec![0.0; p.len()];
    let mut v = vec![0.0; p.len()];
    for (t, g) in grads.iter().enumerate() {
        let t = (t + 1) as i32;
        for i in 0..p.len() {
            let mut gi = g[i];
            if decoupled {
                p[i] *= 1.0 - lr * wd;
            } else {
                gi += wd * p[i];
            }
            m[i] = b1 * m[i] + (1.0 - b1) * gi;
            v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
            let denom = (v[i].sqrt() / (1.0 - b2.powi(t)).sqrt()) + eps;
            p[i] -= lr / (1.0 - b1.powi(t)) * m[i] / denom;
        }
    }
    p
}

fn close(a: &[f64], b: &[f64], tol: f64) {
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{a:?} vs {b:?}");
    }
}

#[test]
fn adam_l2_and_adamw_match_pytorch_and_differ() {
    let p0 = vec![1.0, -2.0, 0.5, 3.0];
    let grads = vec![vec![0.1, -0.3, 0.02, 1.0], vec![-0.2, 0.1, 0.0, 0.5], vec![0.3, 0.3, -0.1, -1.0]];
    let (lr, wd) = (0.05, 0.1);
    for dt in [DType::F32, DType::F64] {
        // f32 on the CPU takes the fused kernel, f64 the tensor path: both must match.
        let tol = if dt == DType::F32 { 1e-6 } else { 1e-12 };
        for decoupled in [false, true] {
            let var = Var::from_tensor(&Tensor::new(p0.as_slice(), &Device::Cpu).unwrap().to_dtype(dt).unwrap()).unwrap();
            let cfg = AdamConfig { lr, weight_decay: wd, decoupled, ..Default::default() };
            let mut opt = Adam::single(vec![("p".into(), var.clone())], cfg);
            let got = run(&mut opt, &var, &grads);
            close(&got, &adam_by_hand(&p0, &grads, lr, wd, decoupled), tol);
        }
    }
    let l2 = adam_by_hand(&p0, &grads, lr, wd, false);
    let w = adam_by_hand(&p0, &grads, lr, wd, true);
    assert!(l2.iter().zip(&w).any(|(a, b)| (a - b).abs() > 1e-4), "coupled L2 and decoupled decay must differ");
}

#[test]
fn adam_state_round_trips() {
    let var = Var::from_tensor(&Tensor::new(&[1.0f32, 2.0], &Device::Cpu).unwrap()).unwrap();
    let cfg = AdamConfig { lr: 0.1, ..Default::default() };
    let mut a = Adam::single(vec![("w".into(), var.clone())], cfg);
    run(&mut a, &var, &[vec![0.5, -0.5]]);
    let (t, s) = (a.state_tensors(), a.state_scalars());
    let var2 = Var::from_tensor(var.as_tensor()).unwrap();
    let var2 = Var::from_tensor(&var2.as_tensor().copy().unwrap()).unwrap();
    let mut b = Adam::single(vec![("w".into(), var2.clone())], cfg);
    b.load_state(&t, &s).unwrap();
    let x = run(&mut a, &var, &[vec![0.25, 1.0]]);
    let y = run(&mut b, &var2, &[vec![0.25, 1.0]]);
    assert_eq!(x, y);
    // A missing state tensor is a clear error.
    let mut c = Adam::single(vec![("w".into(), var2)], cfg);
    let err = c.load_state(&Default::default(), &s).unwrap_err().to_string();
    assert!(err.contains("exp_avg.w"), "{err}");
}

#[test]
fn lars_excludes_one_d_parameters() {
    let w0 = vec![3.0, 4.0]; // ‖w‖ = 5
    let b0 = vec![1.0, -1.0];
    let w = Var::from_tensor(&Tensor::new(&[[3.0f64, 4.0]], &Device::Cpu).unwrap()).unwrap(); // 2-d
    let b = Var::from_tensor(&Tensor::new(b0.as_slice(), &Device::Cpu).unwrap()).unwrap(); // 1-d
    let cfg = LarsConfig { weight_decay: 0.1, momentum: 0.9, eta: 0.001, ..Default::default() };
    let mut opt = Lars::new(vec![("w".into(), w.clone()), ("b".into(), b.clone())], cfg);
    assert_eq!(opt.group_names(0), vec!["w"]);
    assert_eq!(opt.group_names(1), vec!["b"]);
    let (lr_w, lr_b) = (0.2, 0.0048);
    opt.set_lr(0, lr_w);
    opt.set_lr(1, lr_b);
    let gw = [0.5, -0.25];
    let gb = [0.3, 0.6];
    let loss = ((w.as_tensor() * Tensor::new(&[gw], &Device::Cpu).unwrap()).unwrap().sum_all().unwrap()
        + (b.as_tensor() * Tensor::new(&gb, &Device::Cpu).unwrap()).unwrap().sum_all().unwrap())
    .unwrap();
    opt.step(&loss.backward().unwrap()).unwrap();
    // Weights: dp = g + wd·p, scaled by eta·‖p‖/‖dp‖, mu = dp, p -= lr·mu.
    let dp: Vec<f64> = (0..2).map(|i| gw[i] + 0.1 * w0[i]).collect();
    let q = 0.001 * 5.0 / (dp[0] * dp[0] + dp[1] * dp[1]).sqrt();
    let want_w: Vec<f64> = (0..2).map(|i| w0[i] - lr_w * q * dp[i]).collect();
    let got_w: Vec<f64> = w.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
    close(&got_w, &want_w, 1e-12);
    // Biases: no decay, no adaptation.
    let want_b: Vec<f64> = (0..2).map(|i| b0[i] - lr_b * gb[i]).collect();
    close(&b.as_tensor().to_vec1::<f64>().unwrap(), &want_b, 1e-12);
    // Second step uses momentum: mu = 0.9·mu + dp.
    let loss = (b.as_tensor() * Tensor::new(&gb, &Device::Cpu).unwrap()).unwrap().sum_all().unwrap();
    opt.step(&loss.backward().unwrap()).unwrap();
    let want_b2: Vec<f64> = (0..2).map(|i| want_b[i] - lr_b * (0.9 * gb[i] + gb[i])).collect();
    close(&b.as_tensor().to_vec1::<f64>().unwrap(), &want_b2, 1e-12);
}

#[test]
fn sgd_momentum_matches_pytorch() {
    let var = Var::from_tensor(&Tensor::new(&[1.0f64, -1.0], &Device::Cpu).unwrap()).unwrap();
    let mut opt = Sgd::single(vec![("p".into(), var.clone())], SgdConfig { lr: 0.1, momentum: 0.9, weight_decay: 0.01 });
    let got = run(&mut opt, &var, &[vec![1.0, 2.0], vec![0.5, 0.5]]);
    let mut p = [1.0f64, -1.0];
    let mut buf = [0.0f64; 2];
    for (t, g) in [[1.0, 2.0], [0.5, 0.5]].iter().enumerate() {
        for i in 0..2 {
            let d = g[i] + 0.01 * p[i];
            buf[i] = if t == 0 { d } else { 0.9 * buf[i] + d };
            p[i] -= 0.1 * buf[i];
        }
    }
    close(&got, &p, 1e-12);
}

/// `adjust_learning_rate` of main.py, transcribed.
fn original_lr(step_in: usize, l: usize, epochs: usize, batch: usize, lr: f64) -> f64 {
    let max_steps0 = (epochs * l) as f64;
    let warmup = (10 * l) as f64;
    let base = batch as f64 / 256.0;
    let mut step = step_in as f64;
    if step < warmup {
        base * step / warmup * lr
    } else {
        step -= warmup;
        let max_steps = max_steps0 - warmup;
        let q = 0.5 * (1.0 + (std::f64::consts::PI * step / max_steps).cos());
        let end = base * 0.001;
        (base * q + end * (1.0 - q)) * lr
    }
}

#[test]
fn warmup_cosine_matches_main_py_including_the_offset() {
    let (l, epochs, batch) = (195, 2000, 256);
    let s = WarmupCosine::small(batch, l, epochs);
    // main.py: epoch runs 1..=epochs and step = epoch·L + i, so our 0-based step k is L + k.
    for k in [0usize, 1, 100, 1755, 1756, 50_000, epochs * l - 1] {
        let want = original_lr(k + l, l, epochs, batch, 0.01);
        assert!((s.factor(k) * 0.01 - want).abs() < 1e-15, "step {k}");
    }
    // The first step is at 10 % of the peak, the last goes past the cosine's end (angle > π).
    assert!((s.factor(0) - 0.1).abs() < 1e-12);
    assert!(s.factor(epochs * l - 1) > 0.001, "past π the cosine rises again slightly");
    // ImageNet: no offset; LARS groups multiply by their own rates.
    let inet = WarmupCosine::imagenet(1024, 1251, 300);
    assert_eq!(inet.factor(0), 0.0);
    assert!((inet.factor(12_510) - 4.0).abs() < 1e-12, "peak = batch/256 after 10 epochs");
}

#[test]
fn lambda_ramp_and_probe_schedules() {
    let r = LambdaRamp { steps_per_epoch: 100, warmup_epochs: 10 };
    assert_eq!(r.value(2.0, 0), 0.0);
    assert!((r.value(2.0, 500) - 1.0).abs() < 1e-12);
    assert_eq!(r.value(2.0, 1000), 2.0);
    let e = ExponentialLr::from_to(1e-2, 1e-6, 200);
    assert!((e.lr(200) - 1e-6).abs() < 1e-15);
    assert!((e.lr(1) - 1e-2 * (1e-4f64).powf(1.0 / 200.0)).abs() < 1e-15);
    let m = MultiStepLr { lr0: 1e-3, milestones: vec![1950, 1975], gamma: 0.2 };
    assert_eq!(m.lr(1949), 1e-3);
    assert!((m.lr(1950) - 2e-4).abs() < 1e-15);
    assert!((m.lr(1999) - 4e-5).abs() < 1e-15);
    let c = CosineAnnealing { lr0: 0.3, t_max: 100, eta_min: 0.0 };
    assert!((c.lr(50) - 0.15).abs() < 1e-12);
    assert!(c.lr(100).abs() < 1e-15);
}

/// A warm-up as long as training has no cosine phase: a step past it gets the end of the
/// cosine, a finite rate, not 0/0.
#[test]
fn warmup_as_long_as_training_stays_finite() {
    let s = mixbt::optim::WarmupCosine { step_offset: 0, warmup_epochs: 1, ..mixbt::optim::WarmupCosine::small(64, 15, 1) };
    assert_eq!(s.factor(0), 0.0);
    assert!((s.factor(14) - 0.25 * 14.0 / 15.0).abs() < 1e-12);
    for step in 15..40 {
        let f = s.factor(step);
        assert!(f.is_finite() && (f - 0.25 * 0.001).abs() < 1e-12, "step {step}: {f}");
    }
}

/// The state an optimiser keeps from step to step holds no autograd graph: a gradient from the
/// backward pass still references the graph it was computed in (here through the weights, a
/// variable), and a momentum built from it kept every step's graph alive — a training step of
/// the ImageNet preset grew by 3 GiB each (LARS).
#[test]
fn optimiser_state_holds_no_graph() {
    for dt in [DType::F32, DType::F64] {
        let new_var = || Var::from_tensor(&Tensor::new(&[[1.0f64, -2.0], [0.5, 3.0]], &Device::Cpu).unwrap().to_dtype(dt).unwrap()).unwrap();
        let (a, s, l) = (new_var(), new_var(), new_var());
        let mut opts: Vec<(Box<dyn Optimizer>, &Var)> = vec![
            (Box::new(Adam::single(vec![("w".into(), a.clone())], AdamConfig { weight_decay: 0.1, ..Default::default() })), &a),
            (Box::new(Sgd::single(vec![("w".into(), s.clone())], SgdConfig { weight_decay: 0.1, ..Default::default() })), &s),
            (Box::new(Lars::new(vec![("w".into(), l.clone())], LarsConfig::default())), &l),
        ];
        for (opt, var) in opts.iter_mut() {
            for _ in 0..3 {
                // d(Σ w²)/dw = 2w: computed from the variable, so the gradient tracks it.
                let grads = var.as_tensor().sqr().unwrap().sum_all().unwrap().backward().unwrap();
                assert!(grads.get(var.as_tensor()).unwrap().track_op(), "the test needs a gradient that holds a graph");
                opt.step(&grads).unwrap();
            }
            let state = opt.state_tensors();
            assert!(!state.is_empty());
            for (name, t) in &state {
                assert!(!t.track_op(), "{dt:?}: optimiser state `{name}` holds an autograd graph");
            }
        }
    }
}
