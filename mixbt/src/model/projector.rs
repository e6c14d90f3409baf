//! The projector `g`: Linear → BN → ReLU → … → Linear.

use candle_core::{ModuleT, Result, Tensor};
use candle_nn::{Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use super::keys::{projector_bn_index, projector_linear_index};
use super::layers::{batch_norm, linear, BatchNorm, BatchNormConfig};

/// Projector sizes: `sizes[0]` is the backbone feature size, the last is the output dim `d`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectorConfig {
    pub sizes: Vec<usize>,
    /// Bias on the last Linear (small datasets: yes; ImageNet: no).
    pub last_bias: bool,
    /// Bias on the hidden Linears: none in the Barlow Twins projectors, `nn.Linear`'s default in
    /// `ssl-sota`'s heads (SimCLR, BYOL, W-MSE) and BYOL's predictor.
    #[serde(default)]
    pub hidden_bias: bool,
}

impl ProjectorConfig {
    /// `model.py`'s `g`: Linear(in, 512, no bias) → BN → ReLU → Linear(512, d, bias).
    pub fn small(in_dim: usize, d: usize) -> Self {
        Self::small_with_hidden(in_dim, 512, d)
    }
    /// As [`ProjectorConfig::small`] with another hidden width (tiny test models).
    pub fn small_with_hidden(in_dim: usize, hidden: usize, d: usize) -> Self {
        Self { sizes: vec![in_dim, hidden, d], last_bias: true, hidden_bias: false }
    }
    /// `ssl-sota`'s `get_head` (and BYOL's predictor): Linear(in, hidden) → BN1d → ReLU →
    /// Linear(hidden, emb), both Linears with bias.
    pub fn head(in_dim: usize, hidden: usize, emb: usize) -> Self {
        Self { sizes: vec![in_dim, hidden, emb], last_bias: true, hidden_bias: true }
    }
    /// `main_imagenet.py`'s projector from a spec like `"8192-8192-8192"`.
    pub fn imagenet(in_dim: usize, spec: &str) -> crate::Result<Self> {
        let mut sizes = vec![in_dim];
        for p in spec.split('-') {
            sizes.push(p.trim().parse().map_err(|_| crate::Error::Config(format!("bad projector spec `{spec}`")))?);
        }
        Ok(Self { sizes, last_bias: false, hidden_bias: false })
    }
    /// No projector: an encoder that is a bare backbone (a torchvision `resnet50.pth`, a linear
    /// probe's backbone). Its embeddings are the pooled features.
    pub fn none() -> Self {
        Self { sizes: vec![], last_bias: false, hidden_bias: false }
    }
    /// Whether this is [`none`](Self::none).
    pub fn is_none(&self) -> bool {
        self.sizes.is_empty()
    }
    /// Output size `d` (0 without a projector: see [`EncoderConfig::out_dim`](super::EncoderConfig::out_dim)).
    pub fn out_dim(&self) -> usize {
        self.sizes.last().copied().unwrap_or(0)
    }
    /// Trainable parameters: the Linear weights, the hidden BNs' weights and biases, the last
    /// bias.
    pub fn num_params(&self) -> u128 {
        let s: Vec<u128> = self.sizes.iter().map(|&x| x as u128).collect();
        if s.len() < 2 {
            return 0;
        }
        let mut n: u128 = s.windows(2).map(|w| w[0] * w[1]).sum();
        let per_hidden = if self.hidden_bias { 3 } else { 2 };
        n += s[1..s.len().saturating_sub(1).max(1)].iter().map(|&h| per_hidden * h).sum::<u128>();
        if self.last_bias {
            n += s.last().copied().unwrap_or(0);
        }
        n
    }

    /// An [`Error::Field`](crate::Error::Field) naming `projector.sizes` unless it is
    /// [`none`](Self::none) or has an input and an output size, none of them zero.
    pub fn validate(&self) -> crate::Result<()> {
        if self.is_none() {
            return Ok(());
        }
        if self.sizes.len() < 2 {
            return Err(crate::Error::field("projector.sizes", format!("needs at least an input and an output size, got {:?}", self.sizes)));
        }
        if let Some(i) = self.sizes.iter().position(|&s| s == 0) {
            return Err(crate::Error::field(format!("projector.sizes[{i}]"), format!("is 0 in {:?}", self.sizes)));
        }
        Ok(())
    }
}

/// The projector MLP. Parameter names follow PyTorch's Sequential indices (`0`, `1`, `3`, …).
#[derive(Debug, Clone)]
pub struct Projector {
    hidden: Vec<(Linear, BatchNorm)>,
    last: Linear,
}

/// Build a [`Projector`] under `vb` (e.g. `vb.pp("g")`).
pub fn projector(cfg: &ProjectorConfig, vb: VarBuilder) -> crate::Result<Projector> {
    cfg.validate()?;
    let n = cfg.sizes.len();
    let mut hidden = vec![];
    for i in 0..n - 2 {
        let l = linear(cfg.sizes[i], cfg.sizes[i + 1], cfg.hidden_bias, vb.pp(projector_linear_index(i).to_string()))?;
        let b = batch_norm(cfg.sizes[i + 1], BatchNormConfig::default(), vb.pp(projector_bn_index(i).to_string()))?;
        hidden.push((l, b));
    }
    let last = linear(cfg.sizes[n - 2], cfg.sizes[n - 1], cfg.last_bias, vb.pp(projector_linear_index(n - 2).to_string()))?;
    Ok(Projector { hidden, last })
}

impl ModuleT for Projector {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut y = x.clone();
        for (l, b) in &self.hidden {
            y = b.forward_relu_t(&crate::ops::linear(&y, l)?, train)?;
        }
        crate::ops::linear(&y, &self.last)
    }
}
