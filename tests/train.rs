//! The pre-trainer: resume equals an uninterrupted run, NaN stops the run and keeps the last good
//! checkpoint, k-NN against brute force, λ_reg control, history as a table.

mod common;

use candle_core::{DType, Device, Tensor};
use mixbt::eval::{knn_accuracy, Features, KnnConfig};
use mixbt::train::{PretrainOptions, Pretrainer};

fn opts(out: Option<&std::path::Path>) -> PretrainOptions {
    PretrainOptions { out_dir: out.map(|p| p.to_path_buf()), skip_random_init_knn: true, ..Default::default() }
}

fn params(t: &Pretrainer) -> Vec<(String, Vec<f32>)> {
    t.params().all().into_iter().map(|(k, v)| (k, v.as_tensor().to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1().unwrap())).collect()
}

#[test]
fn resumed_run_equals_uninterrupted_run() {
    let recipe = common::tiny_recipe(64, 2); // 4 steps per epoch, 8 steps
    let dir = tempfile::tempdir().unwrap();
    // Uninterrupted.
    let mut a = Pretrainer::new(recipe.clone(), opts(None)).unwrap();
    while !a.finished() {
        a.step().unwrap();
    }
    assert_eq!(a.steps_done(), 8);
    // Interrupted after 5 steps (mid-epoch), checkpointed, resumed in a fresh trainer.
    let mut b = Pretrainer::new(recipe, opts(Some(dir.path()))).unwrap();
    for _ in 0..5 {
        b.step().unwrap();
    }
    let ck = b.save_checkpoint().unwrap();
    drop(b);
    assert!(ck.join("model.safetensors").is_file() && ck.join("optimizer.safetensors").is_file() && ck.join("state.json").is_file());
    let mut c = Pretrainer::resume(dir.path(), opts(Some(dir.path()))).unwrap();
    assert_eq!((c.steps_done(), c.epochs_done()), (5, 1));
    while !c.finished() {
        c.step().unwrap();
    }
    assert_eq!(params(&a), params(&c), "parameters and buffers after resume");
    let la: Vec<(usize, f64, f64)> = a.history().rows.iter().map(|r| (r.step, r.loss, r.alpha)).collect();
    let lc: Vec<(usize, f64, f64)> = c.history().rows.iter().map(|r| (r.step, r.loss, r.alpha)).collect();
    assert_eq!(la, lc, "loss and α of every step");
    // The BN counters went up three times per step (views A, B and the mixed batch).
    let nbt = a.params().get("f.1.num_batches_tracked").unwrap().as_tensor().to_scalar::<i64>().unwrap();
    assert_eq!(nbt, 24);
}

#[test]
fn nan_stops_the_run_and_keeps_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = Pretrainer::new(common::tiny_recipe(64, 2), opts(Some(dir.path()))).unwrap();
    for _ in 0..4 {
        t.step().unwrap();
    }
    let good = t.save_checkpoint().unwrap();
    let nan = Tensor::full(f32::NAN, (16, 3, 32, 32), &Device::Cpu).unwrap();
    let err = t.step_on(&nan, &nan).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, mixbt::Error::NonFinite(_)), "{msg}");
    assert!(msg.contains("step 5") && msg.contains(&good.display().to_string()), "{msg}");
    // The checkpoint is intact and resumable.
    let r = Pretrainer::resume(dir.path(), opts(Some(dir.path()))).unwrap();
    assert_eq!(r.steps_done(), 4);
    assert!(!std::fs::read_dir(dir.path().join("checkpoints")).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().contains(".tmp")));
}

