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
    let la: Vec<(usize, f64, f64)> = a.history().rows.iter().map(|r| (r.step, r.loss, r.metric("alpha"))).collect();
    let lc: Vec<(usize, f64, f64)> = c.history().rows.iter().map(|r| (r.step, r.loss, r.metric("alpha"))).collect();
    assert_eq!(la, lc, "loss and α of every step");
    // The BN counters went up three times per step (views A, B and the mixed batch).
    let nbt = a.params().get("f.1.num_batches_tracked").unwrap().as_tensor().to_scalar::<i64>().unwrap();
    assert_eq!(nbt, 24);
}

#[test]
fn wall_time_counts_every_sitting_of_a_resumed_run() {
    use mixbt::train::checkpoint::CheckpointState;
    let recipe = common::tiny_recipe(64, 2); // 4 steps per epoch, 8 steps
    let dir = tempfile::tempdir().unwrap();
    // First sitting: a time budget that ends it after its first step, with a checkpoint.
    let mut a = Pretrainer::new(recipe, PretrainOptions { time_budget: Some(std::time::Duration::from_nanos(1)), ..opts(Some(dir.path())) }).unwrap();
    let s1 = a.fit().unwrap();
    assert!(s1.steps < 8 && s1.wall_seconds > 0.0, "{s1:?}");
    drop(a);
    let w1 = CheckpointState::read(&mixbt::train::checkpoint::resolve(dir.path()).unwrap()).unwrap().wall_seconds;
    assert!(w1 > 0.0 && w1 <= s1.wall_seconds, "the checkpoint's {w1} s against the sitting's {} s", s1.wall_seconds);
    // Second sitting, in a fresh trainer: its summary counts both.
    let t0 = std::time::Instant::now();
    let mut b = Pretrainer::resume(dir.path(), opts(Some(dir.path()))).unwrap();
    assert_eq!(b.wall_seconds(), w1);
    let s2 = b.fit().unwrap();
    let e2 = t0.elapsed().as_secs_f64();
    assert_eq!(s2.steps, 8);
    assert!(s2.wall_seconds > w1 && s2.wall_seconds <= w1 + e2, "{} s after {w1} s and a sitting of {e2} s", s2.wall_seconds);
    let on_disk: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(on_disk["wall_seconds"].as_f64(), Some(s2.wall_seconds));
    // A second `fit` of the same trainer adds its own time, not the gap between the two.
    let w2 = b.wall_seconds();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let t3 = std::time::Instant::now();
    let s3 = b.fit().unwrap();
    let e3 = t3.elapsed().as_secs_f64();
    assert!(s3.wall_seconds > w2 && s3.wall_seconds - w2 <= e3, "{w2} s, then {} s after a call of {e3} s", s3.wall_seconds);
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
    let m = |s: &mixbt::train::StepStats, n: &str| s.metric(n);
    assert!(m(&s, "loss_reg") > 0.0 && (s.loss - m(&s, "loss_bt") - m(&s, "loss_reg")).abs() < 1e-6 * s.loss.abs());
    assert!((0.0..=1.0).contains(&m(&s, "alpha")));
    t.set_lambda_reg(Some(0.0)).unwrap();
    let s = t.step().unwrap();
    assert_eq!(m(&s, "loss_reg"), 0.0);
    assert_eq!(m(&s, "lambda_reg"), 0.0);
    // Plain BT: no mixed pass (α is NaN, BN counted twice per step).
    r.barlow_twins_mut().unwrap().is_mixup = false;
    let mut p = Pretrainer::new(r, opts(None)).unwrap();
    let s = p.step().unwrap();
    assert!(m(&s, "alpha").is_nan() && m(&s, "loss_reg") == 0.0);
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
    // 32 images, batch 16: 2 steps per epoch, so the 10-epoch ramp spans 20 steps.
    let mut r = common::tiny_recipe(32, 20);
    r.barlow_twins_mut().unwrap().lambda_reg_warmup_epochs = Some(10);
    r.set_lambda_reg(2.0).unwrap();
    let mut t = Pretrainer::new(r, opts(None)).unwrap();
    assert_eq!(t.steps_per_epoch(), 2);
    assert_eq!(t.lrs_at(0).len(), 1);
    // adjust_mixup_scale: λ·step / (10·len(loader)) below the warm-up, then λ.
    let ramp = |step: usize| if step < 20 { 2.0 * step as f64 / 20.0 } else { 2.0 };
    for step in 0..24 {
        assert_eq!(t.lambda_reg(), ramp(step), "λ_reg in force at step {step}");
        let s = t.step().unwrap();
        assert_eq!(s.metric("lambda_reg"), ramp(step), "history row of step {step}");
        assert!(s.metric("alpha").is_finite(), "the mixed pass runs from step 0, even at λ_reg 0");
    }
    assert_eq!(t.lambda_reg(), 2.0);
    // An override wins over the ramp, and `None` returns to it.
    t.set_lambda_reg(Some(0.5)).unwrap();
    assert_eq!(t.lambda_reg(), 0.5);
    t.set_lambda_reg(None).unwrap();
    assert_eq!(t.lambda_reg(), 2.0);
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
        let cfg = KnnConfig { k, temperature: 0.5, batch_size: 16, majority_k: 5 };
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

#[test]
fn a_shape_error_during_a_step_is_reported_as_such() {
    let mut t = Pretrainer::new(common::tiny_recipe(64, 1), opts(None)).unwrap();
    // One-channel images: the stem convolution cannot take them.
    let bad = Tensor::zeros((16, 1, 32, 32), DType::F32, &Device::Cpu).unwrap();
    let err = t.step_on(&bad, &bad).unwrap_err();
    let msg = err.to_string();
    assert!(!matches!(err, mixbt::Error::NonFinite(_) | mixbt::Error::ZeroVariance(_)), "{msg}");
    assert!(msg.contains("[16, 1, 32, 32]"), "the message gives the mismatched shape: {msg}");
    assert!(!msg.contains("NaN") && !msg.contains("non-finite"), "{msg}");
    // Views of different batch sizes: a shape error from the loss, not a NaN.
    let a = Tensor::randn(0f32, 1.0, (16, 3, 32, 32), &Device::Cpu).unwrap();
    let b = Tensor::randn(0f32, 1.0, (8, 3, 32, 32), &Device::Cpu).unwrap();
    let err = t.step_on(&a, &b).unwrap_err();
    assert!(!matches!(err, mixbt::Error::NonFinite(_) | mixbt::Error::ZeroVariance(_)), "{err}");
    assert_eq!(t.steps_done(), 0, "a failed step is not counted");
}

#[test]
fn recipes_round_trip_through_files_and_decide_is_mixup_in_one_place() {
    let dir = tempfile::tempdir().unwrap();
    for r in mixbt::train::presets::all() {
        if let Some(bt) = r.barlow_twins() {
            assert_eq!(bt.is_mixup, bt.loss.lambda_reg != 0.0, "{}", r.name);
        }
        let p = dir.path().join(format!("{}.json", r.name));
        std::fs::write(&p, r.to_json().unwrap()).unwrap();
        assert_eq!(mixbt::train::Recipe::from_file(&p).unwrap(), r, "{}", r.name);
    }
    let mut r = mixbt::train::presets::quickstart();
    r.set_lambda_reg(0.0).unwrap();
    assert!(!r.barlow_twins().unwrap().is_mixup && r.lambda_reg() == Some(0.0));
    r.set_lambda_reg(0.25).unwrap();
    assert!(r.barlow_twins().unwrap().is_mixup && r.lambda_reg() == Some(0.25));
    // A run folder stands for its recipe.json; a broken file names itself.
    std::fs::write(dir.path().join("recipe.json"), r.to_json().unwrap()).unwrap();
    assert_eq!(mixbt::train::Recipe::from_file(dir.path()).unwrap(), r);
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"name\": 3}").unwrap();
    let msg = mixbt::train::Recipe::from_file(&bad).unwrap_err().to_string();
    assert!(msg.contains("bad.json") && msg.contains("not a mixbt recipe"), "{msg}");
}

