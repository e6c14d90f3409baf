//! The fast CPU kernels against candle's own operations (forward and gradients) and finite
//! differences, for every convolution shape our ResNets use.

use candle_core::{DType, Device, Tensor, Var};
use mixbt::ops;

/// The micro-kernel and the BF16 path are process-wide: a switch while another thread multiplies
/// could change the path under a product half done. The tests that switch take this lock for
/// writing, every other test that multiplies for reading.
static KERNEL_LOCK: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Held by a test that multiplies on the process's kernels without switching them.
fn fixed_kernels() -> std::sync::RwLockReadGuard<'static, ()> {
    KERNEL_LOCK.read().unwrap_or_else(|e| e.into_inner())
}

/// Held by a test that switches the micro-kernel or the BF16 path.
fn switching_kernels() -> std::sync::RwLockWriteGuard<'static, ()> {
    KERNEL_LOCK.write().unwrap_or_else(|e| e.into_inner())
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

fn max_abs(a: &Tensor) -> f32 {
    a.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

/// (N, C, H, W, O, k, stride, pad): the ResNet convolutions (3×3 s1/s2, 1×1 s1/s2, the 7×7 stem).
/// Then shapes large enough for every blocking path of the GEMM (depth > 256, more than 144
/// output channels, one image: the product split by rows over the threads), and stride-1 shapes
/// for the implicit-im2col path with each row-segment width (16-column panels of 2, 4, 8, 16
/// and 32-wide maps, a 1×1 kernel), and for the implicit weight gradient (more than 144 output
/// channels with a partial last tap panel; 4-wide maps over an odd number of images), and maps
/// narrower than 8 read directly from images expanded along kx (4-, 2- and 1-wide), and stride-2
/// convolutions read directly from phase-split images (16- and 8-wide outputs, odd inputs, 1×1),
/// and a Winograd convolution made in bands of tile rows 10 tiles wide.
const SHAPES: [(usize, usize, usize, usize, usize, usize, usize, usize); 21] = [
    (3, 4, 8, 8, 6, 3, 1, 1),
    (3, 4, 8, 8, 6, 3, 2, 1),
    (2, 6, 7, 7, 5, 3, 2, 1),
    (3, 8, 6, 6, 4, 1, 1, 0),
    (3, 8, 6, 6, 4, 1, 2, 0),
    (2, 3, 16, 16, 4, 7, 2, 3),
    (1, 3, 5, 9, 2, 3, 1, 1),
    (1, 20, 10, 10, 150, 3, 1, 1),
    (5, 32, 8, 8, 160, 3, 2, 1),
    (3, 40, 4, 4, 50, 3, 1, 1),
    (2, 32, 16, 16, 20, 3, 1, 1),
    (1, 3, 32, 32, 8, 3, 1, 1),
    (2, 8, 4, 4, 6, 1, 1, 0),
    (2, 5, 8, 2, 7, 3, 1, 1),
    (4, 24, 8, 8, 150, 3, 1, 1),
    (7, 9, 4, 4, 20, 3, 1, 1),
    (2, 4, 16, 1, 5, 3, 1, 1),
    (2, 8, 32, 32, 20, 3, 2, 1),
    (2, 16, 16, 16, 24, 1, 2, 0),
    (2, 5, 15, 15, 7, 3, 2, 1),
    (1, 64, 20, 20, 64, 3, 1, 1),
];

#[test]
fn conv_matches_candle_forward_and_backward() {
    let _g = fixed_kernels();
    let dev = Device::Cpu;
    for (n, c, h, w, o, k, s, p) in SHAPES {
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (n, c, h, w), &dev).unwrap()).unwrap();
        let wt = Var::from_tensor(&Tensor::randn(0f32, 0.5, (o, c, k, k), &dev).unwrap()).unwrap();
        let ours = ops::conv2d(x.as_tensor(), wt.as_tensor(), s, p).unwrap();
        let theirs = x.as_tensor().conv2d(wt.as_tensor(), p, s, 1, 1).unwrap();
        assert_eq!(ours.dims(), theirs.dims());
        let tol = 1e-4 * (1.0 + max_abs(&theirs));
        assert!(max_abs_diff(&ours, &theirs) < tol, "forward {:?}", (n, c, h, w, o, k, s, p));
        // Gradients of a random linear functional of the output.
        let coef = Tensor::randn(0f32, 1.0, ours.dims(), &dev).unwrap();
        let g1 = (ours * &coef).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (theirs * &coef).unwrap().sum_all().unwrap().backward().unwrap();
        for (name, v) in [("input", &x), ("weight", &wt)] {
            let a = g1.get(v).unwrap();
            let b = g2.get(v).unwrap();
            let tol = 1e-4 * (1.0 + max_abs(b));
            assert!(max_abs_diff(a, b) < tol, "{name} gradient {:?}: {}", (n, c, h, w, o, k, s, p), max_abs_diff(a, b));
        }
    }
}

