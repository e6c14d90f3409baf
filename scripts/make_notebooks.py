"""Write the notebooks (notebooks/*.ipynb) from the cell lists below. Run after editing:
python3 scripts/make_notebooks.py"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "notebooks")

SETUP = """:dep mixbt = { path = "../evcxr-prelude", package = "mixbt-notebook" }
:timing false"""

PRELUDE = """use mixbt::prelude::*;
use mixbt::report::{self, Table};"""


def md(s):
    return {"cell_type": "markdown", "metadata": {}, "source": s.strip("\n").splitlines(keepends=True)}


def code(s):
    return {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": s.strip("\n").splitlines(keepends=True)}


def notebook(cells):
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Rust", "language": "rust", "name": "rust"},
            "language_info": {"codemirror_mode": "rust", "file_extension": ".rs", "mimetype": "text/rust", "name": "Rust", "pygment_lexer": "rust", "version": ""},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


DATA = """// The built-in data set by default; set MIXBT_CIFAR10=<folder with train/<class>, test/<class>>
// (e.g. data/cifar10-jpg) to use the real CIFAR-10 instead.
fn data_recipe(mut r: Recipe) -> Recipe {
    if let Ok(dir) = std::env::var("MIXBT_CIFAR10") {
        r.data = DataConfig {
            dir: Some(dir.into()),
            train_subset: Some(10_000),
            bank_subset: Some(10_000),
            test_subset: Some(2_000),
            ..DataConfig::for_kind(DatasetKind::ImageFolder)
        };
    }
    r
}"""

nb1 = notebook([
    md("""
# 01 · Quickstart: pre-train Mixed Barlow Twins and measure what it learned

This notebook pre-trains a small ResNet-18 (width 1/8) with the **Mixed Barlow Twins** loss on the
built-in data set (10 classes of procedurally generated textures and shapes, no download), then
measures the representation with the weighted k-NN classifier of the paper (k = 200, T = 0.5) and
compares it with the same network before training.

Everything here is the `mixbt` library: the same calls the `mixbt pretrain` command makes.
"""),
    code(SETUP),
    code(PRELUDE),
    code(DATA),
    md("""
The `quickstart` preset is a recipe as data: encoder, loss weights (λ_BT = 1/128, λ_reg = 4),
optimiser (Adam with the original warm-up + cosine schedule), augmentations. We shorten it a
little for the notebook.
"""),
    code("""let mut recipe = data_recipe(presets::quickstart());
recipe.epochs = 2;
recipe.data.builtin = Some(data::BuiltinConfig { train_size: 4000, test_size: 1000, ..Default::default() });
recipe.batch_size = 64;
println!("{}", recipe.description);
println!("encoder: {:?}, feature {} → projector {:?}", recipe.encoder.backbone.arch, recipe.encoder.feature_dim(), recipe.encoder.projector.sizes);"""),
    code("""let mut trainer = Pretrainer::new(recipe, PretrainOptions { seed: 0, ..Default::default() })?;
let random = trainer.knn()?;
println!("k-NN of the randomly initialised network: top-1 {:.2}%, top-5 {:.2}%", random.top1, random.top5);"""),
    md("""
`step()` runs one optimisation step — three forward passes (view A, view B and the mixed batch
α·A + (1−α)·B[perm]) — and returns every loss component:
"""),
    code("""let s = trainer.step()?;
println!("step {}: loss {:.2} = loss_bt {:.2} + loss_reg {:.3}  (α = {:.3}, λ_reg = {}, lr = {:.2e}, {:.0} images/s)",
         s.step, s.loss, s.loss_bt, s.loss_reg, s.alpha, s.lambda_reg, s.lr, s.images_per_s);"""),
    md("Now the rest of the recipe. `fit()` ends with the k-NN evaluation of the trained backbone."),
    code("""let summary = trainer.fit()?;
println!("after {} steps: k-NN top-1 {:.2}% (random init {:.2}%), top-5 {:.2}% (random init {:.2}%)",
         summary.steps, summary.knn_top1, random.top1, summary.knn_top5, random.top5);"""),
    md("The history is a polars DataFrame (one row per step):"),
    code("""let df = trainer.history().to_dataframe()?;
