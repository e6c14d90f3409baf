//! Methods as plug-ins: every method trains with a falling loss and resumes bit-exactly, BYOL's
//! EMA and τ schedule by hand, its target network gets no gradient, N views, the `ssl-sota`
//! presets and schedule, the majority-vote k-NN, and a checkpoint written before the redesign
//! (tests/fixtures/v1-run, by aae0c00) still loads and continues to the same bits.

mod common;

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use mixbt::data::DatasetKind;
use mixbt::eval::{knn_majority, Features};
use mixbt::method::{byol_tau, Byol, MethodConfig, StepContext};
use mixbt::model::{encoder, EncoderConfig};
use mixbt::optim::WarmupMultiStep;
use mixbt::params::ParamStore;
use mixbt::train::{presets, History, PretrainOptions, Pretrainer, Recipe};

const METHODS: [&str; 5] = ["mixbt", "bt", "simclr", "byol", "wmse"];

fn opts(out: Option<&Path>) -> PretrainOptions {
    PretrainOptions { out_dir: out.map(|p| p.to_path_buf()), skip_random_init_knn: true, ..Default::default() }
}

fn values(store: &ParamStore) -> Vec<(String, Vec<f32>)> {
    store.all().into_iter().map(|(k, v)| (k, v.as_tensor().to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1().unwrap())).collect()
}

fn tensors_f32(m: &std::collections::BTreeMap<String, Tensor>) -> Vec<(String, Vec<f32>)> {
    m.iter().map(|(k, v)| (k.clone(), v.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1().unwrap())).collect()
}

/// Optimiser steps on one batch in the falling-loss test.
const FIT_STEPS: usize = 24;
/// How much of the loss may remain after them.
const FIT_RATIO: f64 = 2.0 / 3.0;

/// The tiny recipe with method `m` and a learning rate that moves the loss within a few dozen steps.
fn tiny(m: &str, train: usize, epochs: usize) -> Recipe {
    let mut r = presets::with_method(common::tiny_recipe(train, epochs), m).unwrap();
    r.optimizer.set_base_lr(0.05);
    r
}

