"""The notebooks' source: notebooks/*.ipynb are written from the cell lists below (the setup,
prelude and data cells are shared, so they are written once here).

    python3 scripts/make_notebooks.py              write the notebooks (cells whose source is
                                                   unchanged keep their committed outputs)
    python3 scripts/make_notebooks.py --check      fail if a committed notebook's cells differ
                                                   from this file (CI)
    python3 scripts/make_notebooks.py --outputs D  take the outputs from the executed copies in D
                                                   (scripts/refresh-notebooks.sh does this)
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "notebooks")

SETUP = """:dep mixbt = { path = "../evcxr-prelude", package = "mixbt-notebook" }"""

PRELUDE = """use mixbt::prelude::*;
use mixbt::report::{self, Table};
// MIXBT_DEVICE=cpu (default) or cuda:0 (needs the kernel's `:dep` line with features = ["cuda"]).
let device = mixbt::params::device_from_env()?;"""


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
    code("""let mut trainer = Pretrainer::new(recipe, PretrainOptions { seed: 0, device: device.clone(), ..Default::default() })?;
let random = trainer.knn()?;
println!("k-NN of the randomly initialised network: top-1 {:.2}%, top-5 {:.2}%", random.top1, random.top5);"""),
    md("""
`step()` runs one optimisation step — three forward passes (view A, view B and the mixed batch
α·A + (1−α)·B[perm]) — and returns every loss component:
"""),
    code("""let s = trainer.step()?;
println!("step {}: loss {:.2} = loss_bt {:.2} + loss_reg {:.3}  (α = {:.3}, λ_reg = {}, lr = {:.2e}, {:.0} images/s)",
         s.step, s.loss, s.metric("loss_bt"), s.metric("loss_reg"), s.metric("alpha"), s.metric("lambda_reg"), s.lr, s.images_per_s);"""),
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
])?.caption("The same network before and after pre-training, measured the same way (weighted k-NN, k = 200, T = 0.5, on the test split): the gap is what the self-supervised training learned.")"""),
    md("A 2-D PCA of the test embeddings, coloured by class:"),
    code("""let test_ds = data::open(&trainer.recipe().data, Split::Test)?;
let classes = test_ds.classes();
let feats = labelled_features(trainer.encoder(), test_ds, &trainer.recipe().data.eval, 256, 0)?;
report::pca_svg("test embeddings (PCA)", &feats.features, &feats.labels, &classes)?
    .caption("The first two principal components of the L2-normalised backbone features of the test images, one colour per class: classes that form their own clusters are the ones k-NN gets right.")"""),
])