Table::new(df.clone())"""),
    code("""report::loss_chart(trainer.history(), 8)?"""),
    code("""report::bars_svg("k-NN top-1 on the test split", "accuracy %", &[
    ("random init".to_string(), random.top1),
    ("Mixed Barlow Twins".to_string(), summary.knn_top1),
])?"""),
    md("A 2-D PCA of the test embeddings, coloured by class:"),
    code("""let test_ds = data::open(&trainer.recipe().data, Split::Test)?;
let classes = test_ds.classes();
let feats = labelled_features(trainer.encoder(), test_ds, &trainer.recipe().data.eval, 256, 0)?;
report::pca_svg("test embeddings (PCA)", &feats.features, &feats.labels, &classes)?"""),
])

nb2 = notebook([
    md("""
# 02 · Mixed Barlow Twins, step by step

Each piece of the method, computed with the library's own functions and shown as a picture:
two augmented views, the cross-correlation matrix **C** and its on- and off-diagonal terms, the
mixed batch, the matrices **C^MA**, **C^MB** and their targets, the regulariser, and one
optimisation step.
"""),
    code(SETUP),
    code(PRELUDE),
    code("""use mixbt::loss::{cross_correlation, prepared};
use mixbt::report::{heatmap_svg, image_grid, tensor_to_image};
use mixbt::rand::SeedableRng;"""),
    md("""
## 1. Two views of each image

The pre-training transform is applied twice, independently, to every image
(crop, flip, colour jitter, greyscale — torchvision semantics on 8-bit images).
"""),
    code("""let ds: data::DynDataset = std::sync::Arc::new(data::BuiltinShapes::new(Default::default(), Split::Train));