/// Winograd F(2×2, 3×3), the default for 3×3 stride-1 convolutions on the fast kernels, against
/// the direct path and candle (forward and both gradients) for every shape above it takes
/// (partial 16-tile panels, tiles narrower than a vector, one image in bands of tile rows, one
/// chunk split over the threads by ξ) and two more (64 channels on 32×32 maps in bands; a wide
/// layer on 4×4 maps, several images per chunk).
#[test]
fn winograd_matches_direct_and_candle() {
    let _g = fixed_kernels();
    use mixbt::ops::{conv::ConvGeom, winograd};
    if !ops::gemm::fast_kernel() {
        eprintln!("skipped: the Winograd path runs on the fast kernels only (MIXBT_GEMM_FALLBACK is set or the CPU lacks AVX2/FMA)");
        return;
    }
    let fits = |&(n, c, h, w, o, k, s, p): &(usize, usize, usize, usize, usize, usize, usize, usize)| winograd::fits(&ConvGeom::new(&[n, c, h, w], &[o, c, k, k], s, p).unwrap());
    let shapes: Vec<_> = SHAPES.iter().copied().filter(fits).chain([(2, 64, 32, 32, 64, 3, 1, 1), (40, 256, 4, 4, 256, 3, 1, 1)]).collect();
    assert_eq!(shapes.len(), 7, "{shapes:?}");
    assert!(!fits(&(2, 3, 32, 32, 64, 3, 1, 1)) && !fits(&(2, 16, 7, 7, 16, 3, 1, 1)) && !fits(&(2, 16, 8, 8, 16, 3, 2, 1)));
    let dev = Device::Cpu;
    for shape in shapes {
        let (n, c, h, w, o, k, s, p) = shape;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (n, c, h, w), &dev).unwrap()).unwrap();
        let wt = Var::from_tensor(&Tensor::randn(0f32, 0.5, (o, c, k, k), &dev).unwrap()).unwrap();
        let coef = Tensor::randn(0f32, 1.0, (n, o, h, w), &dev).unwrap();
        let grads = |y: &Tensor| {
            let g = (y * &coef).unwrap().sum_all().unwrap().backward().unwrap();
            [x.as_tensor(), wt.as_tensor()].map(|v| g.get(v).unwrap().clone())
        };
        let run = |on: bool| {
            winograd::with_enabled(on, || {
                let before = winograd::runs();
                let y = ops::conv2d(x.as_tensor(), wt.as_tensor(), s, p).unwrap();
                let [gx, gw] = grads(&y);
                (y, gx, gw, winograd::runs() - before)
            })
        };
        let (yw, gxw, gww, runs) = run(true);
        // The forward pass and the input gradient (a convolution with the flipped kernel).
        assert!(runs >= 2, "{shape:?}: the Winograd path ran {runs} times");
        let (yd, gxd, gwd, _) = run(false);
        let theirs = x.as_tensor().conv2d(wt.as_tensor(), p, s, 1, 1).unwrap();
        let [gxc, gwc] = grads(&theirs);
        for (name, ours, direct, candle) in [("forward", &yw, &yd, &theirs), ("input gradient", &gxw, &gxd, &gxc), ("weight gradient", &gww, &gwd, &gwc)] {
            let tol = 1e-4 * (1.0 + max_abs(candle));
            assert!(max_abs_diff(ours, candle) < tol, "{name} {shape:?}: Winograd vs candle {}", max_abs_diff(ours, candle));
            assert!(max_abs_diff(ours, direct) < tol, "{name} {shape:?}: Winograd vs direct {}", max_abs_diff(ours, direct));
        }
    }
}

/// An empty batch gives an empty output, like candle's conv (no panic in the chunk planner).
#[test]
fn conv_of_an_empty_batch_is_empty() {
    let _g = fixed_kernels();
    let dev = Device::Cpu;
    let x = Var::from_tensor(&Tensor::zeros((0, 4, 8, 8), DType::F32, &dev).unwrap()).unwrap();
    let w = Var::from_tensor(&Tensor::randn(0f32, 1.0, (6, 4, 3, 3), &dev).unwrap()).unwrap();
    let y = ops::conv2d(x.as_tensor(), w.as_tensor(), 1, 1).unwrap();
    assert_eq!(y.dims(), &[0, 6, 8, 8]);
    let g = y.sum_all().unwrap().backward().unwrap();
    assert_eq!(g.get(&w).unwrap().dims(), &[6, 4, 3, 3]);
    assert_eq!(max_abs(g.get(&w).unwrap()), 0.0);
}

#[test]
fn conv_gradients_match_finite_differences() {
    let _g = fixed_kernels();
    let dev = Device::Cpu;
    let (n, c, h, w, o, k, s, p) = (2, 3, 6, 6, 4, 3, 2, 1);
    let x64 = Tensor::randn(0f64, 1.0, (n, c, h, w), &dev).unwrap();
    let w64 = Tensor::randn(0f64, 0.5, (o, c, k, k), &dev).unwrap();
    let coef = Tensor::randn(0f64, 1.0, (n, o, 3, 3), &dev).unwrap();
    let f = |xv: &Tensor, wv: &Tensor| -> f64 {
        // Reference value in f64 with candle's conv.
        (xv.conv2d(wv, p, s, 1, 1).unwrap() * &coef).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap()
    };
    let x = Var::from_tensor(&x64.to_dtype(DType::F32).unwrap()).unwrap();
    let wt = Var::from_tensor(&w64.to_dtype(DType::F32).unwrap()).unwrap();
    let y = ops::conv2d(x.as_tensor(), wt.as_tensor(), s, p).unwrap();
    let grads = (y * coef.to_dtype(DType::F32).unwrap()).unwrap().sum_all().unwrap().backward().unwrap();
    let gx: Vec<f32> = grads.get(&x).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let gw: Vec<f32> = grads.get(&wt).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let eps = 1e-4;
    let xs: Vec<f64> = x64.flatten_all().unwrap().to_vec1().unwrap();
    for i in (0..xs.len()).step_by(7) {
        let mut a = xs.clone();
        a[i] += eps;
        let up = f(&Tensor::from_vec(a.clone(), (n, c, h, w), &dev).unwrap(), &w64);
        a[i] -= 2.0 * eps;
        let down = f(&Tensor::from_vec(a, (n, c, h, w), &dev).unwrap(), &w64);
        let fd = (up - down) / (2.0 * eps);
        assert!((fd - gx[i] as f64).abs() < 1e-3 * (1.0 + fd.abs()), "dx[{i}]: {fd} vs {}", gx[i]);
    }
    let ws: Vec<f64> = w64.flatten_all().unwrap().to_vec1().unwrap();
    for i in (0..ws.len()).step_by(5) {
        let mut a = ws.clone();
        a[i] += eps;
        let up = f(&x64, &Tensor::from_vec(a.clone(), (o, c, k, k), &dev).unwrap());
        a[i] -= 2.0 * eps;
        let down = f(&x64, &Tensor::from_vec(a, (o, c, k, k), &dev).unwrap());
        let fd = (up - down) / (2.0 * eps);
        assert!((fd - gw[i] as f64).abs() < 1e-3 * (1.0 + fd.abs()), "dw[{i}]: {fd} vs {}", gw[i]);
    }
}