/// The method's loss on `views` at a fixed step context (step 0: the same mixing α and
/// permutation, the same W-MSE sub-batches each time), without an optimiser step.
fn loss_at_step0(t: &mut Pretrainer, views: &[Tensor]) -> f64 {
    let enc = t.encoder().clone();
    let ctx = StepContext { encoder: &enc, seed: 0, step: 0, epoch: 0, epochs: 1, steps_per_epoch: 1, mix_groups: 1, stat_blocks: 1 };
    t.method_mut().forward(&ctx, views).unwrap().loss.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

/// Every method learns: trained on one batch of views, its loss on that batch (measured at one
/// fixed step context, so neither augmentation nor mixing changes between the two readings)
/// falls by more than a third. Rounding moves it by parts per million; a method whose gradients
/// are missing, wrong or zero leaves it where it was. Then a run on the loader, for the
/// history's columns.
#[test]
fn every_method_trains_with_a_falling_loss() {
    for m in METHODS {
        let r = tiny(m, 64, 16);
        let mut t = Pretrainer::new(r.clone(), opts(None)).unwrap();
        let views = t.loader().batch_at(0, 0).unwrap();
        let before = loss_at_step0(&mut t, &views);
        for _ in 0..FIT_STEPS {
            t.step_views(&views).unwrap();
        }
        let after = loss_at_step0(&mut t, &views);
        eprintln!("{m}: loss on the fitted batch {before:.4} → {after:.4} ({:.1} %)", 100.0 * (after - before) / before.abs());
        assert!(before.is_finite() && after.is_finite(), "{m}: finite losses");
        // Every method's loss is ≥ 0 (squared errors, −log of a probability, 2 − 2·cos).
        assert!(after < FIT_RATIO * before, "{m}: the loss on the fitted batch falls by more than a third ({before} → {after})");
        if m == "bt" {
            // The criterion tells a method that does not learn: at a vanishing rate the loss stays put.
            let mut frozen = r.clone();
            frozen.optimizer.set_base_lr(1e-12);
            let mut f = Pretrainer::new(frozen, opts(None)).unwrap();
            let b = loss_at_step0(&mut f, &views);
            for _ in 0..FIT_STEPS {
                f.step_views(&views).unwrap();
            }
            let a = loss_at_step0(&mut f, &views);
            assert!(a >= FIT_RATIO * b && (a - b).abs() < 0.01 * b, "a frozen network's loss stays ({b} → {a})");
        }
        let mut t = Pretrainer::new(r, opts(None)).unwrap();
        while !t.finished() {
            t.step().unwrap();
        }
        let rows = &t.history().rows;
        assert_eq!(rows.len(), 64, "{m}");
        assert!(rows.iter().all(|r| r.loss.is_finite()), "{m}: finite losses");
        // The method's own columns are in the history and its table.
        let df = t.history().to_dataframe().unwrap();
        let own: &[&str] = match m {
            "mixbt" | "bt" => &["loss_bt", "loss_reg", "alpha", "lambda_reg", "on_diag", "off_diag", "reg_ma", "reg_mb"],
            "simclr" => &["loss_ab", "loss_ba", "tau"],
            "byol" => &["loss_ab", "loss_ba", "tau"],
            _ => &["loss_w1", "pos_cos"],
        };
        for c in own.iter().chain(&["step", "epoch", "loss", "lr", "images_per_s", "knn_top1"]) {
            assert!(df.column(c).is_ok(), "{m}: column {c} in {:?}", df.get_column_names());
        }
        // The components add up to the loss.
        let s = rows.last().unwrap();
        let sum: f64 = s.metrics.components().map(|(_, v)| v).sum();
        assert!((sum - s.loss).abs() <= 1e-5 * s.loss.abs().max(1.0), "{m}: components {sum} vs loss {}", s.loss);
        // The loss chart draws them without knowing the method.
        let svg = mixbt::report::loss_chart(t.history(), 4).unwrap();
        assert!(svg.0.contains(own[0]), "{m}: the chart names {}", own[0]);
    }
}

#[test]
fn every_method_resumes_bit_exactly() {
    for m in METHODS {
        let r = tiny(m, 64, 2); // 8 steps
        let mut a = Pretrainer::new(r.clone(), opts(None)).unwrap();
        while !a.finished() {
            a.step().unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let mut b = Pretrainer::new(r, opts(Some(dir.path()))).unwrap();
        for _ in 0..5 {
            b.step().unwrap();
        }
        let ck = b.save_checkpoint().unwrap();
        let has_method_file = ck.join("method.safetensors").is_file();
        assert_eq!(has_method_file, matches!(m, "simclr" | "byol"), "{m}: method.safetensors only for methods with tensors of their own");
        drop(b);
        let mut c = Pretrainer::resume(dir.path(), opts(Some(dir.path()))).unwrap();
        assert_eq!(c.steps_done(), 5, "{m}");
        while !c.finished() {
            c.step().unwrap();
        }
        assert_eq!(values(a.params()), values(c.params()), "{m}: encoder parameters and buffers after resume");
        assert_eq!(tensors_f32(&a.method().state_tensors()), tensors_f32(&c.method().state_tensors()), "{m}: the method's tensors");
        let la: Vec<(usize, f64)> = a.history().rows.iter().map(|r| (r.step, r.loss)).collect();
        let lc: Vec<(usize, f64)> = c.history().rows.iter().map(|r| (r.step, r.loss)).collect();
        assert_eq!(la, lc, "{m}: the loss of every step");
    }
}

#[test]
fn byol_tau_schedule_and_ema_by_hand() {
    // τ = 1 − (1 − 0.99)·(cos(π·epoch/epochs) + 1)/2, per epoch.
    assert_eq!(byol_tau(0.99, 0, 10), 0.99);
    assert!((byol_tau(0.99, 5, 10) - 0.995).abs() < 1e-15);
    assert!((byol_tau(0.99, 10, 10) - 1.0).abs() < 1e-15);
    let r = tiny("byol", 64, 1);
    let store = ParamStore::new(3, DType::F32, &Device::Cpu);
    let enc = encoder(&r.encoder, store.var_builder()).unwrap();
    let byol = Byol::new(Default::default(), &enc, &store, 3).unwrap();
    // The target starts as a copy, buffers included.
    assert_eq!(values(&store), values(byol.target_params()));
    // Move the online network (parameters and a buffer), then one EMA step with τ = 0.9.
    for (k, v) in store.all() {
        let t = v.as_tensor();
        let moved = (t.to_dtype(DType::F32).unwrap() + 0.5).unwrap().to_dtype(t.dtype()).unwrap();
        store.set(&k, &moved).unwrap();
    }
    let before = values(byol.target_params());
    byol.ema_update(0.9).unwrap();
    let online = values(&store);
    let after = values(byol.target_params());
    for (((k, t0), (_, s)), (_, t1)) in before.iter().zip(&online).zip(&after) {
        for ((t0, s), t1) in t0.iter().zip(s).zip(t1) {
            if mixbt::params::is_buffer(k) {
                assert_eq!(t1, t0, "{k}: buffers are not averaged");
            } else {
                let want = t0 * 0.9f32 + s * (1.0 - 0.9f64) as f32;
                assert!((t1 - want).abs() <= 1e-6 * want.abs().max(1.0), "{k}: {t1} vs {want}");
            }
        }
    }
}

#[test]
fn byol_target_network_gets_no_gradient() {
    let r = tiny("byol", 64, 1);
    let store = ParamStore::new(1, DType::F32, &Device::Cpu);
    let enc = encoder(&r.encoder, store.var_builder()).unwrap();
    let mut m = r.method.build(&enc, &store, 1).unwrap();
    let views: Vec<Tensor> = (0..2).map(|_| Tensor::randn(0f32, 1.0, (8, 3, 32, 32), &Device::Cpu).unwrap()).collect();
    let ctx = StepContext { encoder: &enc, seed: 1, step: 0, epoch: 0, epochs: 1, steps_per_epoch: 4, mix_groups: 1, stat_blocks: 1 };
    let out = m.forward(&ctx, &views).unwrap();
    let grads = out.loss.backward().unwrap();
    let byol = m.as_any().downcast_ref::<Byol>().unwrap();
    for (k, v) in byol.target_params().all() {
        assert!(grads.get(v.as_tensor()).is_none(), "target tensor {k} received a gradient");
    }
    let with_grad = byol.predictor_params().trainable().iter().filter(|(_, v)| grads.get(v.as_tensor()).is_some()).count();
    assert_eq!(with_grad, byol.predictor_params().trainable().len(), "every predictor parameter is trained");
    assert!(m.params().iter().all(|(k, _)| k.starts_with("method.pred.")), "the optimiser sees the predictor only");
}

#[test]
fn more_than_two_views() {
    let mut r = tiny("simclr", 32, 1);
    if let MethodConfig::Simclr(c) = &mut r.method {
        c.num_samples = 3;
    }
    let mut t = Pretrainer::new(r, opts(None)).unwrap();
    assert_eq!(t.loader().num_views(), 3);
    let s = t.step().unwrap();
    assert!(s.loss.is_finite());
    // Three views: three pairs; each direction's share is averaged over them.
    assert!((s.metric("loss_ab") + s.metric("loss_ba") - s.loss).abs() < 1e-5 * s.loss);
}

#[test]
fn a_checkpoint_written_before_methods_were_plug_ins_loads_and_continues_to_the_same_bits() {
    // The fixture was written with direct convolutions: the same bits need the same arithmetic.
    mixbt::ops::winograd::with_enabled(false, old_checkpoint_continues);
}

fn old_checkpoint_continues() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/v1-run");
    // The recipe: top-level loss / is_mixup → method: barlow-twins.
    let r = Recipe::from_file(&fixture.join("recipe.json")).unwrap();
    let bt = r.barlow_twins().expect("Barlow Twins");
    assert!(bt.is_mixup && bt.loss.lambda_reg == 4.0 && bt.loss.lambda_bt == 0.0078125);
    // Resume at step 7 in a copy of the run, take the eighth step: the parameters must be the
    // ones the old code wrote at step 8.
    let dir = tempfile::tempdir().unwrap();
    let ck7 = dir.path().join("checkpoints/step-00000007");
    std::fs::create_dir_all(&ck7).unwrap();
    for f in ["model.safetensors", "optimizer.safetensors", "state.json"] {
        std::fs::copy(fixture.join("checkpoints/step-00000007").join(f), ck7.join(f)).unwrap();
    }
    std::fs::write(dir.path().join("checkpoints/latest"), "step-00000007").unwrap();
    let mut t = Pretrainer::resume(dir.path(), opts(Some(dir.path()))).unwrap();
    assert_eq!(t.steps_done(), 7);
    assert_eq!(t.history().len(), 7);
    assert!(t.history().rows.iter().all(|r| r.metric("alpha").is_finite() && r.metric("reg_ma") > 0.0), "old rows keep their columns");
    let s = t.step().unwrap();
    let old8 = mixbt::train::checkpoint::CheckpointState::read(&fixture.join("checkpoints/step-00000008")).unwrap();
    let row8 = old8.history.rows.last().unwrap();
    assert_eq!((s.loss, s.metric("alpha"), s.metric("loss_reg")), (row8.loss, row8.metric("alpha"), row8.metric("loss_reg")));
    let want = mixbt::io::read_safetensors(&fixture.join("checkpoints/step-00000008/model.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(values(t.params()), tensors_f32(&want), "step 8 after resuming equals the old code's step 8");
    // And it checkpoints in the current form, which reads back.
    let ck = t.save_checkpoint().unwrap();
    let st = mixbt::train::checkpoint::CheckpointState::read(&ck).unwrap();
    assert_eq!(st.recipe, t.recipe().clone());
    assert!(std::fs::read_to_string(ck.join("state.json")).unwrap().contains("\"kind\": \"barlow-twins\""));
}

#[test]
fn history_rows_of_the_old_form_read_with_nan_alpha() {
    // Plain Barlow Twins rows had `alpha: null` (NaN).
    let json = r#"{"rows":[{"step":1,"epoch":1,"on_diag":1.5,"off_diag":2.0,"loss_bt":1.6,"reg_ma":0.0,"reg_mb":0.0,"loss_reg":0.0,"loss":1.6,"lr":0.1,"alpha":null,"lambda_reg":0.0,"images_per_s":10.0,"seconds":0.1,"knn_top1":null,"knn_top5":null}]}"#;
    let h: History = serde_json::from_str(json).unwrap();
    let r = &h.rows[0];
    assert!(r.metric("alpha").is_nan() && r.metric("loss_bt") == 1.6 && r.loss == 1.6);
    let back: History = serde_json::from_str(&serde_json::to_string(&h).unwrap()).unwrap();
    assert_eq!(back.rows[0].metrics.0.len(), r.metrics.0.len());
    assert!(back.rows[0].metric("alpha").is_nan());
}

#[test]
fn ssl_sota_presets_and_quickstart_variants() {
    for m in ["simclr", "byol", "wmse"] {
        for k in [DatasetKind::Cifar10, DatasetKind::Cifar100, DatasetKind::Stl10, DatasetKind::TinyImagenet] {
            let r = presets::ssl_sota(m, k).unwrap();
            r.validate().unwrap_or_else(|e| panic!("{}: {e}", r.name));
            assert_eq!(r.method.name(), m);
            assert_eq!(presets::get(&r.name).unwrap(), r, "listed");
            assert!(r.encoder.projector.hidden_bias && r.encoder.projector.sizes[1] == 1024);
        }
    }
    // The scripts' values and quirks.
    assert_eq!(presets::get("wmse-cifar100").unwrap().epochs, 200, "no --epoch in the script: cfg.py's 200");
    assert_eq!(presets::get("wmse-cifar10").unwrap().epochs, 1000);
    let w = presets::get("wmse-stl10").unwrap();
    assert!(matches!(w.method, MethodConfig::Wmse(ref c) if c.w_size == 256) && w.encoder.out_dim() == 128 && w.batch_size == 256);
    assert_eq!(presets::get("byol-tiny-imagenet").unwrap().batch_size, 320);
    assert_eq!(presets::get("simclr-cifar10").unwrap().batch_size, 384);
    assert_eq!(presets::get("byol-cifar10").unwrap().knn_every_epochs, 5);
    let c100 = presets::get("simclr-cifar100").unwrap();
    assert_eq!(c100.data.eval, mixbt::data::Transform::normalize_only(mixbt::data::augment::norm::CIFAR100_SSL));
    // quickstart-<m> is quickstart with the method swapped in, all else equal but the one
    // optimiser of the five: a peak lr of 3e-3 (quickstart's schedule multiplies by batch/256).
    let q = presets::quickstart();
    for m in ["mixbt", "bt", "simclr", "byol", "wmse"] {
        let v = presets::get(&format!("quickstart-{m}")).unwrap();
        assert_eq!(v.method.name(), m);
        assert_eq!((&v.data, v.batch_size, v.epochs, v.schedule), (&q.data, q.batch_size, q.epochs, q.schedule), "{m}");
        assert_eq!(v.encoder.backbone, q.encoder.backbone);
        let peak = v.optimizer.base_lrs()[0] * v.batch_size as f64 / 256.0;
        assert!((peak - 3e-3).abs() < 1e-12, "{m}: peak lr {peak}");
        v.validate().unwrap();
    }
    let qm = presets::get("quickstart-mixbt").unwrap();
    assert_eq!((&qm.method, &qm.encoder), (&q.method, &q.encoder), "quickstart-mixbt is quickstart at the shared lr");
    // bt ↔ mixbt only switch the mixed pass.
    let bt = presets::with_method(q.clone(), "bt").unwrap();
    assert_eq!(bt.lambda_reg(), Some(0.0));
    assert_eq!(presets::with_method(bt, "mixbt").unwrap().lambda_reg(), Some(4.0));
    assert!(presets::with_method(presets::get("byol-cifar10").unwrap(), "mixbt").is_err());
    assert!(presets::with_method(q, "moco").unwrap_err().to_string().contains("unknown method"));
    // W-MSE's w_size must divide the batch.
    let mut w = presets::get("quickstart-wmse").unwrap();
    w.batch_size = 48;
    assert!(w.validate().unwrap_err().to_string().contains("method.w_size"));
}

#[test]
fn ssl_sota_warmup_and_multistep_schedule() {
    // 10 steps per epoch, 100 epochs: 500 warm-up iterations, milestones 50 and 75.
    let s = WarmupMultiStep { steps_per_epoch: 10, epochs: 100, warmup_steps: 500, milestones_from_end: [50, 25], gamma: 0.2 };
    assert_eq!(s.factor(0), 1.0 / 500.0);
    assert_eq!(s.factor(249), 0.5);
    assert_eq!(s.factor(499), 1.0);
    assert_eq!(s.factor(500), 0.2, "epoch 50 runs after the first milestone");
    assert_eq!(s.factor(749), 0.2);
    assert!((s.factor(750) - 0.04).abs() < 1e-15);
    // Milestones reached during the warm-up are overwritten by it (epochs 20 and 45 < step 500).
    let s = WarmupMultiStep { epochs: 70, ..s };
    assert_eq!(s.factor(600), 1.0);
    // 40 epochs: epochs − 50 < 0 is never reached, epochs − 25 = 15 is.
    let s = WarmupMultiStep { steps_per_epoch: 100, epochs: 40, ..s };
    assert_eq!(s.factor(1499), 1.0);
    assert_eq!(s.factor(1500), 0.2);
    assert_eq!(s.factor(3999), 0.2);
    // 25 epochs or fewer: neither milestone is ever reached.
    let s = WarmupMultiStep { epochs: 25, ..s };
    assert_eq!(s.factor(2499), 1.0);
}

#[test]
fn majority_vote_knn_by_hand() {
    // Bank on a line: labels 0 0 1 1 2 at x = 0, 1, 2, 3, 10.
    let bank = Features {
        features: Tensor::new(&[[0f32, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [10.0, 0.0]], &Device::Cpu).unwrap(),
        labels: vec![0, 0, 1, 1, 2],
        num_classes: 3,
    };
    // Query 0.4 with k = 3: neighbours 0, 1, 2 → labels 0, 0, 1 → 0. Query 2.4 with k = 3:
    // 2, 3, 1 → 1, 1, 0 → 1. Query 9 with k = 1 → 2. Ties go to the smaller label (k = 2 at 1.5:
    // labels 0 and 1, one vote each → 0).
    let test = |x: f32, y: usize| Features { features: Tensor::new(&[[x, 0f32]], &Device::Cpu).unwrap(), labels: vec![y], num_classes: 3 };
    assert_eq!(knn_majority(&bank, &test(0.4, 0), 3, 8).unwrap().top1, 100.0);
    assert_eq!(knn_majority(&bank, &test(2.4, 1), 3, 8).unwrap().top1, 100.0);
    assert_eq!(knn_majority(&bank, &test(9.0, 2), 1, 8).unwrap().top1, 100.0);
    assert_eq!(knn_majority(&bank, &test(1.5, 0), 2, 8).unwrap().top1, 100.0);
    let r = knn_majority(&bank, &test(1.5, 1), 2, 8).unwrap();
    assert_eq!((r.top1, r.top5), (0.0, 100.0), "the other tied label is second");
}

#[test]
fn the_encoder_config_of_a_baseline_head_round_trips_through_a_model_file() {
    // A SimCLR run's model.safetensors (head with hidden biases) is recognised as such.
    let r = tiny("simclr", 32, 1);
    let store = ParamStore::new(0, DType::F32, &Device::Cpu);
    encoder(&r.encoder, store.var_builder()).unwrap();
    let cfg: EncoderConfig = mixbt::ckpt::infer_encoder_config(&store.tensors()).unwrap();
    assert_eq!(cfg.projector, r.encoder.projector);
}

#[test]
fn the_lambda_reg_override_is_method_state_and_survives_a_resume() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = Pretrainer::new(tiny("mixbt", 32, 2), opts(Some(dir.path()))).unwrap();
    t.step().unwrap();
    t.set_lambda_reg(Some(0.5)).unwrap();
    let ck = t.save_checkpoint().unwrap();
    let state = std::fs::read_to_string(ck.join("state.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert_eq!(v["version"], 2);
    assert_eq!(v["method_state"]["lambda_reg_override"], 0.5);
    assert!(v.get("lambda_reg_override").is_none(), "written once, in method_state");
    drop(t);
    let r = Pretrainer::resume(dir.path(), opts(Some(dir.path()))).unwrap();
    assert_eq!(r.lambda_reg(), 0.5);
    // Methods without λ_reg refuse it.
    let mut s = Pretrainer::new(tiny("simclr", 32, 1), opts(None)).unwrap();
    assert!(s.set_lambda_reg(Some(1.0)).unwrap_err().to_string().contains("simclr has no λ_reg"));
    assert!(s.lambda_reg().is_nan());
}