let t = Transform::builtin_train();
let cfg = LoaderConfig { batch_size: 32, shuffle: true, drop_last: true, seed: 1, workers: 0, prefetch: 1 };
let loader = Loader::pairs(ds.clone(), t.clone(), cfg, &Device::Cpu)?;
let batch = loader.pair_epoch(0, 0).next().unwrap()?;
let (xa, xb) = (batch.view_a.clone(), batch.view_b.clone());
println!("views: {:?} and {:?}", xa.dims(), xb.dims());
let mut imgs = vec![];
for i in 0..8 { imgs.push(ds.image(batch.indices[i])?); }
for i in 0..8 { imgs.push(tensor_to_image(&xa.get(i)?, t.mean, t.std)?); }
for i in 0..8 { imgs.push(tensor_to_image(&xb.get(i)?, t.mean, t.std)?); }
image_grid(&imgs, 8, 3)? // rows: original, view A, view B"""),
    md("""
## 2. The encoder and its projector outputs

ResNet-18 (CIFAR stem, width 1/8) → pooled feature → projector (Linear → BN → ReLU → Linear).
On the small data sets the loss sees the projector outputs **L2-normalised**, then standardised
per column with the unbiased standard deviation (as the original `main.py`).
"""),
    code("""let mut ecfg = EncoderConfig::small(Arch::R18, Stem::Cifar, 128, 0.125);
ecfg.projector = mixbt::model::ProjectorConfig::small_with_hidden(ecfg.feature_dim(), 256, 128);
let store = ParamStore::new(0, DType::F32, &Device::Cpu);
let enc = encoder(&ecfg, store.var_builder())?;
let (_, h_a) = enc.forward_t(&xa, true)?;
let (_, h_b) = enc.forward_t(&xb, true)?;
let (z_a, z_b) = (prepared(&h_a, true)?, prepared(&h_b, true)?);
println!("h: {:?}; standardised columns have mean {:.1e}", h_a.dims(), z_a.mean(0)?.abs()?.max(0)?.to_scalar::<f32>()?);"""),
    md("""
## 3. The cross-correlation matrix C = Z_Aᵀ Z_B / N

Barlow Twins pushes its diagonal to 1 (the views agree) and its off-diagonal to 0 (the features
are decorrelated). Below: the first 32 × 32 entries, blue −1 … white 0 … red +1.
"""),
    code("""let n = xa.dim(0)?;
let c = cross_correlation(&z_a, &z_b, n)?;
heatmap_svg("C (first 32 features)", &c.narrow(0, 0, 32)?.narrow(1, 0, 32)?, -1.0, 1.0)?"""),
    code("""let loss = MixedBarlowTwins { lambda_bt: 0.0078125, lambda_reg: 4.0, variant: MixVariant::Small, l2_normalize: true };
let bt = loss.compute_bt(&h_a, &h_b)?;
println!("on-diagonal Σ(1 − C_ii)² = {:.3}", bt.on_diag.to_scalar::<f32>()?);
println!("off-diagonal Σ_{{i≠j}} C_ij² = {:.3}", bt.off_diag.to_scalar::<f32>()?);
println!("loss_bt = on_diag + λ_BT · off_diag = {:.3}", bt.loss_bt.to_scalar::<f32>()?);"""),
    md("""
## 4. The mixed batch

α ~ Beta(1, 1) and a random permutation: x_m = α · x_A + (1 − α) · x_B[perm] — view A of image *i*
mixed with view B of image perm(*i*). It goes through the network as a third batch.
"""),
    code("""let mut rng = mixbt::rand_chacha::ChaCha8Rng::seed_from_u64(3);
let (perm, alpha) = sample_mix(&mut rng, n);
let xm = mix_batch(&xa, &xb, &perm, alpha)?;
println!("α = {alpha:.3}, perm[..8] = {:?}", &perm[..8]);
let mut imgs = vec![];
for i in 0..8 { imgs.push(tensor_to_image(&xa.get(i)?, t.mean, t.std)?); }
for i in 0..8 { imgs.push(tensor_to_image(&xb.get(perm[i])?, t.mean, t.std)?); }
for i in 0..8 { imgs.push(tensor_to_image(&xm.get(i)?, t.mean, t.std)?); }
image_grid(&imgs, 8, 3)? // rows: view A, view B[perm], the mix"""),
    md("""
## 5. C^MA and its target

The regulariser asks the correlation of the mixed embeddings with view A to be the same mixture
of correlations: C^MA_gt = α · C^AA + (1 − α) · C^{B[perm],A}. The same for C^MB with view B.
"""),
    code("""let (_, h_m) = enc.forward_t(&xm, true)?;
let (parts, mats) = loss.compute_with_matrices(&h_a, &h_b, &h_m, &perm, alpha)?;
fn block(m: &Tensor) -> mixbt::Result<Tensor> {
    Ok(m.narrow(0, 0, 24)?.narrow(1, 0, 24)?)
}
heatmap_svg("C^MA (first 24)", &block(mats.c_ma.as_ref().unwrap())?, -1.0, 1.0)?"""),
    code("""heatmap_svg("C^MA target: α·C^AA + (1−α)·C^{B[perm],A}", &block(mats.c_ma_gt.as_ref().unwrap())?, -1.0, 1.0)?"""),
    code("""fn f(t: &Tensor) -> f32 {
    t.to_scalar::<f32>().unwrap()
}
println!("‖C^MA − target‖² = {:.3}, ‖C^MB − target‖² = {:.3}", f(&parts.reg_ma), f(&parts.reg_mb));
println!("loss_reg = λ_reg · λ_BT · (…) = {:.4}", f(&parts.loss_reg));
println!("total = loss_bt + loss_reg = {:.3}", f(&parts.total));"""),
    md("""
## 6. One optimisation step

Adam with PyTorch's coupled L2 weight decay, as the small-data-set recipes. Gradients flow
through every term (nothing is detached, as in the original). The loss on the same batch drops.
"""),
    code("""use mixbt::optim::{Adam, AdamConfig, Optimizer};
let mut opt = Adam::single(store.trainable(), AdamConfig { lr: 1e-3, weight_decay: 1e-6, ..Default::default() });
// One step: the three forward passes, the loss, backward, Adam — then the loss on the same batch again.
let (before, after) = {
    let loss_on_batch = |enc: &Encoder| -> mixbt::Result<Tensor> {
        let (_, h_a) = enc.forward_t(&xa, true)?;
        let (_, h_b) = enc.forward_t(&xb, true)?;
        let (_, h_m) = enc.forward_t(&xm, true)?;
        Ok(loss.compute(&h_a, &h_b, &h_m, &perm, alpha)?.total)
    };
    let total = loss_on_batch(&enc)?;
    let before = f(&total);
    let grads = total.backward()?;
    opt.step(&grads)?;
    (before, f(&loss_on_batch(&enc)?))
};
println!("loss on this batch: {before:.3} → {after:.3}");"""),
    code("""report::bars_svg("the loss on one batch, before and after one Adam step", "loss", &[("before".into(), before as f64), ("after".into(), after as f64)])?"""),
])