/// Batch norm (train mode) with candle ops, the reference for the fused kernel.
fn bn_reference(x: &Tensor, w: &Tensor, b: &Tensor, relu: bool) -> Tensor {
    let dims: Vec<usize> = (0..x.rank()).filter(|&d| d != 1).collect();
    let n = (x.elem_count() / x.dim(1).unwrap()) as f64;
    let mean = (x.sum_keepdim(dims.as_slice()).unwrap() / n).unwrap();
    let xc = x.broadcast_sub(&mean).unwrap();
    let var = (xc.sqr().unwrap().sum_keepdim(dims.as_slice()).unwrap() / n).unwrap();
    let shape: Vec<usize> = (0..x.rank()).map(|d| if d == 1 { x.dim(1).unwrap() } else { 1 }).collect();
    let y = xc
        .broadcast_div(&(var + 1e-5).unwrap().sqrt().unwrap())
        .unwrap()
        .broadcast_mul(&w.reshape(shape.as_slice()).unwrap())
        .unwrap()
        .broadcast_add(&b.reshape(shape.as_slice()).unwrap())
        .unwrap();
    if relu {
        y.relu().unwrap()
    } else {
        y
    }
}

#[test]
fn fused_batch_norm_matches_reference() {
    let dev = Device::Cpu;
    for shape in [vec![4usize, 3, 5, 5], vec![6, 7]] {
        for relu in [false, true] {
            let c = shape[1];
            let x = Var::from_tensor(&Tensor::randn(0.3f32, 2.0, shape.as_slice(), &dev).unwrap()).unwrap();
            let w = Var::from_tensor(&Tensor::randn(1f32, 0.5, c, &dev).unwrap()).unwrap();
            let b = Var::from_tensor(&Tensor::randn(0f32, 0.5, c, &dev).unwrap()).unwrap();
            let (ours, mean, var) = ops::batch_norm_train(x.as_tensor(), w.as_tensor(), b.as_tensor(), 1e-5, relu).unwrap();
            let theirs = bn_reference(x.as_tensor(), w.as_tensor(), b.as_tensor(), relu);
            assert!(max_abs_diff(&ours, &theirs) < 1e-4, "forward {shape:?} relu {relu}");
            let dims: Vec<usize> = (0..shape.len()).filter(|&d| d != 1).collect();
            let n = (x.elem_count() / c) as f64;
            let m_ref = (x.as_tensor().sum(dims.as_slice()).unwrap() / n).unwrap();
            assert!(max_abs_diff(&mean, &m_ref) < 1e-5);
            assert!(var.to_vec1::<f32>().unwrap().iter().all(|v| *v > 0.0));
            let coef = Tensor::randn(0f32, 1.0, shape.as_slice(), &dev).unwrap();
            let g1 = (ours * &coef).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (theirs * &coef).unwrap().sum_all().unwrap().backward().unwrap();
            for (name, v) in [("x", &x), ("weight", &w), ("bias", &b)] {
                let d = max_abs_diff(g1.get(v).unwrap(), g2.get(v).unwrap());
                assert!(d < 2e-4, "{name} gradient {shape:?} relu {relu}: {d}");
            }
        }
    }
}

#[test]
fn add_relu_forward_and_backward() {
    let dev = Device::Cpu;
    let a = Var::from_tensor(&Tensor::randn(0f32, 1.0, (3, 4, 5), &dev).unwrap()).unwrap();
    let b = Var::from_tensor(&Tensor::randn(0f32, 1.0, (3, 4, 5), &dev).unwrap()).unwrap();
    let ours = ops::add_relu(a.as_tensor(), b.as_tensor()).unwrap();
    let theirs = (a.as_tensor() + b.as_tensor()).unwrap().relu().unwrap();
    assert_eq!(max_abs_diff(&ours, &theirs), 0.0);
    let coef = Tensor::randn(0f32, 1.0, (3, 4, 5), &dev).unwrap();
    let g1 = (ours * &coef).unwrap().sum_all().unwrap().backward().unwrap();
    let g2 = (theirs * &coef).unwrap().sum_all().unwrap().backward().unwrap();
    for v in [&a, &b] {
        assert_eq!(max_abs_diff(g1.get(v).unwrap(), g2.get(v).unwrap()), 0.0);
    }
}