nb2 = notebook([
    md("""
# 02 · Mixed Barlow Twins, step by step

Each piece of the method, computed with the library's own functions, written as a formula and
shown as a picture: two augmented views, the cross-correlation matrix $C$ and its two terms, the
mixed batch, the matrices $C^{MA}$, $C^{MB}$ and their targets, the regulariser, and one
optimisation step.

## Why mix samples at all?

**Barlow Twins** learns by making the embeddings of two views of the same image agree, feature by
feature, while keeping the features decorrelated: it pushes the cross-correlation matrix of the
two views' embeddings towards the identity. Each image only ever meets *itself*: nothing in the
objective relates one image's embedding to another's. The paper's observation is that with a
wide projector (large $d$) this lets the network **overfit its features**: the loss keeps falling
while the k-NN accuracy of the representation stops improving and on small data sets even drops
(the paper's Figure 1, CIFAR-10) — the features memorise the training images instead of
describing them.

**Mixed Barlow Twins** adds interaction between samples. It mixes view A of image $i$ with view B
of another image $\\pi(i)$, $x^M = \\alpha x^A + (1-\\alpha) x^B_\\pi$, and asks the embedding of the
mix to behave *linearly*: its correlation with view A should be the same mixture of correlations,
$\\alpha$ times the correlation of A with itself plus $(1-\\alpha)$ times the correlation of the
shuffled B with A. That target is computed from the two real views, so the regulariser ties every
image's embedding to the others in the batch — a prior that linear interpolation in pixel space
maps to linear interpolation in feature space, which a memorising network violates.
"""),
    code(SETUP),
    code(PRELUDE),
    code("""use mixbt::loss::{cross_correlation, prepared};
use mixbt::report::{heatmap_svg, image_grid, tensor_to_image};
use mixbt::rand::SeedableRng;"""),
    md("""
## 1. Two views of each image

The pre-training transform $t \\sim \\mathcal{T}$ is applied twice, independently, to every image:
$x^A = t_A(x)$, $x^B = t_B(x)$ (crop, flip, colour jitter, greyscale — torchvision semantics on
8-bit images).
"""),
    code("""let ds: data::DynDataset = std::sync::Arc::new(data::BuiltinShapes::new(Default::default(), Split::Train));
let t = Transform::builtin_train();
let cfg = LoaderConfig { batch_size: 32, shuffle: true, drop_last: true, seed: 1, workers: 0, prefetch: 1 };
let loader = Loader::pairs(ds.clone(), t.clone(), cfg, &device)?;
let batch = loader.pair_epoch(0, 0).next().unwrap()?;
let (xa, xb) = (batch.view_a.clone(), batch.view_b.clone());
println!("views: {:?} and {:?}", xa.dims(), xb.dims());
let mut imgs = vec![];
for i in 0..8 { imgs.push(ds.image(batch.indices[i])?); }
for i in 0..8 { imgs.push(tensor_to_image(&xa.get(i)?, t.mean, t.std)?); }
for i in 0..8 { imgs.push(tensor_to_image(&xb.get(i)?, t.mean, t.std)?); }
image_grid(&imgs, 8, 3)? // rows: original, view A, view B"""),
    md("""
## 2. The encoder and the embeddings the loss sees

ResNet-18 (CIFAR stem, width 1/8) → pooled feature → projector $g$ (Linear → BN → ReLU → Linear)
gives $h_b \\in \\mathbb{R}^d$ for each image $b$ of the batch of $N$. On the small data sets the
original L2-normalises each row, then standardises each column with the batch mean and the
unbiased standard deviation (no $\\varepsilon$):

$$ \\tilde h_b = \\frac{h_b}{\\lVert h_b \\rVert_2}, \\qquad z_{b,i} = \\frac{\\tilde h_{b,i} - \\mu_i}{\\sigma_i}, \\qquad \\mu_i = \\frac{1}{N}\\sum_b \\tilde h_{b,i}, \\quad \\sigma_i^2 = \\frac{1}{N-1}\\sum_b (\\tilde h_{b,i}-\\mu_i)^2 $$
"""),
    code("""let mut ecfg = EncoderConfig::small(Arch::R18, Stem::Cifar, 128, 0.125);
ecfg.projector = mixbt::model::ProjectorConfig::small_with_hidden(ecfg.feature_dim(), 256, 128);
let store = ParamStore::new(0, DType::F32, &device);
let enc = encoder(&ecfg, store.var_builder())?;
let (_, h_a) = enc.forward_t(&xa, true)?;
let (_, h_b) = enc.forward_t(&xb, true)?;
let (z_a, z_b) = (prepared(&h_a, true)?, prepared(&h_b, true)?);
println!("h: {:?}; standardised columns have mean {:.1e}", h_a.dims(), z_a.mean(0)?.abs()?.max(0)?.to_scalar::<f32>()?);"""),
    md("""
## 3. The cross-correlation matrix $C$ and the Barlow Twins loss

$$ C_{ij} = \\frac{\\sum_b z^A_{b,i}\\, z^B_{b,j}}{N}, \\qquad C = \\frac{(Z^A)^\\top Z^B}{N} $$

$C_{ij}$ is the correlation, over the batch, of feature $i$ of view A with feature $j$ of view B.
The loss pushes the diagonal to 1 (the two views agree on every feature) and the off-diagonal to
0 (different features carry different information):

$$ \\mathcal{L}_{BT} = \\underbrace{\\sum_i (1 - C_{ii})^2}_{\\text{on-diagonal}} \\; + \\; \\lambda_{BT} \\underbrace{\\sum_i \\sum_{j \\neq i} C_{ij}^2}_{\\text{off-diagonal}} $$

Below, the first 32 × 32 entries of $C$ for the untrained network; the colour bar reads the
value (blue −1, white 0, red +1).
"""),
    code("""let n = xa.dim(0)?;
let c = cross_correlation(&z_a, &z_b, n)?;
heatmap_svg("C = Z_Aᵀ Z_B / N (first 32 features)", &c.narrow(0, 0, 32)?.narrow(1, 0, 32)?, -1.0, 1.0)?
    .caption("Untrained network: the diagonal is already positive (two views of one image look alike even to random features) but far from 1, and the off-diagonal is far from 0 (random features are correlated). Training drives this picture towards the identity.")"""),
    code("""let loss = MixedBarlowTwins { lambda_bt: 0.0078125, lambda_reg: 4.0, variant: MixVariant::Small, l2_normalize: true };
let bt = loss.compute_bt(&h_a, &h_b)?;
println!("on-diagonal Σ(1 − C_ii)² = {:.3}", bt.on_diag.to_scalar::<f32>()?);
println!("off-diagonal Σ_{{i≠j}} C_ij² = {:.3}", bt.off_diag.to_scalar::<f32>()?);
println!("loss_bt = on_diag + λ_BT · off_diag = {:.3}", bt.loss_bt.to_scalar::<f32>()?);"""),
    md("""
## 4. The mixed batch

One $\\alpha \\sim \\mathrm{Beta}(1, 1)$ per step and a random permutation $\\pi$ of the batch:

$$ x^M_b = \\alpha\\, x^A_b + (1-\\alpha)\\, x^B_{\\pi(b)} $$

view A of image $b$ mixed with view B of image $\\pi(b)$. It goes through the network as a third
batch (its own BatchNorm statistics), giving $Z^M$.
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
## 5. $C^{MA}$, $C^{MB}$ and their targets

The mixed embeddings are correlated with each real view:

$$ C^{MA} = \\frac{(Z^M)^\\top Z^A}{N}, \\qquad C^{MB} = \\frac{(Z^M)^\\top Z^B}{N} $$

If the embedding were linear in the input, $Z^M$ would be $\\alpha Z^A + (1-\\alpha) Z^B_\\pi$, and
the correlations would be the same mixture of correlations of real views. Those are the targets
(small data sets, `main.py`, as the paper's README writes them):

$$ C^{MA}_{gt} = \\alpha\\, \\frac{(Z^A)^\\top Z^A}{N} + (1-\\alpha)\\, \\frac{(Z^B_\\pi)^\\top Z^A}{N}, \\qquad C^{MB}_{gt} = \\alpha\\, \\frac{(Z^A)^\\top Z^B}{N} + (1-\\alpha)\\, \\frac{(Z^B_\\pi)^\\top Z^B}{N} $$

Why $C^{B_\\pi A}$ in the target of $C^{MA}$: the mix holds view B of *another* image
$\\pi(b)$, so its share of the correlation with view A is the correlation between view B of the
shuffled images and view A of the original ones — a correlation *across* images, which is how
the regulariser makes samples interact. The ImageNet code (`main_imagenet.py`) differs: its
$C^{MB}_{gt}$ uses $\\alpha (Z^B)^\\top Z^B / N$ instead of $\\alpha (Z^A)^\\top Z^B / N$ and the term
gets a factor ½; mixbt keeps both as `MixVariant::Small` and `MixVariant::ImageNet`.
"""),
    code("""let (_, h_m) = enc.forward_t(&xm, true)?;
let (parts, mats) = loss.compute_with_matrices(&h_a, &h_b, &h_m, &perm, alpha)?;
fn block(m: &Tensor) -> mixbt::Result<Tensor> {
    Ok(m.narrow(0, 0, 24)?.narrow(1, 0, 24)?)
}
heatmap_svg("C^MA (first 24 features)", &block(mats.c_ma.as_ref().unwrap())?, -1.0, 1.0)?
    .caption("Correlation of the mixed batch's features (rows) with view A's (columns), untrained network.")"""),
    code("""heatmap_svg("target C^MA_gt = α·C^AA + (1−α)·C^{B[perm],A}", &block(mats.c_ma_gt.as_ref().unwrap())?, -1.0, 1.0)?
    .caption("Compare with C^MA above: the regulariser is the sum of squared differences of the two pictures. Where they differ, the embedding of the mix is not the mix of the embeddings.")"""),
    code("""heatmap_svg("C^MB (first 24 features)", &block(mats.c_mb.as_ref().unwrap())?, -1.0, 1.0)?
    .caption("Correlation of the mixed batch's features (rows) with view B's (columns).")"""),
    code("""heatmap_svg("target C^MB_gt = α·C^AB + (1−α)·C^{B[perm],B}", &block(mats.c_mb_gt.as_ref().unwrap())?, -1.0, 1.0)?
    .caption("The same for view B. Its target's first term is C^AB, the Barlow Twins matrix itself (small data sets; the ImageNet code uses C^BB here).")"""),
    md("""
## 6. The regulariser and the total loss

$$ \\mathcal{L}_{reg} = \\lambda_{reg}\\, \\lambda_{BT} \\left( \\lVert C^{MA} - C^{MA}_{gt} \\rVert_F^2 + \\lVert C^{MB} - C^{MB}_{gt} \\rVert_F^2 \\right), \\qquad \\mathcal{L} = \\mathcal{L}_{BT} + \\mathcal{L}_{reg} $$

(the README's "λ_reg" is `mixup_loss_scale`; the effective weight is $\\lambda_{reg} \\lambda_{BT}$,
e.g. $4 \\times 1/128$). Nothing is detached: the gradient flows through the targets too.
"""),
    code("""fn f(t: &Tensor) -> f32 {
    t.to_scalar::<f32>().unwrap()
}
println!("‖C^MA − target‖² = {:.3}, ‖C^MB − target‖² = {:.3}", f(&parts.reg_ma), f(&parts.reg_mb));
println!("loss_reg = λ_reg · λ_BT · (…) = {:.4}", f(&parts.loss_reg));
println!("total = loss_bt + loss_reg = {:.3}", f(&parts.total));"""),
    md("""
## 7. One optimisation step

Adam with PyTorch's coupled L2 weight decay, as the small-data-set recipes:
$\\theta \\leftarrow \\theta - \\eta\\, \\hat m / (\\sqrt{\\hat v} + \\epsilon)$ on the gradient of $\\mathcal{L}$
(plus $\\lambda_{wd} \\theta$). The loss on the same batch drops.
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
    code("""report::bars_svg("the loss on one batch, before and after one Adam step", "loss", &[("before".into(), before as f64), ("after".into(), after as f64)])?
    .caption("One gradient step on this batch lowers its loss: the gradient of all three passes (A, B and the mix) reaches every weight.")"""),
])

nb3 = notebook([
    md("""
# 03 · λ and d ablations, with the spread over seeds

The paper's ImageNet ablation varies $\\lambda_{reg}$, the weight of the mixed-sample regulariser;
its argument that Barlow Twins overfits rests on the projector width $d$. Here both sweeps run on
the built-in data set with a tiny ResNet-18 and a short schedule, **three seeds per value**, so
that a difference between two values can be compared with the seed-to-seed spread.
$\\lambda_{reg} = 0$ is plain Barlow Twins (no mixed pass). Budgets this small show trends, not the
paper's numbers.

`mixbt::train::sweep(recipe, param, values, seeds)` runs the grid and returns one row per
(value, seed); `param` is any numeric recipe field by its path (`loss.lambda_bt`,
`optimizer.lr`, `batch_size`, …) or the named knobs `lambda_reg` and `d`.
"""),
    code(SETUP),
    code(PRELUDE),
    code(DATA),
    code("""use mixbt::polars::prelude::*;
use mixbt::train::sweep::{by_value, paired_verdict, spread, spread_verdict, sweep_with};

let mut base = data_recipe(presets::quickstart());
base.encoder.backbone.width = 0.0625;
base.encoder.projector = mixbt::model::ProjectorConfig::small_with_hidden(base.encoder.backbone.feature_dim(), 256, 256);
base.data.builtin = Some(data::BuiltinConfig { train_size: 1024, test_size: 500, ..Default::default() });
base.data.bank_subset = Some(2000);
base.batch_size = 64;
base.epochs = 2;
let seeds = [0u64, 1, 2];
let opts = PretrainOptions { device: device.clone(), ..Default::default() };
fn progress(r: &mixbt::train::sweep::SweepRow) {
    println!("value {:<7} seed {}: k-NN top-1 {:.2}% ({:.0} s)", r.value, r.seed, r.knn_top1, r.seconds);
}"""),
    md("## λ_reg, three seeds each"),
    code("""let lambdas = [0.0, 0.1, 1.0, 4.0];
let by_lambda = sweep_with(&base, "lambda_reg", &lambdas, &seeds, &opts, progress)?;
Table::new(by_lambda.clone())"""),
    code("""let groups = by_value(&by_lambda, "knn_top1")?; // per λ_reg: the three seeds' accuracies
let cats: Vec<String> = groups.iter().map(|g| format!("{}", g.0)).collect();
let per_seed: Vec<Vec<f64>> = groups.iter().map(|g| g.1.clone()).collect();
let bt = spread(&by_lambda, "knn_top1")?[0].1; // mean at λ_reg = 0: Barlow Twins
let verdict = spread_verdict(&by_lambda, "knn_top1")?;
println!("{verdict}");
println!("{}", paired_verdict(&by_lambda, "knn_top1", 0.0)?);
report::spread_svg("ours: k-NN top-1 by λ_reg (built-in data, tiny budget, 3 seeds)", "λ_reg", "k-NN top-1 (%)", &cats, &per_seed, Some(("Barlow Twins (λ_reg = 0), mean", bt)))?
    .caption(&format!("Dots: one pre-training run each (seeds 0, 1, 2); line: their mean. The dashed line is plain Barlow Twins. {verdict}"))"""),
    md("""
The seeds move every value together (a seed fixes the initialisation and the data order), so
the fairer comparison is seed by seed: the paired differences above say whether λ_reg helps on
every seed, not just on average.
"""),
    md("""
## The projector width $d$, three seeds each

The paper argues that Barlow Twins overfits more as $d$ grows (more features to decorrelate from
few samples) and that the regulariser helps most there. The same sweep over $d$ with
$\\lambda_{reg} = 4$ (Mixed Barlow Twins):
"""),
    code("""let ds_ = [64.0, 256.0, 1024.0];
let by_d = sweep_with(&base, "d", &ds_, &seeds, &opts, progress)?;
let groups = by_value(&by_d, "knn_top1")?;
let verdict_d = spread_verdict(&by_d, "knn_top1")?;
println!("{verdict_d}");
report::spread_svg("ours: k-NN top-1 by projector width d (λ_reg = 4, 3 seeds)", "d", "k-NN top-1 (%)",
    &groups.iter().map(|g| format!("{}", g.0)).collect::<Vec<_>>(), &groups.iter().map(|g| g.1.clone()).collect::<Vec<_>>(), None)?
    .caption(&format!("Dots: one run each; line: the mean over seeds. {verdict_d}"))"""),
    code("""Table::new(by_d.clone())"""),
    md("""
## The paper's ImageNet ablation (ResNet-50, 300 epochs, linear probe top-1)

From the presets (the paper's recipes as data) — the numbers the README of the original reports
(one run each; the paper gives no spread). The differences are a point or so, so the axis shows
that range, with Barlow Twins ($\\lambda_{reg} = 0$) as the reference line:
"""),
    code("""let paper: Vec<(f64, f64)> = presets::all().into_iter()
    .filter(|r| r.name.starts_with("imagenet-r50-300ep"))
    .map(|r| (r.lambda_reg().unwrap_or(f64::NAN), r.paper.and_then(|p| p.linear_top1).unwrap_or(f64::NAN)))
    .collect();
let df = DataFrame::new(paper.len(), vec![
    Column::new("lambda_reg".into(), paper.iter().map(|p| p.0).collect::<Vec<_>>()),
    Column::new("paper_linear_top1".into(), paper.iter().map(|p| p.1).collect::<Vec<_>>()),
]).unwrap();
Table::new(df.clone())"""),
    code("""let bt_paper = paper.iter().find(|p| p.0 == 0.0).map(|p| p.1);
let mixed: Vec<(f64, f64)> = paper.iter().copied().filter(|p| p.0 != 0.0).collect();
report::spread_svg("paper: ImageNet linear top-1 by λ_reg (ResNet-50, 300 epochs)", "λ_reg", "linear top-1 (%)",
    &mixed.iter().map(|p| format!("{}", p.0)).collect::<Vec<_>>(), &mixed.iter().map(|p| vec![p.1]).collect::<Vec<_>>(),
    bt_paper.map(|v| ("Barlow Twins (λ_reg = 0)", v)))?
    .caption("One run per value, as reported in the original README. Above the dashed line, mixing helped; the whole range is 1.3 points.")"""),
])

nb4 = notebook([
    md("""
# 04 · Pre-trained checkpoints from the Hub

The paper's released checkpoints are listed in `hub/registry.json` (Hub repo `wgcban/mix-bt`).
This notebook lists them, pulls one through the Hub client (cache, checksum), imports the
original PyTorch file, embeds images and runs k-NN, and compares with the paper's number.

Offline it can talk to a local server that speaks the Hub's HTTP protocol: set
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
overrides it (any `hub:` reference or local file).
"""),
    code("""let reference = std::env::var("MIXBT_HUB_CHECKPOINT")
    .unwrap_or_else(|_| "hub:wgcban/mix-bt/checkpoints/4wdhbpcf_0.0078125_1024_256_cifar10_model.pth".into());
let path = mixbt::hub::resolve_checkpoint(&reference)?;
println!("{reference}\\n→ {} (in the local Hub cache)", path.file_name().unwrap_or_default().to_string_lossy());
let (enc, store, cfg) = mixbt::ckpt::load_encoder(&path, &device)?;
println!("{} ({} stem, width ×{}), projector {:?}, {} tensors", cfg.backbone.arch.name(), cfg.backbone.stem.name(), cfg.backbone.width, cfg.projector.sizes, store.names().len());"""),
    md("Embed the test images and run the weighted k-NN (bank: train split, eval transform):"),
    code("""let mut r = data_recipe(presets::quickstart());
r.data.bank_subset = Some(r.data.bank_subset.unwrap_or(4000));
let knn = knn_eval(&enc, &r.data, &KnnConfig::default(), 0)?;
println!("k-NN top-1 {:.2}%, top-5 {:.2}% on {} test images", knn.top1, knn.top5, knn.n_test);"""),
    md("""
Beside the paper's number — only when the data are the paper's. On the built-in data set (the
default) a CIFAR-10 model meets images it never saw, so its k-NN accuracy there says
nothing about the paper's 90.52 %: the chart then shows our number alone and the paper's is
printed, labelled, apart. Set `MIXBT_CIFAR10` to the real CIFAR-10 to compare like with like.
"""),
    code("""let file = reference.rsplit('/').next().unwrap_or("").to_string();
let paper = reg.checkpoints.iter().find(|c| c.file == file).and_then(|c| c.knn_top1);
let on_cifar = std::env::var("MIXBT_CIFAR10").is_ok();
let mut bars = vec![(if on_cifar { "this notebook (CIFAR-10 test)" } else { "this notebook (built-in data)" }.to_string(), knn.top1)];
match (paper, on_cifar) {
    (Some(p), true) => bars.push(("paper (CIFAR-10 test)".to_string(), p)),
    (Some(p), false) => println!("paper, on CIFAR-10 (not comparable with the built-in data): k-NN top-1 {p:.2}%"),
    (None, _) => println!("{file} is not a released checkpoint: no paper number"),
}
let note = if on_cifar { "Same data, same protocol (k = 200, T = 0.5): the two bars are comparable." } else { "The built-in data set, not CIFAR-10: this number is not comparable with the paper's, which is therefore not drawn." };
report::bars_svg("k-NN top-1 of the pulled model", "accuracy %", &bars)?.caption(note)"""),
    code("""let test_ds = data::open(&r.data, Split::Test)?;
let classes = test_ds.classes();
let test = labelled_features(&enc, test_ds, &r.data.eval, 256, 0)?;
report::pca_svg("test embeddings of the pulled model (PCA)", &test.features, &test.labels, &classes)?
    .caption("The first two principal components of the pulled model's features of the test images, one colour per class.")"""),
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
`MIXBT_HUB_CHECKPOINT` overrides it (any `hub:` reference or local file).
"""),
    code("""use mixbt::eval::transfer::{self, TransferConfig, TransferTarget};
use mixbt::data::transfer::{TargetSpec, TARGETS};
let reference = std::env::var("MIXBT_HUB_CHECKPOINT")
    .unwrap_or_else(|_| "hub:wgcban/mix-bt/checkpoints/4wdhbpcf_0.0078125_1024_256_cifar10_model.pth".into());
let path = mixbt::hub::resolve_checkpoint(&reference)?;
let (enc, _, cfg) = mixbt::ckpt::load_encoder(&path, &device)?;
let size = transfer::default_resize(&enc);
println!("{reference}\\n→ {} ({}, {} stem): images resized to {size}×{size}", path.file_name().unwrap_or_default().to_string_lossy(), cfg.backbone.arch.name(), cfg.backbone.stem.name());"""),
    md("""
Where the targets are: `MIXBT_TRANSFER_ROOT` (one folder per target, named as in the original's
scripts, each holding the files its official archive unpacks to; see `data/README.md`). The
tests use tiny copies in each real format (`tests/fixtures/transfer`). Targets whose folder is
absent are skipped.
"""),
    code("""let root = std::path::PathBuf::from(std::env::var("MIXBT_TRANSFER_ROOT").unwrap_or_else(|_| "../data/transfer".into()));
let specs = TargetSpec::all_known();
for s in &specs {
    let dir = s.folder(Some(&root)).unwrap();
    println!("{:>13}: {} {}", s.name, if dir.exists() { "found  " } else { "missing" }, dir.strip_prefix(&root).unwrap_or(&dir).display());
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
report::lines_svg(&format!("{}: test top-1 per probe epoch", target.name), "epoch", "test top-1 (%)", &series, false)?
    .caption("Test accuracy of the linear classifier after each epoch on the frozen features; the original reports the maximum over epochs (best_top1).")"""),
    md("""
## Every target

`transfer::transfer` runs the same two steps on every target present and returns the table:
one row per target with its class count, split sizes, the best and the last test top-1 and the
wall time.
"""),
    code("""let report_t = transfer::transfer(&enc, &specs, Some(&root), &tcfg, |_| {})?;
for (t, f) in &report_t.skipped { println!("skipped {t}: {} not found", f.strip_prefix(&root).unwrap_or(f).display()); }
Table::new(report_t.to_dataframe()?)"""),
    md("""
**Beside the paper.** The paper reports its transfer accuracies per target in a table of the PDF
(arXiv 2312.02151); they have not been transcribed into this project, so none are drawn here
rather than made up. What
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
    None => println!("{file} is not a released checkpoint: no paper number to show"),
}
report::transfer_chart("Linear transfer of the pulled model (best and last test top-1 per target)", &report_t.rows, &[])?"""),
])

nb5 = notebook([
    md("""
# 05 · Five methods compared on one budget

The paper's claims are comparisons: Mixed Barlow Twins against plain Barlow Twins and the
self-supervised baselines it cites — SimCLR, BYOL and W-MSE (the original repository ships them in
`ssl-sota/`). In mixbt they are plug-ins of the one trainer (`mixbt::method`), so the same
`Pretrainer` runs each with the same data, backbone, optimiser, schedule and budget; only the
method differs:

| method | what it asks of the two views' embeddings $z^A, z^B$ |
|---|---|
| **Barlow Twins** (`bt`) | the cross-correlation matrix $C = \\tilde z^{A\\top} \\tilde z^B / N$ of the standardised embeddings should be the identity |
| **Mixed Barlow Twins** (`mixbt`) | the same, plus: the embedding of a mixed image $\\alpha x^A + (1-\\alpha) x^B_\\pi$ should correlate with the others as the mix of theirs |
| **SimCLR** (`simclr`) | each image's other view should be the most similar among all $2N-1$ embeddings of the batch (NT-Xent, $\\tau = 0.5$) |
| **BYOL** (`byol`) | an online network with a predictor should predict a target network's projection; the target is an EMA of the online one |
| **W-MSE** (`wmse`) | after whitening each sub-batch of embeddings, the two views should be close ($2 - 2\\cos$) |

Every method is scored with the paper's weighted k-NN (k = 200, T = 0.5) and with `ssl-sota`'s
(k = 5, Euclidean, majority vote), so all five meet on the same numbers.
"""),
    code(SETUP),
    code(PRELUDE),
    code(DATA),
    md("""
The budget: the `quickstart-<method>` presets as they are — quickstart's data (6,000 built-in
images), backbone (ResNet-18 at width 1/8), schedule and batch (3 epochs of 64 = 279 steps), and
one optimiser for all five (Adam at a peak learning rate of 3e-3, `ssl-sota`'s), with a k-NN after
every epoch: about six minutes for the five on two CPU cores. (`quickstart` itself runs Mixed
Barlow Twins at `main.py`'s 3e-3 × batch/256, a quarter of that.) With `MIXBT_CIFAR10` set, real
CIFAR-10 subsets instead.
"""),
    code("""fn budget(method: &str) -> Result<Recipe> {
    let mut r = data_recipe(presets::get(&format!("quickstart-{method}"))?);
    r.knn_every_epochs = 1;
    Ok(r)
}
let methods = ["mixbt", "bt", "simclr", "byol", "wmse"];
for m in methods {
    let r = budget(m)?;
    println!("{m:>6}: {} (projector {:?})", r.method.name(), r.encoder.projector.sizes);
}"""),
    md("Train the five (same seed: the same initial backbone and the same data order for all):"),
    code("""let mut runs: Vec<(String, Summary, History)> = vec![];
for m in methods {
    let mut t = Pretrainer::new(budget(m)?, PretrainOptions { seed: 0, device: device.clone(), ..Default::default() })?;
    let s = t.fit()?;
    println!("{m:>6}: {} steps in {:.1} s, k-NN top-1 {:.2}% (random init {:.2}%), k=5 top-1 {:.2}%", s.steps, s.wall_seconds, s.knn_top1, s.knn_top1_random_init, s.knn5_top1);
    runs.push((m.to_string(), s, t.history().clone()));
}"""),
    md("One table: both k-NN protocols, the randomly initialised network, wall time and throughput (images per second, each with all its views):"),
    code("""use mixbt::polars::prelude::*;
fn summary_col(runs: &[(String, Summary, History)], name: &str, f: fn(&Summary) -> f64) -> Column {
    Column::new(name.into(), runs.iter().map(|r| f(&r.1)).collect::<Vec<_>>())
}
let table = DataFrame::new(runs.len(), vec![
    Column::new("method".into(), runs.iter().map(|r| r.0.clone()).collect::<Vec<_>>()),
    summary_col(&runs, "knn200_top1", |s| s.knn_top1),
    summary_col(&runs, "knn200_top5", |s| s.knn_top5),
    summary_col(&runs, "knn5_top1", |s| s.knn5_top1),
    summary_col(&runs, "knn5_top5", |s| s.knn5_top5),
    summary_col(&runs, "random_init_top1", |s| s.knn_top1_random_init),
    summary_col(&runs, "wall_s", |s| s.wall_seconds),
    summary_col(&runs, "images_per_s", |s| s.images_per_s),
]).unwrap();
Table::new(table.clone())"""),
    md("""
One seed and three epochs of toy data: read the table as a smoke test of each method, not as a
ranking. Over seeds 0–2 (`docs/methods.md`, measured with an earlier `quickstart` whose Barlow
Twins embedding was d = 512) Barlow Twins, Mixed Barlow Twins and SimCLR beat the randomly
initialised network every time, BYOL and W-MSE only with seed 0; SimCLR learned these shapes
fastest.

k-NN top-1 over training, all five on one chart (the flat line is the shared random initialisation):
"""),
    code("""let mut series: Vec<(String, Vec<(f64, f64)>)> = runs.iter()
    .map(|(m, _, h)| (m.clone(), h.rows.iter().filter_map(|r| r.knn_top1.map(|v| (r.step as f64, v))).collect()))
    .collect();
let last = runs.iter().flat_map(|r| r.2.rows.last().map(|x| x.step as f64)).fold(1.0, f64::max);
series.push(("random init".into(), vec![(0.0, runs[0].1.knn_top1_random_init), (last, runs[0].1.knn_top1_random_init)]));
report::lines_svg("k-NN top-1 over training (k = 200, T = 0.5)", "step", "accuracy %", &series, false)?
    .caption("Weighted k-NN of each method's backbone after every epoch, on the same test images; one budget, one seed.")"""),
    md("""
## Each method's own loss

The history of every method has the columns its method reports; `report::loss_chart` draws the
loss the optimiser minimises and every component (columns named `loss_…`) without knowing the
method. Mixed Barlow Twins: $\\mathcal{L}_{BT}$ and the regulariser; SimCLR: the two directions of
NT-Xent (view A against the batch, view B against the batch); BYOL: online A → target B and
online B → target A; W-MSE: one term per whitening iteration.
"""),
    md("**Mixed Barlow Twins** — `loss_bt` (on-diagonal + λ_BT · off-diagonal) and `loss_reg`, the mixed-sample regulariser:"),
    code("""report::loss_chart(&runs[0].2, 5)?"""),
    md("**Barlow Twins** — the same without the mixed pass (`loss_reg` stays 0, so it is not drawn):"),
    code("""report::loss_chart(&runs[1].2, 5)?"""),
    md("**SimCLR** — the two halves of NT-Xent ($\\log(2N-1) \\approx 4.84$ for $N = 64$ is chance level; each half starts near half of it):"),
    code("""report::loss_chart(&runs[2].2, 5)?"""),
    md("**BYOL** — online A → target B and online B → target A, each $2 - 2\\cos \\in [0, 4]$:"),
    code("""report::loss_chart(&runs[3].2, 5)?"""),
    md("**W-MSE** — one whitening iteration here (`loss_w1`); 2 is what unrelated whitened views give:"),
    code("""report::loss_chart(&runs[4].2, 5)?"""),
    md("The columns each method reported (the first rows of BYOL's history: its EMA coefficient τ is a column too):"),
    code("""Table::new(runs[3].2.to_dataframe()?.head(Some(3)))"""),
    md("""
## Beside the published numbers

Published references, labelled as such: the paper's ResNet-18 on CIFAR-10 (2,000 epochs, the
released checkpoint, as the original README reports it) reaches k-NN top-1 **90.52 %** with
Mixed Barlow Twins. The baselines' numbers in the paper's comparison table and in the W-MSE paper
have not been transcribed into this project and are not drawn rather than made up. On the built-in
data (the default) our numbers are not comparable with any of them: the chart then shows
ours alone; with `MIXBT_CIFAR10` the paper's bar is drawn beside them, still a 2,000-epoch run
against our minutes.
"""),
    code("""let on_cifar = std::env::var("MIXBT_CIFAR10").is_ok();
let mut bars: Vec<(String, f64)> = runs.iter().map(|(m, s, _)| (m.clone(), s.knn_top1)).collect();
if on_cifar {
    bars.push(("paper mixbt R18 (2000 ep)".into(), 90.52));
} else {
    println!("paper, Mixed Barlow Twins ResNet-18 on CIFAR-10 after 2000 epochs (not comparable with the built-in data): k-NN top-1 90.52%");
}
let note = if on_cifar { "Our five on CIFAR-10 subsets after minutes, and the paper's released model after 2,000 epochs (labelled)." } else { "The built-in data, one small budget: a comparison of the five methods with each other only." };
report::bars_svg("k-NN top-1 per method", "accuracy %", &bars)?.caption(note)"""),
])

NOTEBOOKS = [("01-quickstart", nb1), ("02-mixed-barlow-twins-step-by-step", nb2), ("03-lambda-ablation", nb3),
             ("04-pretrained-from-the-hub", nb4), ("05-methods-compared", nb5), ("06-transfer", nb6)]


def source(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def carry_outputs(nb, old):
    """Give each code cell of `nb` the outputs of the cell of `old` with the same id and the same
    source (an edited cell loses its outputs until the notebooks are executed again)."""
    by_id = {c.get("id"): c for c in (old or {}).get("cells", [])}
    for cell in nb["cells"]:
        prev = by_id.get(cell["id"])
        if cell["cell_type"] == "code" and prev is not None and source(prev) == source(cell):
            cell["outputs"] = prev.get("outputs", [])
            cell["execution_count"] = prev.get("execution_count")


def read(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def main():
    import sys
    args = sys.argv[1:]
    check = "--check" in args
    executed = args[args.index("--outputs") + 1] if "--outputs" in args else None
    problems = []
    for name, nb in NOTEBOOKS:
        for i, cell in enumerate(nb["cells"]):
            cell["id"] = f"{name[:2]}-{i:02d}"  # stable cell ids (nbformat 4.5)
        path = os.path.join(OUT, name + ".ipynb")
        committed = read(path)
        if check:
            want = [(c["cell_type"], source(c)) for c in nb["cells"]]
            have = [(c["cell_type"], source(c)) for c in (committed or {}).get("cells", [])]
            if want != have:
                k = next((i for i, (a, b) in enumerate(zip(want, have)) if a != b), min(len(want), len(have)))
                problems.append(f"notebooks/{name}.ipynb differs from scripts/make_notebooks.py (cell {k}); run python3 scripts/make_notebooks.py")
            continue
        # Outputs: from freshly executed copies when given, else kept from the committed file.
        carry_outputs(nb, read(os.path.join(executed, name + ".ipynb")) if executed else committed)
        with open(path, "w") as f:
            json.dump(nb, f, indent=1, ensure_ascii=False)
            f.write("\n")
        print("wrote", name)
    if problems:
        sys.exit("\n".join(problems))
    if check:
        print(f"notebooks in sync with scripts/make_notebooks.py ({len(NOTEBOOKS)})")


if __name__ == "__main__":
    main()