nb3 = notebook([
    md("""
# 03 · λ ablation on a small budget

The paper's ImageNet ablation varies λ_reg (the weight of the mixed-sample regulariser). Here the
same sweep — λ_reg ∈ {0, 0.0025, 0.1, 1, 2, 4} — on the built-in data set with a tiny ResNet-18
and a short schedule, then two values of λ_BT. λ_reg = 0 is plain Barlow Twins (no mixed pass).
Budgets this small show trends, not the paper's numbers.
"""),
    code(SETUP),
    code(PRELUDE),
    code(DATA),
    code("""use mixbt::polars::prelude::*;

fn run(lambda_reg: f64, lambda_bt: f64) -> mixbt::Result<(f64, f64, f64)> {
    let mut r = data_recipe(presets::quickstart());
    r.encoder.backbone.width = 0.0625;
    r.encoder.projector = mixbt::model::ProjectorConfig::small_with_hidden(r.encoder.backbone.feature_dim(), 256, 256);
    r.data.builtin = Some(data::BuiltinConfig { train_size: 1536, test_size: 500, ..Default::default() });
    r.data.bank_subset = Some(2000);
    r.batch_size = 64;
    r.epochs = 2;
    r.set_lambda_reg(lambda_reg); // λ_reg = 0: plain Barlow Twins, no mixed pass
    r.loss.lambda_bt = lambda_bt;
    let mut t = Pretrainer::new(r, PretrainOptions { seed: 0, skip_random_init_knn: true, ..Default::default() })?;
    let s = t.fit()?;
    Ok((s.knn_top1, s.knn_top5, s.final_loss))
}"""),
    code("""let lambdas = [0.0, 0.0025, 0.1, 1.0, 2.0, 4.0];
let mut rows = vec![];
for &l in &lambdas {
    let (t1, t5, loss) = run(l, 0.0078125)?;
    println!("λ_reg {l:<7} k-NN top-1 {t1:.2}%  top-5 {t5:.2}%");
    rows.push((l, t1, t5, loss));
}"""),
    code("""let ours = DataFrame::new(rows.len(), vec![
    Column::new("lambda_reg".into(), rows.iter().map(|r| r.0).collect::<Vec<_>>()),
    Column::new("knn_top1".into(), rows.iter().map(|r| r.1).collect::<Vec<_>>()),
    Column::new("knn_top5".into(), rows.iter().map(|r| r.2).collect::<Vec<_>>()),
    Column::new("final_loss".into(), rows.iter().map(|r| r.3).collect::<Vec<_>>()),
]).unwrap();
Table::new(ours.clone())"""),
    code("""report::bars_svg("ours: k-NN top-1 by λ_reg (built-in data, tiny budget)", "accuracy %",
    &rows.iter().map(|r| (format!("{}", r.0), r.1)).collect::<Vec<_>>())?"""),
    md("""
## The paper's ImageNet ablation (ResNet-50, 300 epochs, linear probe top-1)

From the presets (the paper's recipes as data) — the numbers the README of the original reports:
"""),
    code("""let paper: Vec<(f64, f64)> = presets::all().into_iter()
    .filter(|r| r.name.starts_with("imagenet-r50-300ep"))
    .map(|r| (r.loss.lambda_reg, r.paper.and_then(|p| p.linear_top1).unwrap_or(f64::NAN)))
    .collect();
let df = DataFrame::new(paper.len(), vec![
    Column::new("lambda_reg".into(), paper.iter().map(|p| p.0).collect::<Vec<_>>()),
    Column::new("paper_linear_top1".into(), paper.iter().map(|p| p.1).collect::<Vec<_>>()),
]).unwrap();
Table::new(df.clone())"""),
    code("""report::bars_svg("paper: ImageNet linear top-1 by λ_reg (300 epochs)", "accuracy %",
    &paper.iter().map(|p| (format!("{}", p.0), p.1)).collect::<Vec<_>>())?"""),
    md("## λ_BT: the off-diagonal weight"),
    code("""let mut bt_rows = vec![];
for &lbt in &[0.0078125, 0.03125] {
    let (t1, _, _) = run(4.0, lbt)?;
    println!("λ_BT {lbt}: k-NN top-1 {t1:.2}%");
    bt_rows.push((format!("λ_BT {lbt}"), t1));
}
report::bars_svg("k-NN top-1 by λ_BT (λ_reg = 4)", "accuracy %", &bt_rows)?"""),
])

