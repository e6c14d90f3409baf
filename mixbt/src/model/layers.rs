//! Layers with PyTorch semantics: `Conv2d` (no bias), `BatchNorm` (1-d and 2-d, train/eval), a
//! differentiable max-pool, and `Linear` with `nn.Linear`'s initialisation.

use candle_core::{DType, Device, Module, ModuleT, Result, Tensor, Var, D};
use candle_nn::init::{FanInOut, NonLinearity, NormalOrUniform};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

/// Which convolution kernels a [`Conv2d`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConvImpl {
    /// mixbt's fast CPU kernels on the CPU, candle's elsewhere (CUDA).
    #[default]
    Auto,
    /// candle's own `conv2d` (and its `conv_transpose2d`-based backward).
    Candle,
    /// mixbt's im2col/GEMM custom ops (CPU only).
    Fast,
}

impl ConvImpl {
    /// Whether the fast kernels are used for a tensor on `device`.
    pub fn use_fast(self, device: &Device) -> bool {
        match self {
            ConvImpl::Auto => device.is_cpu(),
            ConvImpl::Candle => false,
            ConvImpl::Fast => true,
        }
    }
}

/// PyTorch's default `nn.Conv2d`/`nn.Linear` weight init: kaiming_uniform(a=√5) = U(±1/√fan_in).
pub const TORCH_DEFAULT_INIT: Init = Init::Kaiming {
    dist: NormalOrUniform::Uniform,
    fan: FanInOut::FanIn,
    non_linearity: NonLinearity::ExplicitGain(0.577_350_269_189_625_8), // sqrt(2/(1+5))
};

/// torchvision ResNet conv init: kaiming_normal(mode="fan_out", nonlinearity="relu").
pub const TORCHVISION_CONV_INIT: Init = Init::Kaiming {
    dist: NormalOrUniform::Normal,
    fan: FanInOut::FanOut,
    non_linearity: NonLinearity::ReLU,
};

/// Configuration of a bias-free 2-d convolution.
#[derive(Debug, Clone, Copy)]
pub struct Conv2dConfig {
    pub stride: usize,
    pub padding: usize,
    pub init: Init,
    pub imp: ConvImpl,
}

impl Default for Conv2dConfig {
    fn default() -> Self {
        Self { stride: 1, padding: 0, init: TORCHVISION_CONV_INIT, imp: ConvImpl::Auto }
    }
}

/// A 2-d convolution without bias (all ResNet convolutions). Weight `[out, in, k, k]`.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    cfg: Conv2dConfig,
}

impl Conv2d {
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
    pub fn config(&self) -> &Conv2dConfig {
        &self.cfg
    }
}

/// Build a [`Conv2d`] with its weight at `vb.pp("weight")`.
pub fn conv2d(in_c: usize, out_c: usize, k: usize, cfg: Conv2dConfig, vb: VarBuilder) -> Result<Conv2d> {
    let weight = vb.get_with_hints((out_c, in_c, k, k), "weight", cfg.init)?;
    Ok(Conv2d { weight, cfg })
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.cfg.imp.use_fast(x.device()) {
            crate::ops::conv2d(x, &self.weight, self.cfg.stride, self.cfg.padding)
        } else {
            crate::ops::conv::conv2d_candle(x, &self.weight, self.cfg.stride, self.cfg.padding)
        }
    }
}

/// Configuration of a batch-norm layer (PyTorch defaults).
#[derive(Debug, Clone, Copy)]
pub struct BatchNormConfig {
    pub eps: f64,
    pub momentum: f64,
    /// Initial weight (γ). 0 for the last BN of a residual block with `zero_init_residual`.
    pub weight_init: f64,
}

impl Default for BatchNormConfig {
    fn default() -> Self {
        Self { eps: 1e-5, momentum: 0.1, weight_init: 1.0 }
    }
}

/// Batch normalisation over dim 1 of a `[N, C]` or `[N, C, H, W]` tensor, as PyTorch's
/// `BatchNorm1d`/`BatchNorm2d`: train mode normalises with the batch statistics (biased variance)
/// and updates `running_mean`/`running_var` with momentum, the variance unbiased (n/(n−1));
/// `num_batches_tracked` counts the updates. Eval mode uses the running statistics.
#[derive(Debug, Clone)]
pub struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
    num_batches_tracked: Var,
    cfg: BatchNormConfig,
}