#[test]
fn knn_eval_is_the_bank_and_test_features_under_the_eval_transform() {
    let mut r = common::tiny_recipe(64, 1);
    r.data.bank_subset = Some(48);
    r.data.test_subset = Some(30);
    let t = Pretrainer::new(r.clone(), opts(None)).unwrap();
    // data::open honours the built-in set's config and the subsets.
    assert_eq!(mixbt::data::open(&r.data, mixbt::data::Split::Train).unwrap().len(), 64);
    assert_eq!(mixbt::data::open_bank(&r.data).unwrap().len(), 48);
    assert_eq!(mixbt::data::open(&r.data, mixbt::data::Split::Test).unwrap().len(), 30);
    // knn_eval, written out: the bank (bank_subset, not train_subset) and the test split, both
    // embedded under the evaluation transform, then the weighted k-NN.
    let feats = |ds| mixbt::eval::labelled_features(t.encoder(), ds, &r.data.eval, 256, 1).unwrap();
    let bank = feats(mixbt::data::open_bank(&r.data).unwrap());
    let test = feats(mixbt::data::open(&r.data, mixbt::data::Split::Test).unwrap());
    assert_eq!((bank.labels.len(), test.labels.len()), (48, 30));
    let want = knn_accuracy(&bank, &test, &r.knn).unwrap();
    assert_eq!(mixbt::eval::knn_eval(t.encoder(), &r.data, &r.knn, 1).unwrap(), want);
    assert_eq!(t.knn().unwrap(), want, "the pre-trainer's k-NN is knn_eval");
}

/// k-NN embeds as many pixels per batch as 256 CIFAR images: ImageNet's 224×224 crops five at a
/// time, STL-10's 64×64 crops 64 at a time (a whole 1/8-width ImageNet run then stays within its
/// training step's memory).
#[test]
fn knn_embeds_large_images_in_small_batches() {
    use mixbt::data::Transform;
    use mixbt::eval::knn::{embed_batch, KnnConfig};
    let cfg = KnnConfig::default();
    assert_eq!(embed_batch(&cfg, &Transform::cifar_eval(), (32, 32)), 256);
    assert_eq!(embed_batch(&cfg, &Transform::imagenet_eval(), (375, 500)), 5);
    assert_eq!(embed_batch(&cfg, &Transform::stl_eval(), (96, 96)), 64);
    assert_eq!(embed_batch(&KnnConfig { batch_size: 8, ..cfg }, &Transform::cifar_eval(), (32, 32)), 64);
}