nb4 = notebook([
    md("""
# 04 · Pre-trained checkpoints from the Hub

The paper's released checkpoints are listed in `hub/registry.json` (Hub repo `wgcban/mix-bt`).
This notebook lists them, pulls one through the Hub client (cache, checksum), imports the
original PyTorch file, embeds images and runs k-NN, and compares with the paper's number.

Offline (as in CI) it talks to a local server that speaks the Hub's HTTP protocol: set
`HF_ENDPOINT` and `MIXBT_HUB_CHECKPOINT` (see `evcxr-prelude/run-notebooks.sh`).
"""),
    code(SETUP),
    code(PRELUDE),
    code(DATA),
    code("""use mixbt::polars::prelude::*;
let reg = mixbt::hub::registry();
let c = reg.checkpoints.clone();
let df = DataFrame::new(c.len(), vec![
    Column::new("file".into(), c.iter().map(|x| x.file.clone()).collect::<Vec<_>>()),
    Column::new("arch".into(), c.iter().map(|x| x.arch.clone()).collect::<Vec<_>>()),
    Column::new("dataset".into(), c.iter().map(|x| x.dataset.clone()).collect::<Vec<_>>()),
    Column::new("lambda_reg".into(), c.iter().map(|x| x.lambda_reg).collect::<Vec<_>>()),
    Column::new("knn_top1".into(), c.iter().map(|x| x.knn_top1).collect::<Vec<_>>()),
    Column::new("linear_top1".into(), c.iter().map(|x| x.linear_top1).collect::<Vec<_>>()),
]).unwrap();
Table::new(df.clone())"""),
    md("""
Pull a checkpoint. By default the paper's ResNet-18 CIFAR-10 model; `MIXBT_HUB_CHECKPOINT`
overrides it (CI points it at the local Hub server).
"""),
    code("""let reference = std::env::var("MIXBT_HUB_CHECKPOINT")
    .unwrap_or_else(|_| "hub:wgcban/mix-bt/checkpoints/4wdhbpcf_0.0078125_1024_256_cifar10_model.pth".into());
let path = mixbt::hub::resolve_checkpoint(&reference)?;
println!("{reference}\\n→ {}", path.display());
let (enc, store, cfg) = mixbt::ckpt::load_encoder(&path, &Device::Cpu)?;
println!("{} ({} stem, width ×{}), projector {:?}, {} tensors", cfg.backbone.arch.name(), cfg.backbone.stem.name(), cfg.backbone.width, cfg.projector.sizes, store.names().len());"""),
    md("Embed the test images and run the weighted k-NN (bank: train split, eval transform):"),
    code("""let mut r = data_recipe(presets::quickstart());
r.data.bank_subset = Some(r.data.bank_subset.unwrap_or(4000));
let knn = knn_eval(&enc, &r.data, &KnnConfig::default(), 0)?;
println!("k-NN top-1 {:.2}%, top-5 {:.2}% on {} test images", knn.top1, knn.top5, knn.n_test);"""),
    code("""let file = reference.rsplit('/').next().unwrap_or("").to_string();
let paper = reg.checkpoints.iter().find(|c| c.file == file).and_then(|c| c.knn_top1);
let on_cifar = std::env::var("MIXBT_CIFAR10").is_ok();
let mut bars = vec![("this notebook".to_string(), knn.top1)];
if let Some(p) = paper { bars.push(("paper (CIFAR-10 test)".to_string(), p)); }
if !on_cifar { println!("(k-NN on the built-in data set: a CIFAR model meets data it never saw; set MIXBT_CIFAR10 for the paper's protocol)"); }
report::bars_svg("k-NN top-1", "accuracy %", &bars)?"""),
    code("""let test_ds = data::open(&r.data, Split::Test)?;
let classes = test_ds.classes();
let test = labelled_features(&enc, test_ds, &r.data.eval, 256, 0)?;
report::pca_svg("test embeddings of the pulled model (PCA)", &test.features, &test.labels, &classes)?"""),
])