/// Build a [`BatchNorm`] with PyTorch parameter names (`weight`, `bias`, `running_mean`,
/// `running_var`, `num_batches_tracked`).
pub fn batch_norm(c: usize, cfg: BatchNormConfig, vb: VarBuilder) -> Result<BatchNorm> {
    let weight = vb.get_with_hints(c, "weight", Init::Const(cfg.weight_init))?;
    let bias = vb.get_with_hints(c, "bias", Init::Const(0.0))?;
    let running_mean = Var::from_tensor(&vb.get_with_hints(c, "running_mean", Init::Const(0.0))?)?;
    let running_var = Var::from_tensor(&vb.get_with_hints(c, "running_var", Init::Const(1.0))?)?;
    let nbt = vb.get_with_hints_dtype((), "num_batches_tracked", Init::Const(0.0), DType::I64)?;
    let num_batches_tracked = Var::from_tensor(&nbt)?;
    Ok(BatchNorm { weight, bias, running_mean, running_var, num_batches_tracked, cfg })
}

impl BatchNorm {
    pub fn running_mean(&self) -> &Tensor {
        self.running_mean.as_tensor()
    }
    pub fn running_var(&self) -> &Tensor {
        self.running_var.as_tensor()
    }
    pub fn num_batches_tracked(&self) -> Result<i64> {
        self.num_batches_tracked.as_tensor().to_scalar::<i64>()
    }
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
    pub fn bias(&self) -> &Tensor {
        &self.bias
    }

    /// Shape `[1, C]` or `[1, C, 1, 1]` for broadcasting a per-channel vector against `x`.
    fn bshape(x: &Tensor, v: &Tensor) -> Result<Tensor> {
        match x.rank() {
            2 => v.unsqueeze(0),
            4 => v.reshape((1, v.dim(0)?, 1, 1)),
            r => candle_core::bail!("batch norm expects rank 2 or 4, got rank {r}"),
        }
    }

    fn update_running(&self, mean: &Tensor, var_biased: &Tensor, n: usize) -> Result<()> {
        let m = self.cfg.momentum;
        let unbias = if n > 1 { n as f64 / (n as f64 - 1.0) } else { 1.0 };
        let rm = ((self.running_mean.as_tensor() * (1.0 - m))? + (mean.detach() * m)?)?;
        let rv = ((self.running_var.as_tensor() * (1.0 - m))? + (var_biased.detach() * (m * unbias))?)?;
        self.running_mean.set(&rm)?;
        self.running_var.set(&rv)?;
        let nbt = (self.num_batches_tracked.as_tensor() + 1.0)?;
        self.num_batches_tracked.set(&nbt)?;
        Ok(())
    }

    /// Train mode: batch statistics, over the global batch of every rank when training is
    /// data-parallel ([`crate::dist::world`] has more than one rank: PyTorch's `SyncBatchNorm`).
    fn forward_train(&self, x: &Tensor, relu: bool) -> Result<Tensor> {
        let c = x.dim(1)?;
        let world = crate::dist::world();
        let sync = (world.size() > 1).then_some(world);
        if crate::ops::fast_bn_applies(x) {
            let (y, mean, var, count) = crate::ops::batch_norm_train_sync(x, &self.weight, &self.bias, self.cfg.eps, relu, sync)?;
            self.update_running(&mean, &var, count as usize)?;
            return Ok(y);
        }
        let dims: Vec<usize> = (0..x.rank()).filter(|&d| d != 1).collect();
        let mut n = x.elem_count() / c;
        // Sums over every rank (differentiable: their gradients are summed over ranks too).
        let total = |t: Tensor| -> Result<Tensor> {
            match &sync {
                Some(g) => g.all_reduce(&t).map_err(|e| candle_core::Error::Msg(e.to_string())),
                None => Ok(t),
            }
        };
        if let Some(g) = &sync {
            let mut count = [n as f64];
            g.all_reduce_f64(&mut count).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
            n = count[0] as usize;
        }
        let mean = total(x.sum_keepdim(dims.as_slice())?)?.affine(1.0 / n as f64, 0.0)?;
        let xc = x.broadcast_sub(&mean)?;
        let var = total(xc.sqr()?.sum_keepdim(dims.as_slice())?)?.affine(1.0 / n as f64, 0.0)?;
        let inv = (&var + self.cfg.eps)?.sqrt()?.recip()?;
        let y = xc
            .broadcast_mul(&inv)?
            .broadcast_mul(&Self::bshape(x, &self.weight)?)?
            .broadcast_add(&Self::bshape(x, &self.bias)?)?;
        self.update_running(&mean.flatten_all()?, &var.flatten_all()?, n)?;
        if relu {
            y.relu()
        } else {
            Ok(y)
        }
    }