/// The whole encoder with the fast kernels and with candle's convolutions. Eval-mode batch
/// norm: in train mode, batch statistics of 4 samples amplify rounding differences between two
/// correct summation orders into percent-level gradient differences for some inputs (seen with
/// `matrixmultiply` and our GEMM alike), which is conditioning, not a kernel error. The input
/// is seeded so the test is deterministic.
#[test]
fn model_fast_and_candle_paths_agree() {
    let _g = fixed_kernels();
    use mixbt::model::{encoder, Arch, ConvImpl, EncoderConfig, Stem};
    use mixbt::params::ParamStore;
    let dev = Device::Cpu;
    let mut rng = mixbt::rng::SplitMix64::new(11);
    let xs: Vec<f32> = (0..4 * 3 * 32 * 32).map(|_| rng.next_sym() as f32 * 1.7).collect();
    let x = Tensor::from_vec(xs, (4, 3, 32, 32), &dev).unwrap();
    let run = |imp: ConvImpl| {
        let store = ParamStore::new(3, DType::F32, &dev);
        let mut cfg = EncoderConfig::small(Arch::R18, Stem::Small64, 16, 0.125);
        cfg.backbone.conv_impl = imp;
        let enc = encoder(&cfg, store.var_builder()).unwrap();
        let (_, z) = enc.forward_t(&x, false).unwrap();
        let loss = z.sqr().unwrap().sum_all().unwrap();
        let g = loss.backward().unwrap();
        let gw = g.get(store.get("f.4.0.conv1.weight").unwrap().as_tensor()).unwrap().clone();
        (z, gw)
    };
    let (z1, g1) = run(ConvImpl::Fast);
    let (z2, g2) = run(ConvImpl::Candle);
    assert!(max_abs_diff(&z1, &z2) < 1e-4 * (1.0 + max_abs(&z2)), "z: {} (max {})", max_abs_diff(&z1, &z2), max_abs(&z2));
    let norm = |t: &Tensor| t.sqr().unwrap().sum_all().unwrap().sqrt().unwrap().to_scalar::<f32>().unwrap();
    let rel = norm(&(&g1 - &g2).unwrap()) / norm(&g2);
    assert!(rel < 1e-4, "gradient relative error {rel}");
}

/// Run `f` under every micro-kernel this CPU and process can run (the portable path only in a
/// process started with `MIXBT_GEMM_FALLBACK=1`, as the test command does), restoring the
/// default after; says which paths could not run here.
fn each_kernel(what: &str, f: impl Fn(mixbt::ops::gemm::Kernel)) {
    use mixbt::ops::gemm::{self, Kernel};
    let _g = switching_kernels();
    let default = gemm::kernel();
    let mut skipped = vec![];
    for k in [Kernel::Portable, Kernel::Avx2, Kernel::Avx512] {
        if !gemm::kernel_supported(k) {
            skipped.push(k.name());
            continue;
        }
        assert!(gemm::set_kernel(k));
        assert_eq!(gemm::kernel(), k);
        f(k);
    }
    gemm::set_kernel(default);
    eprintln!("{what}: kernel paths not run on this machine/process: {skipped:?}");
}

/// `mixbt::ops::gemm` against a float64 reference: every layout of A, B and C, accumulation,
/// edges of the 6×16 tile and of the 256/144 blocks, and the pre-packed A with row splits.
#[test]
fn gemm_matches_reference() {
    each_kernel("gemm_matches_reference", |_| check_gemm());
}

/// The AVX2 and AVX-512 micro-kernels give bit-identical products (each element of C sums over
/// k in the same order with FMA), through every B source: packed, conv, conv-transposed, direct;
/// and the AVX-512 weight gradient that reads its im2col matrix in place (`DirectA`) sums like
/// the packed one (3×3 kernels: several depth blocks per image, several images per block, a
/// partial last 12-tap tile and 32-channel panel, the per-thread partial sums and the row split
/// of a large kernel).
#[test]
fn avx2_and_avx512_kernels_agree_bit_for_bit() {
    use mixbt::ops::gemm::{self, Kernel};
    let _g = switching_kernels();
    if !gemm::kernel_supported(Kernel::Avx512) || !gemm::kernel_supported(Kernel::Avx2) {
        eprintln!("skipped: this CPU/process cannot run both the AVX2 and the AVX-512 kernel");
        return;
    }
    let default = gemm::kernel();
    let dev = Device::Cpu;
    // Convolutions exercise the implicit-im2col, direct and transposed B panels.
    for &(n, c, h, w, o, k, stride, pad) in &[(2, 16, 8, 8, 24, 3, 1, 1), (3, 8, 16, 16, 13, 3, 2, 1), (2, 32, 4, 4, 64, 1, 1, 0), (1, 3, 32, 32, 16, 3, 1, 1), (3, 16, 32, 32, 40, 3, 1, 1), (4, 64, 4, 4, 512, 3, 1, 1), (5, 7, 9, 9, 33, 3, 2, 1), (2, 8, 32, 32, 20, 3, 2, 1), (2, 16, 16, 16, 24, 1, 2, 0), (1, 64, 20, 20, 64, 3, 1, 1)] {
        let x = Tensor::randn(0f32, 1.0, (n, c, h, w), &dev).unwrap();
        let wt = Var::from_tensor(&Tensor::randn(0f32, 0.5, (o, c, k, k), &dev).unwrap()).unwrap();
        let xv = Var::from_tensor(&x).unwrap();
        let run = |kern: Kernel| {
            assert!(gemm::set_kernel(kern));
            let y = ops::conv2d(xv.as_tensor(), wt.as_tensor(), stride, pad).unwrap();
            let g = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
            let v = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            (v(&y), v(g.get(xv.as_tensor()).unwrap()), v(g.get(wt.as_tensor()).unwrap()))
        };
        let (a, b) = (run(Kernel::Avx2), run(Kernel::Avx512));
        assert!(a.0 == b.0 && a.1 == b.1 && a.2 == b.2, "conv {n}x{c}x{h}x{w} -> {o} k{k} s{stride}: the kernels differ");
    }
    gemm::set_kernel(default);
}