#[test]
fn lambda_reg_override_and_plain_barlow_twins() {
    let mut r = common::tiny_recipe(32, 1);
    let mut t = Pretrainer::new(r.clone(), opts(None)).unwrap();
    assert_eq!(t.lambda_reg(), 4.0);
    let s = t.step().unwrap();
    assert!(s.loss_reg > 0.0 && (s.loss - s.loss_bt - s.loss_reg).abs() < 1e-6 * s.loss.abs());
    assert!((0.0..=1.0).contains(&s.alpha));
    t.set_lambda_reg(Some(0.0));
    let s = t.step().unwrap();
    assert_eq!(s.loss_reg, 0.0);
    assert_eq!(s.lambda_reg, 0.0);
    // Plain BT: no mixed pass (α is NaN, BN counted twice per step).
    r.is_mixup = false;
    let mut p = Pretrainer::new(r, opts(None)).unwrap();
    let s = p.step().unwrap();
    assert!(s.alpha.is_nan() && s.loss_reg == 0.0);
    assert_eq!(p.params().get("f.1.num_batches_tracked").unwrap().as_tensor().to_scalar::<i64>().unwrap(), 2);
    // The history is a DataFrame with the documented columns.
    let df = t.history().to_dataframe().unwrap();
    for c in ["step", "epoch", "loss_bt", "loss_reg", "loss", "lr", "alpha", "knn_top1"] {
        assert!(df.column(c).is_ok(), "column {c}");
    }
    assert_eq!(df.height(), 2);
}

#[test]
fn imagenet_recipe_ramps_lambda_reg() {
    let mut r = common::tiny_recipe(64, 20);
    r.lambda_reg_warmup_epochs = Some(10);
    r.loss.lambda_reg = 2.0;
    let t = Pretrainer::new(r, opts(None)).unwrap();
    assert_eq!(t.lambda_reg(), 0.0, "step 0 of the ramp");
    let lrs = t.lrs_at(0);
    assert_eq!(lrs.len(), 1);
}

/// Brute-force weighted k-NN, written from the description of main.py's test().
fn brute_knn(bank: &[Vec<f32>], labels: &[usize], test: &[Vec<f32>], c: usize, k: usize, t: f32) -> Vec<usize> {
    test.iter()
        .map(|q| {
            let mut sims: Vec<(f32, usize)> = bank.iter().zip(labels).map(|(b, &l)| (q.iter().zip(b).map(|(x, y)| x * y).sum(), l)).collect();
            sims.sort_by(|a, b| b.0.total_cmp(&a.0));
            let mut score = vec![0f64; c];
            for (s, l) in sims.iter().take(k) {
                score[*l] += (s / t).exp() as f64;
            }
            (0..c).max_by(|&a, &b| score[a].total_cmp(&score[b]).then(b.cmp(&a))).unwrap()
        })
        .collect()
}

#[test]
fn knn_matches_brute_force() {
    let mut r = mixbt::rng::SplitMix64::new(5);
    let (n, m, d, c) = (300, 50, 16, 7);
    let mut unit = |rows: usize| -> Vec<Vec<f32>> {
        (0..rows)
            .map(|_| {
                let v: Vec<f32> = (0..d).map(|_| r.next_sym() as f32).collect();
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.iter().map(|x| x / norm).collect()
            })
            .collect()
    };
    let bank = unit(n);
    let test = unit(m);
    let labels: Vec<usize> = (0..n).map(|i| (i * 7 + i / 3) % c).collect();
    let test_labels: Vec<usize> = (0..m).map(|i| i % c).collect();
    let t = |v: &Vec<Vec<f32>>| Tensor::from_vec(v.concat(), (v.len(), d), &Device::Cpu).unwrap();
    let bf = Features { features: t(&bank), labels: labels.clone(), num_classes: c };
    let tf = Features { features: t(&test), labels: test_labels.clone(), num_classes: c };
    for k in [1, 5, 200] {
        let cfg = KnnConfig { k, temperature: 0.5, batch_size: 16 };
        let preds = mixbt::eval::knn_predict(&bf, &tf.features, &cfg).unwrap();
        let want = brute_knn(&bank, &labels, &test, c, k, 0.5);
        let top1: Vec<usize> = preds.iter().map(|p| p[0]).collect();
        assert_eq!(top1, want, "k = {k}");
        let acc = knn_accuracy(&bf, &tf, &cfg).unwrap();
        let want_acc = 100.0 * want.iter().zip(&test_labels).filter(|(a, b)| a == b).count() as f64 / m as f64;
        assert!((acc.top1 - want_acc).abs() < 1e-9);
        assert!(acc.top5 >= acc.top1);
    }
}