    /// Eval mode: `[relu](x·scale + shift)` with scale = w / sqrt(rv + eps) and
    /// shift = b − rm·scale, one fused pass on the CPU.
    fn forward_eval(&self, x: &Tensor, relu: bool) -> Result<Tensor> {
        let scale = (&self.weight / (self.running_var.as_tensor() + self.cfg.eps)?.sqrt()?)?;
        let shift = (&self.bias - (self.running_mean.as_tensor() * &scale)?)?;
        crate::ops::channel_affine(x, &scale, &shift, relu)
    }
}

impl BatchNorm {
    /// `relu(bn(x))`, fused on the CPU.
    pub fn forward_relu_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if train {
            self.forward_train(x, true)
        } else {
            self.forward_eval(x, true)
        }
    }
}

impl ModuleT for BatchNorm {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if train {
            self.forward_train(x, false)
        } else {
            self.forward_eval(x, false)
        }
    }
}

/// `nn.Linear` with PyTorch's default initialisation (weight and bias U(±1/√fan_in)).
pub fn linear(in_f: usize, out_f: usize, bias: bool, vb: VarBuilder) -> Result<candle_nn::Linear> {
    let w = vb.get_with_hints((out_f, in_f), "weight", TORCH_DEFAULT_INIT)?;
    let b = if bias {
        let bound = 1.0 / (in_f as f64).sqrt();
        Some(vb.get_with_hints(out_f, "bias", Init::Uniform { lo: -bound, up: bound })?)
    } else {
        None
    };
    Ok(candle_nn::Linear::new(w, b))
}

/// Differentiable 2-d max-pool (`nn.MaxPool2d(k, stride, padding)`), made of candle ops so that it
/// has a backward for any kernel/stride and runs on every device (candle's own `max_pool2d` has
/// no backward when kernel ≠ stride). Padding is −∞ as in PyTorch.
pub fn max_pool2d(x: &Tensor, k: usize, stride: usize, padding: usize) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let ho = (h + 2 * padding - k) / stride + 1;
    let wo = (w + 2 * padding - k) / stride + 1;
    // Pad with -inf so that every window offset can be sliced as `stride * out` rows.
    let hp = (k - 1 + stride * ho).max(h + 2 * padding);
    let wp = (k - 1 + stride * wo).max(w + 2 * padding);
    let neg = |hh: usize, ww: usize| Tensor::full(f32::NEG_INFINITY, (n, c, hh, ww), x.device())?.to_dtype(x.dtype());
    let mut xp = x.clone();
    if padding > 0 || hp > h {
        let bottom = hp - h - padding;
        let mut parts = vec![];
        if padding > 0 {
            parts.push(neg(padding, w)?);
        }
        parts.push(xp);
        if bottom > 0 {
            parts.push(neg(bottom, w)?);
        }
        xp = Tensor::cat(&parts, 2)?;
    }
    if padding > 0 || wp > w {
        let right = wp - w - padding;
        let mut parts = vec![];
        if padding > 0 {
            parts.push(neg(hp, padding)?);
        }
        parts.push(xp);
        if right > 0 {
            parts.push(neg(hp, right)?);
        }
        xp = Tensor::cat(&parts, 3)?;
    }
    let mut out: Option<Tensor> = None;
    for dy in 0..k {
        let rows = xp.narrow(2, dy, stride * ho)?.reshape((n, c, ho, stride, wp))?.narrow(3, 0, 1)?.squeeze(3)?;
        for dx in 0..k {
            let win = rows.narrow(3, dx, stride * wo)?.reshape((n, c, ho, wo, stride))?.narrow(4, 0, 1)?.squeeze(4)?;
            out = Some(match out {
                None => win,
                Some(o) => o.maximum(&win)?,
            });
        }
    }
    out.unwrap().contiguous()
}

/// `AdaptiveAvgPool2d((1,1))` + flatten: `[N, C, H, W]` → `[N, C]`.
pub fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    x.mean(D::Minus1)?.mean(D::Minus1)
}