fn check_gemm() {
    check_gemm_at(ops::Precision::F32);
}

/// [`mixbt::ops::gemm::gemm`] at `prec` against a float64 reference (at BF16: of the operands
/// rounded to bfloat16, whose products are exact, so the tolerance is FP32's; and the result must
/// differ from the FP32 product, i.e. the operands were rounded).
fn check_gemm_at(prec: ops::Precision) {
    use mixbt::ops::gemm;
    let q = |x: f32| if prec == ops::Precision::Bf16 { gemm::round_bf16(x) as f64 } else { x as f64 };
    let mut rounding_seen = prec == ops::Precision::F32;
    let mut seed = 1u64;
    let mut rnd = |len: usize| -> Vec<f32> {
        (0..len)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    };
    let dims = [(1, 1, 1), (5, 7, 15), (6, 8, 16), (7, 9, 17), (13, 300, 40), (150, 257, 33), (300, 20, 70), (20, 600, 3100)];
    for &(m, k, n) in &dims {
        let a = rnd(m * k);
        let b = rnd(k * n);
        let c0 = rnd(m * n);
        for layout in 0..8 {
            let (at, bt, ct) = (layout & 1 == 1, layout & 2 == 2, layout & 4 == 4);
            let (rsa, csa) = if at { (1, m as isize) } else { (k as isize, 1) };
            let (rsb, csb) = if bt { (1, k as isize) } else { (n as isize, 1) };
            let (rsc, csc) = if ct { (1, m as isize) } else { (n as isize, 1) };
            let at_ = |i: usize, p: usize| a[(i as isize * rsa + p as isize * csa) as usize] as f64;
            let bt_ = |p: usize, j: usize| b[(p as isize * rsb + j as isize * csb) as usize] as f64;
            for accumulate in [false, true] {
                let mut c = c0.clone();
                unsafe { gemm::gemm(prec, m, k, n, a.as_ptr(), rsa, csa, b.as_ptr(), rsb, csb, c.as_mut_ptr(), rsc, csc, accumulate) };
                for i in 0..m {
                    for j in 0..n {
                        let ci = (i as isize * rsc + j as isize * csc) as usize;
                        let want = (0..k).map(|p| q(at_(i, p) as f32) * q(bt_(p, j) as f32)).sum::<f64>() + if accumulate { c0[ci] as f64 } else { 0.0 };
                        let got = c[ci] as f64;
                        assert!((got - want).abs() < 1e-4 * (1.0 + k as f64).sqrt(), "{prec} {m}x{k}x{n} layout {layout} acc {accumulate} at ({i},{j}): {got} vs {want}");
                        let exact = (0..k).map(|p| at_(i, p) * bt_(p, j)).sum::<f64>() + if accumulate { c0[ci] as f64 } else { 0.0 };
                        rounding_seen |= (got - exact).abs() > 1e-5 * (1.0 + k as f64).sqrt();
                    }
                }
            }
        }
        // Pre-packed A (row-major: the register-transposing packer; column-major: the
        // element-wise one), C split into row blocks as the convolution does.
        for at in [false, true] {
            let (rsa, csa) = if at { (1, m as isize) } else { (k as isize, 1) };
            let pa = unsafe { gemm::PackedA::new(m, k, a.as_ptr(), rsa, csa) };
            let per = gemm::row_split(m, 3);
            let mut c = vec![f32::NAN; m * n];
            for r0 in (0..m).step_by(per) {
                let rows = per.min(m - r0);
                unsafe { gemm::sgemm_packed(&pa, r0, rows, n, gemm::BSource::Raw { b: b.as_ptr(), rsb: n as isize, csb: 1 }, c[r0 * n..].as_mut_ptr(), n, false, prec) };
            }
            for i in 0..m {
                for j in 0..n {
                    let want = (0..k).map(|p| q(a[(i as isize * rsa + p as isize * csa) as usize]) * q(b[p * n + j])).sum::<f64>();
                    assert!((c[i * n + j] as f64 - want).abs() < 1e-4 * (1.0 + k as f64).sqrt(), "{prec} packed {m}x{k}x{n} (A transposed: {at}) at ({i},{j})");
                }
            }
        }
    }
    assert!(rounding_seen, "{prec}: no product differs from the FP32 one");
}