nb6 = notebook([
    md("""
# 06 · Transfer: does the representation carry to other data sets?

The paper checks its CIFAR-10, CIFAR-100 and STL-10 models on seven *downstream* data sets —
textures (DTD), digits (MNIST), clothes (FashionMNIST), birds (CUB-200-2011), flowers
(Oxford Flowers-102), German traffic signs and aircraft variants (FGVC-Aircraft) — with a
**linear probe**: the pre-trained backbone is frozen, and only a new linear layer on its pooled
features is trained for each target. If the features are general, a linear classifier on them
does well on data the network never saw.

The protocol is the original's (`evaluate_transfer.py`): every image resized to a square of
$s = 32$ pixels for CIFAR-trained models (64 otherwise), normalised with the target's statistics;
the classifier $\\hat y = W h(x) + b$ on the frozen features $h(x) \\in \\mathbb{R}^{512}$ trained by
SGD (learning rate 0.01, momentum 0.9, ×0.1 at epochs 60 and 80, 100 epochs, batch 128) on the
cross-entropy; the reported number is the best test top-1 over the epochs.

With BatchNorm in eval mode and no augmentation, $h(x)$ never changes during training, so mixbt
embeds every image **once** and trains the classifier on the cached features: the same numbers
(a test checks it) in seconds instead of hours. The original keeps BN in train mode while
probing (a quirk); `probe.bn_train_mode_quirk` reproduces it on the slow path.
"""),
    code(SETUP),
    code(PRELUDE),
    md("""
Pull a checkpoint through the Hub client: by default the paper's ResNet-18 CIFAR-10 model;
`MIXBT_HUB_CHECKPOINT` overrides it (CI points it at the local Hub server and a small model).
"""),
    code("""use mixbt::eval::transfer::{self, TransferConfig, TransferTarget};
use mixbt::data::transfer::{TargetSpec, TARGETS};
let reference = std::env::var("MIXBT_HUB_CHECKPOINT")
    .unwrap_or_else(|_| "hub:wgcban/mix-bt/checkpoints/4wdhbpcf_0.0078125_1024_256_cifar10_model.pth".into());
let path = mixbt::hub::resolve_checkpoint(&reference)?;
let (enc, _, cfg) = mixbt::ckpt::load_encoder(&path, &Device::Cpu)?;
let size = transfer::default_resize(&enc);
println!("{reference}\\n→ {} ({}, {} stem): images resized to {size}×{size}", path.display(), cfg.backbone.arch.name(), cfg.backbone.stem.name());"""),
    md("""
Where the targets are: `MIXBT_TRANSFER_ROOT` (one folder per target, named as in the original's
scripts, each holding the files its official archive unpacks to; see `data/README.md`). CI uses
the tiny copies in each real format that the tests read (`tests/fixtures/transfer`). Targets
whose folder is absent are skipped.
"""),
    code("""let root = std::path::PathBuf::from(std::env::var("MIXBT_TRANSFER_ROOT").unwrap_or_else(|_| "../data/transfer".into()));
let specs = TargetSpec::all_known();
for s in &specs {
    let dir = s.folder(Some(&root)).unwrap();
    println!("{:>13}: {} {}", s.name, if dir.exists() { "found  " } else { "missing" }, dir.display());
}"""),
    md("""
## One target, step by step

Open a target (its splits, transform and number of classifier outputs), look at a few of its
images as the network sees them (resized), embed both splits once, then train the classifier.
"""),
    code("""let first = specs.iter().find(|s| s.folder(Some(&root)).unwrap().exists()).expect("no transfer target found").clone();
let target = TransferTarget::open(&first, Some(&root), size)?.unwrap();
println!("{}: {} train / {} test images, {} classes, {} classifier outputs", target.name, target.train.len(), target.test.len(), target.classes(), target.outputs);
let views: Vec<_> = (0..target.train.len().min(8)).map(|i| augment::resize(&target.train.image(i).unwrap(), size, size, augment::Interp::Bilinear)).collect();
report::image_grid(&views, 8, 4)?"""),
    code("""let tcfg = TransferConfig::default();
let feats = transfer::transfer_features(&enc, &target, &tcfg)?;
println!("features: train {:?}, test {:?}", feats.train.dims(), feats.test.dims());
let mut curve = vec![];
let res = transfer::transfer_probe(&feats, target.outputs, &tcfg.probe, |e| curve.push((e.epoch as f64, e.test_top1)))?;
println!("best test top-1 {:.2}%, last {:.2}%", res.best_top1, res.last_top1);"""),
    md("The test accuracy over the probe's epochs (the learning rate drops ×0.1 at epochs 60 and 80; the original reports the best epoch):"),
    code("""let series = vec![("test top-1".to_string(), curve.clone())];
report::lines_svg(&format!("{}: test top-1 per probe epoch", target.name), "epoch", "test top-1 (%)", &series, false)?"""),
    md("""
## Every target

`transfer::transfer` runs the same two steps on every target present and returns the table:
one row per target with its class count, split sizes, the best and the last test top-1 and the
wall time.
"""),
    code("""let report_t = transfer::transfer(&enc, &specs, Some(&root), &tcfg, |_| {})?;
for (t, f) in &report_t.skipped { println!("skipped {t}: {} not found", f.display()); }
Table::new(report_t.to_dataframe()?)"""),
    md("""
**Beside the paper.** The paper reports its transfer accuracies per target in a table of the PDF
(arXiv 2312.02151); those numbers are not in this project's reference material
(`../shared/docs/reference.md` §8.1 says so), so none are drawn here rather than made up. What
the original does publish for the pulled model is its accuracy on its *own* data set, shown
below as a labelled reference (the paper's CIFAR-10 linear probe): it says how good the features
are at home, not how they transfer. `report::transfer_chart` takes per-target references
(`report::Reference { target, top1, source }`) for when the paper's table is transcribed.
"""),
    code("""let file = reference.rsplit('/').next().unwrap_or("").to_string();
let reg = mixbt::hub::registry();
let home = reg.checkpoints.iter().find(|c| c.file == file).and_then(|c| c.linear_top1);
match home {
    Some(v) => println!("paper, this checkpoint on its own data set ({}): linear top-1 {v:.2}% (not a transfer number)", reg.checkpoints.iter().find(|c| c.file == file).unwrap().dataset),
    None => println!("{file} is not a released checkpoint: no paper number to show (CI's tiny model)"),
}
report::transfer_chart("Linear transfer of the pulled model (best and last test top-1 per target)", &report_t.rows, &[])?"""),
])

for name, nb in [("01-quickstart", nb1), ("02-mixed-barlow-twins-step-by-step", nb2), ("03-lambda-ablation", nb3), ("04-pretrained-from-the-hub", nb4), ("06-transfer", nb6)]:
    for i, cell in enumerate(nb["cells"]):
        cell["id"] = f"{name[:2]}-{i:02d}"  # stable cell ids (nbformat 4.5)
    with open(os.path.join(OUT, name + ".ipynb"), "w") as f:
        json.dump(nb, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print("wrote", name)