/// Run `f` under every BF16 path this CPU and process can run: `vdpbf16ps`, and the emulation
/// (rounded operands) under each FP32 micro-kernel; says which could not run.
fn each_bf16_path(what: &str, f: impl Fn(&str)) {
    use mixbt::ops::gemm::{self, Bf16Path, Kernel};
    let _g = switching_kernels();
    let (default, default_bf16) = (gemm::kernel(), gemm::bf16_path());
    let mut skipped = vec![];
    if gemm::set_bf16_path(Bf16Path::Avx512Bf16) {
        assert_eq!(gemm::bf16_path(), Bf16Path::Avx512Bf16);
        f("avx512bf16");
    } else {
        skipped.push("avx512bf16".to_string());
    }
    assert!(gemm::set_bf16_path(Bf16Path::Emulated));
    for k in [Kernel::Portable, Kernel::Avx2, Kernel::Avx512] {
        if gemm::set_kernel(k) && gemm::kernel() == k {
            f(&format!("emulated on {}", k.name()));
        } else {
            skipped.push(format!("emulated on {}", k.name()));
        }
    }
    gemm::set_kernel(default);
    gemm::set_bf16_path(default_bf16);
    eprintln!("{what}: BF16 paths not run on this machine/process: {skipped:?}");
}

#[test]
fn bf16_gemm_matches_reference_on_rounded_operands() {
    each_bf16_path("bf16_gemm_matches_reference_on_rounded_operands", |_| check_gemm_at(ops::Precision::Bf16));
}

/// A direct BF16 convolution (forward, input and weight gradient) equals candle's FP32
/// convolution of the operands rounded to bfloat16 (the output gradient is BF16-exact here, so
/// the backward products round nothing else): every product is exact, only the summation order
/// differs. (Winograd rounds its transformed operands instead: `bf16_winograd_close_to_fp32`.)
#[test]
fn bf16_conv_matches_candle_on_rounded_operands() {
    let dev = Device::Cpu;
    let r = |t: &Tensor| t.to_dtype(DType::BF16).unwrap().to_dtype(DType::F32).unwrap();
    each_bf16_path("bf16_conv_matches_candle_on_rounded_operands", |path| {
        for (n, c, h, w, o, k, s, p) in SHAPES {
            let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (n, c, h, w), &dev).unwrap()).unwrap();
            let wt = Var::from_tensor(&Tensor::randn(0f32, 0.5, (o, c, k, k), &dev).unwrap()).unwrap();
            let (xr, wr) = (Var::from_tensor(&r(x.as_tensor())).unwrap(), Var::from_tensor(&r(wt.as_tensor())).unwrap());
            let direct = |f: &dyn Fn() -> Tensor| ops::winograd::with_enabled(false, f);
            let ours = direct(&|| ops::with_precision(ops::Precision::Bf16, || ops::conv2d(x.as_tensor(), wt.as_tensor(), s, p)).unwrap());
            let theirs = xr.as_tensor().conv2d(wr.as_tensor(), p, s, 1, 1).unwrap();
            let fp32 = direct(&|| ops::conv2d(x.as_tensor(), wt.as_tensor(), s, p).unwrap());
            let shape = (n, c, h, w, o, k, s, p);
            let tol = 1e-4 * (1.0 + max_abs(&theirs));
            assert!(max_abs_diff(&ours, &theirs) < tol, "{path}: forward {shape:?}");
            assert!(max_abs_diff(&ours, &fp32) > tol, "{path}: forward {shape:?} equals the FP32 one");
            let coef = r(&Tensor::randn(0f32, 1.0, ours.dims(), &dev).unwrap());
            let g1 = (ours * &coef).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (theirs * &coef).unwrap().sum_all().unwrap().backward().unwrap();
            for (name, a, b) in [("input", &x, &xr), ("weight", &wt, &wr)] {
                let (a, b) = (g1.get(a).unwrap(), g2.get(b).unwrap());
                let tol = 1e-4 * (1.0 + max_abs(b));
                assert!(max_abs_diff(a, b) < tol, "{path}: {name} gradient {shape:?}: {}", max_abs_diff(a, b));
            }
        }
    });
}

/// BF16 Winograd convolutions (the default for 3×3 stride-1 layers on the fast kernels) round
/// the transformed operands: forward and both gradients stay within BF16's error of the FP32
/// convolution (2 % of the largest value; the measured worst case is printed), differ from it,
/// and ran as Winograd on every BF16 path.
#[test]
fn bf16_winograd_close_to_fp32() {
    use mixbt::ops::{conv::ConvGeom, winograd};
    if !ops::gemm::fast_kernel() {
        eprintln!("skipped: the Winograd path runs on the fast kernels only (MIXBT_GEMM_FALLBACK is set or the CPU lacks AVX2/FMA)");
        return;
    }
    let dev = Device::Cpu;
    let fits = |&(n, c, h, w, o, k, s, p): &(usize, usize, usize, usize, usize, usize, usize, usize)| winograd::fits(&ConvGeom::new(&[n, c, h, w], &[o, c, k, k], s, p).unwrap());
    let shapes: Vec<_> = SHAPES.iter().copied().filter(fits).chain([(2, 64, 32, 32, 64, 3, 1, 1)]).collect();
    let worst = std::sync::Mutex::new(0f32);
    each_bf16_path("bf16_winograd_close_to_fp32", |path| {
        if !ops::gemm::fast_kernel() {
            return;
        }
        for (n, c, h, w, o, k, s, p) in shapes.iter().copied() {
            let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (n, c, h, w), &dev).unwrap()).unwrap();
            let wt = Var::from_tensor(&Tensor::randn(0f32, 0.5, (o, c, k, k), &dev).unwrap()).unwrap();
            let coef = Tensor::randn(0f32, 1.0, (n, o, h, w), &dev).unwrap();
            let run = |prec| {
                winograd::with_enabled(true, || {
                    let before = winograd::runs();
                    let y = ops::with_precision(prec, || ops::conv2d(x.as_tensor(), wt.as_tensor(), s, p)).unwrap();
                    let g = (&y * &coef).unwrap().sum_all().unwrap().backward().unwrap();
                    let [gx, gw] = [x.as_tensor(), wt.as_tensor()].map(|v| g.get(v).unwrap().clone());
                    ([y, gx, gw], winograd::runs() - before)
                })
            };
            let (bf, runs) = run(ops::Precision::Bf16);
            assert!(runs >= 2, "{path}: {:?}: the Winograd path ran {runs} times", (n, c, h, w, o));
            let (fp, _) = run(ops::Precision::F32);
            for (name, a, b) in [("forward", &bf[0], &fp[0]), ("input gradient", &bf[1], &fp[1]), ("weight gradient", &bf[2], &fp[2])] {
                let rel = max_abs_diff(a, b) / max_abs(b);
                let mut wst = worst.lock().unwrap();
                *wst = wst.max(rel);
                assert!(rel < 2e-2, "{path}: {name} {:?}: {rel} of the largest value from FP32", (n, c, h, w, o));
                if name == "forward" {
                    assert!(rel > 1e-6, "{path}: {name} {:?} equals the FP32 one", (n, c, h, w, o));
                }
            }
        }
    });
    eprintln!("bf16_winograd_close_to_fp32: worst difference {:.2e} of the largest value", worst.into_inner().unwrap());
}

/// The emulated BF16 path (rounded operands on the FP32 kernels, each pair of depths added odd
/// first) gives the `vdpbf16ps` path's numbers bit for bit: the same convolutions and gradients,
/// on every FP32 kernel. (Needs a CPU with AVX512-BF16.)
#[test]
fn bf16_native_and_emulated_agree_bit_for_bit() {
    use mixbt::ops::gemm::{self, Bf16Path, Kernel};
    let _g = switching_kernels();
    if !gemm::bf16_path_supported(Bf16Path::Avx512Bf16) {
        eprintln!("skipped: this CPU has no AVX512-BF16 (only the emulated BF16 path runs here)");
        return;
    }
    let (default, default_bf16) = (gemm::kernel(), gemm::bf16_path());
    let dev = Device::Cpu;
    for (n, c, h, w, o, k, stride, pad) in SHAPES {
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (n, c, h, w), &dev).unwrap()).unwrap();
        let wt = Var::from_tensor(&Tensor::randn(0f32, 0.5, (o, c, k, k), &dev).unwrap()).unwrap();
        let run = |path: Bf16Path| {
            assert!(gemm::set_bf16_path(path));
            let y = ops::with_precision(ops::Precision::Bf16, || ops::conv2d(x.as_tensor(), wt.as_tensor(), stride, pad)).unwrap();
            let g = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
            let v = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            (v(&y), v(g.get(x.as_tensor()).unwrap()), v(g.get(wt.as_tensor()).unwrap()))
        };
        let native = run(Bf16Path::Avx512Bf16);
        for kern in [Kernel::Avx2, Kernel::Avx512] {
            if !gemm::set_kernel(kern) {
                continue;
            }
            let emulated = run(Bf16Path::Emulated);
            assert!(native == emulated, "conv {:?} on {}: the BF16 paths differ", (n, c, h, w, o, k, stride, pad), kern.name());
        }
        gemm::set_kernel(default);
    }
    gemm::set_bf16_path(default_bf16);
}

/// The fused eval-mode batch norm (`[relu](x·scale + shift)` per channel) against candle's
/// broadcast ops: output bit for bit, and the gradients of x, scale and shift.
#[test]
fn channel_affine_matches_candle() {
    let dev = Device::Cpu;
    for (shape, relu) in [(vec![3usize, 5, 4, 6], true), (vec![3, 5, 4, 6], false), (vec![7, 9], true)] {
        let c = shape[1];
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, shape.as_slice(), &dev).unwrap()).unwrap();
        let s = Var::from_tensor(&Tensor::randn(0f32, 1.0, c, &dev).unwrap()).unwrap();
        let t = Var::from_tensor(&Tensor::randn(0f32, 1.0, c, &dev).unwrap()).unwrap();
        let ours = ops::channel_affine(x.as_tensor(), s.as_tensor(), t.as_tensor(), relu).unwrap();
        let mut bs = vec![1; shape.len()];
        bs[1] = c;
        let mut theirs = x
            .as_tensor()
            .broadcast_mul(&s.as_tensor().reshape(bs.as_slice()).unwrap())
            .unwrap()
            .broadcast_add(&t.as_tensor().reshape(bs.as_slice()).unwrap())
            .unwrap();
        if relu {
            theirs = theirs.relu().unwrap();
        }
        assert_eq!(max_abs_diff(&ours, &theirs), 0.0, "forward {shape:?} relu {relu}");
        let coef = Tensor::randn(0f32, 1.0, shape.as_slice(), &dev).unwrap();
        let g1 = (ours * &coef).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (theirs * &coef).unwrap().sum_all().unwrap().backward().unwrap();
        for (name, v) in [("x", &x), ("scale", &s), ("shift", &t)] {
            let (a, b) = (g1.get(v).unwrap(), g2.get(v).unwrap());
            assert!(max_abs_diff(a, b) < 1e-4 * (1.0 + max_abs(b)), "{name} gradient {shape:?} relu {relu}: {}", max_abs_diff(a, b));
        }
    }
}

/// The fused ReLUs propagate NaN as PyTorch's `relu` does (a NaN must not become a silent 0).
#[test]
fn fused_relus_keep_nan() {
    let dev = Device::Cpu;
    let v = vec![f32::NAN, -1.0, 2.0, 0.5, -0.25, 3.0, f32::NAN, 1.0];
    let x = Tensor::from_vec(v.clone(), (1, 2, 2, 2), &dev).unwrap();
    let zero = x.zeros_like().unwrap();
    let y: Vec<f32> = mixbt::ops::add_relu(&x, &zero).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let want = |v: &[f32]| v.iter().map(|&a| if a < 0.0 { 0.0 } else { a }).collect::<Vec<f32>>();
    let same = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(p, q)| p == q || (p.is_nan() && q.is_nan()));
    assert!(same(&y, &want(&v)), "add_relu {y:?}");
    let (one, nil) = (Tensor::ones(2, DType::F32, &dev).unwrap(), Tensor::zeros(2, DType::F32, &dev).unwrap());
    let y: Vec<f32> = mixbt::ops::channel_affine(&x, &one, &nil, true).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    assert!(same(&y, &want(&v)), "channel_affine {y:?}");
    assert!(y[0].is_nan() && y[6].is_nan() && y[1] == 0.0);
}

/// Inside `with_weight_cache` (nested too) each kernel is packed once and reused (the scope holds
/// one forward and one flipped pack of a kernel used twice): the same outputs and gradients, bit
/// for bit, as without the cache; after the scope a kernel changed in place is packed afresh.
#[test]
fn weight_cache_gives_the_same_numbers_and_ends_with_its_scope() {
    let _g = fixed_kernels();
    let dev = Device::Cpu;
    let w = Var::from_tensor(&Tensor::randn(0f32, 0.5, (24, 16, 3, 3), &dev).unwrap()).unwrap();
    let xa = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 16, 8, 8), &dev).unwrap()).unwrap();
    let xb = Var::from_tensor(&Tensor::randn(0f32, 1.0, (3, 16, 8, 8), &dev).unwrap()).unwrap();
    let v = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let run = || {
        let ya = ops::conv2d(xa.as_tensor(), w.as_tensor(), 1, 1).unwrap();
        let yb = ops::conv2d(xb.as_tensor(), w.as_tensor(), 1, 1).unwrap();
        let loss = (ya.sqr().unwrap().sum_all().unwrap() + yb.sum_all().unwrap()).unwrap();
        let g = loss.backward().unwrap();
        [v(&ya), v(&yb), v(g.get(w.as_tensor()).unwrap()), v(g.get(xa.as_tensor()).unwrap()), v(g.get(xb.as_tensor()).unwrap())]
    };
    let plain = run();
    let cached = ops::with_weight_cache(|| {
        let out = ops::with_weight_cache(run);
        // Two uses, one kernel: packed once for the forward passes and, where the input
        // gradient is a flipped forward convolution (the fast kernels), once for that.
        assert_eq!(ops::conv::cached_kernels(), if ops::gemm::fast_kernel() { 2 } else { 1 });
        out
    });
    assert!(plain == cached, "the cached kernels changed the numbers");
    assert_eq!(ops::conv::cached_kernels(), 0, "the cache outlived its scope");
    // The scope is over: a kernel updated in place must not be served from the cache.
    w.set(&(w.as_tensor() * 2.0).unwrap()).unwrap();
    let ours = ops::conv2d(xa.as_tensor(), w.as_tensor(), 1, 1).unwrap();
    let theirs = xa.as_tensor().conv2d(w.as_tensor(), 1, 1, 1, 1).unwrap();
    assert!(max_abs_diff(&ours, &theirs) < 1e-4 * (1.0 + max_abs(&theirs)));
}

const BF16_CHILD: &str = "MIXBT_BF16_PATH_CHILD";

/// In a process started by `the_bf16_path_is_chosen_once_and_can_be_named`: the path in use is
/// the one the parent expects (`MIXBT_BF16_PATH_CHILD`), asked for before any product ran.
#[test]
#[ignore = "a child process of the_bf16_path_is_chosen_once_and_can_be_named"]
fn bf16_path_child() {
    let Ok(want) = std::env::var(BF16_CHILD) else { return };
    let path = ops::gemm::bf16_path();
    assert!(ops::gemm::bf16_path_supported(path));
    assert_eq!(ops::gemm::bf16_path(), path, "decided once");
    if want != "any" {
        assert_eq!(path.name(), want);
    }
}

/// `MIXBT_GEMM_BF16` names the BF16 path; unset, a CPU with AVX512-BF16 times the two and takes
/// either (the same numbers), a CPU without it emulates.
#[test]
fn the_bf16_path_is_chosen_once_and_can_be_named() {
    use mixbt::ops::gemm::{bf16_path_supported, Bf16Path};
    let native = bf16_path_supported(Bf16Path::Avx512Bf16);
    let mut cases = vec![(Some("emulate"), "emulated"), (None, if native { "any" } else { "emulated" })];
    if native {
        cases.push((Some("avx512bf16"), "avx512bf16"));
    }
    for (env, want) in cases {
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", "bf16_path_child", "--ignored", "--test-threads", "1"]).env(BF16_CHILD, want).env_remove("MIXBT_GEMM_BF16");
        if let Some(v) = env {
            cmd.env("MIXBT_GEMM_BF16", v);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "MIXBT_GEMM_BF16={env:?}: {}", String::from_utf8_lossy(&out.stdout));
        assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"), "{}", String::from_utf8_lossy(&out.stdout));
    }
}
