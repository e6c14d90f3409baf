//! ResNet-18 (BasicBlock) and ResNet-50 (Bottleneck v1.5) with the three stems of the paper.

use candle_core::{Module, ModuleT, Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::keys::KeyLayout;
use super::layers::{
    batch_norm, conv2d, global_avg_pool, max_pool2d, BatchNorm, BatchNormConfig, Conv2d, Conv2dConfig, ConvImpl,
    TORCHVISION_CONV_INIT, TORCH_DEFAULT_INIT,
};

/// Backbone architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    #[serde(alias = "resnet18")]
    R18,
    #[serde(alias = "resnet50")]
    R50,
}

impl Arch {
    /// Blocks per stage.
    pub fn blocks(self) -> [usize; 4] {
        match self {
            Arch::R18 => [2, 2, 2, 2],
            Arch::R50 => [3, 4, 6, 3],
        }
    }
    /// Output channels of a block per plane (BasicBlock 1, Bottleneck 4).
    pub fn expansion(self) -> usize {
        match self {
            Arch::R18 => 1,
            Arch::R50 => 4,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Arch::R18 => "resnet18",
            Arch::R50 => "resnet50",
        }
    }
}

impl std::str::FromStr for Arch {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "r18" | "resnet18" | "resnet-18" => Ok(Arch::R18),
            "r50" | "resnet50" | "resnet-50" => Ok(Arch::R50),
            _ => Err(crate::Error::Config(format!("unknown arch `{s}` (resnet18 or resnet50)"))),
        }
    }
}

/// The first layers of the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stem {
    /// 3×3 stride-1 conv, no max-pool (CIFAR-10/100, 32×32).
    Cifar,
    /// 3×3 stride-1 conv + max-pool 3/2/1 (STL-10, TinyImageNet, 64×64).
    Small64,
    /// 7×7 stride-2 conv + max-pool 3/2/1 (ImageNet, 224×224).
    Imagenet,
}

impl Stem {
    /// The parameter-name layout of the original code for this stem.
    pub fn key_layout(self) -> KeyLayout {
        match self {
            Stem::Cifar => KeyLayout::SmallCifar,
            Stem::Small64 => KeyLayout::SmallPooled,
            Stem::Imagenet => KeyLayout::ImageNet,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Stem::Cifar => "cifar",
            Stem::Small64 => "small64",
            Stem::Imagenet => "imagenet",
        }
    }
}

impl std::str::FromStr for Stem {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "cifar" => Ok(Stem::Cifar),
            "small64" => Ok(Stem::Small64),
            "imagenet" => Ok(Stem::Imagenet),
            _ => Err(crate::Error::Config(format!("unknown stem `{s}` (cifar, small64 or imagenet)"))),
        }
    }
}

/// ResNet configuration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ResNetConfig {
    pub arch: Arch,
    pub stem: Stem,
    /// Width multiplier on the channel counts (1.0 = the paper; 0.125 trains on a laptop CPU).
    pub width: f64,
    /// Zero-initialise the last BN of each residual block (torchvision option; ImageNet recipe).
    pub zero_init_residual: bool,
    #[serde(default)]
    pub conv_impl: ConvImpl,
}

impl Default for ResNetConfig {
    fn default() -> Self {
        Self { arch: Arch::R18, stem: Stem::Cifar, width: 1.0, zero_init_residual: false, conv_impl: ConvImpl::Auto }
    }
}

impl ResNetConfig {
    /// Channels of stage `i` before expansion (64, 128, 256, 512 at width 1).
    pub fn planes(&self, i: usize) -> usize {
        ((64 << i) as f64 * self.width).round().max(1.0) as usize
    }
    /// Channels of the stem.
    pub fn stem_channels(&self) -> usize {
        self.planes(0)
    }
    /// Size of the pooled feature (512 for ResNet-18, 2048 for ResNet-50 at width 1).
    pub fn feature_dim(&self) -> usize {
        self.planes(3) * self.arch.expansion()
    }
    /// Trainable parameters (conv weights, BN weights and biases), counted from the
    /// architecture without building it (u128: absurd widths do not overflow).
    pub fn num_params(&self) -> u128 {
        let bn = |c: u128| 2 * c;
        let c0 = self.stem_channels() as u128;
        let k: u128 = if self.stem == Stem::Imagenet { 7 } else { 3 };
        let mut n = 3 * c0 * k * k + bn(c0);
        let mut in_c = c0;
        let e = self.arch.expansion() as u128;
        for (i, &blocks) in self.arch.blocks().iter().enumerate() {
            let p = self.planes(i) as u128;
            for j in 0..blocks {
                let stride = if i > 0 && j == 0 { 2 } else { 1 };
                let out = p * e;
                n += match self.arch {
                    Arch::R18 => in_c * p * 9 + bn(p) + p * p * 9 + bn(p),
                    Arch::R50 => in_c * p + bn(p) + p * p * 9 + bn(p) + p * out + bn(out),
                };
                if stride != 1 || in_c != out {
                    n += in_c * out + bn(out);
                }
                in_c = out;
            }
        }
        n
    }

    /// An [`Error::Field`](crate::Error::Field) naming `backbone.width` unless it is positive
    /// and finite.
    pub fn validate(&self) -> crate::Result<()> {
        if !(self.width > 0.0 && self.width.is_finite()) {
            return Err(crate::Error::field("backbone.width", format!("must be a positive width multiplier, got {}", self.width)));
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct Downsample {
    conv: Conv2d,
    bn: BatchNorm,
}

/// One residual block (BasicBlock when `conv3` is `None`, else Bottleneck).
#[derive(Debug, Clone)]
pub struct Block {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    conv3: Option<(Conv2d, BatchNorm)>,
    downsample: Option<Downsample>,
}

impl ModuleT for Block {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut y = self.bn1.forward_relu_t(&self.conv1.forward(x)?, train)?;
        y = match &self.conv3 {
            None => self.bn2.forward_t(&self.conv2.forward(&y)?, train)?,
            Some((c3, b3)) => {
                let y = self.bn2.forward_relu_t(&self.conv2.forward(&y)?, train)?;
                b3.forward_t(&c3.forward(&y)?, train)?
            }
        };
        let id = match &self.downsample {
            Some(d) => d.bn.forward_t(&d.conv.forward(x)?, train)?,
            None => x.clone(),
        };
        crate::ops::add_relu(&y, &id)
    }
}

fn block(cfg: &ResNetConfig, in_c: usize, planes: usize, stride: usize, vb: VarBuilder) -> Result<Block> {
    let conv = |i: usize, o: usize, k: usize, s: usize, vb: VarBuilder| {
        let c = Conv2dConfig { stride: s, padding: k / 2, init: TORCHVISION_CONV_INIT, imp: cfg.conv_impl };
        conv2d(i, o, k, c, vb)
    };
    let bn = BatchNormConfig::default();
    let last_bn = BatchNormConfig { weight_init: if cfg.zero_init_residual { 0.0 } else { 1.0 }, ..bn };
    let out_c = planes * cfg.arch.expansion();
    let downsample = if stride != 1 || in_c != out_c {
        Some(Downsample {
            conv: conv(in_c, out_c, 1, stride, vb.pp("downsample.0"))?,
            bn: batch_norm(out_c, bn, vb.pp("downsample.1"))?,
        })
    } else {
        None
    };
    match cfg.arch {
        Arch::R18 => Ok(Block {
            conv1: conv(in_c, planes, 3, stride, vb.pp("conv1"))?,
            bn1: batch_norm(planes, bn, vb.pp("bn1"))?,
            conv2: conv(planes, planes, 3, 1, vb.pp("conv2"))?,
            bn2: batch_norm(planes, last_bn, vb.pp("bn2"))?,
            conv3: None,
            downsample,
        }),
        // Bottleneck v1.5: the stride is on the 3×3 conv.
        Arch::R50 => Ok(Block {
            conv1: conv(in_c, planes, 1, 1, vb.pp("conv1"))?,
            bn1: batch_norm(planes, bn, vb.pp("bn1"))?,
            conv2: conv(planes, planes, 3, stride, vb.pp("conv2"))?,
            bn2: batch_norm(planes, bn, vb.pp("bn2"))?,
            conv3: Some((conv(planes, out_c, 1, 1, vb.pp("conv3"))?, batch_norm(out_c, last_bn, vb.pp("bn3"))?)),
            downsample,
        }),
    }
}

/// A ResNet backbone: stem, four stages, global average pool. `forward_t` returns `[N, feature_dim]`.
#[derive(Debug, Clone)]
pub struct ResNet {
    conv1: Conv2d,
    bn1: BatchNorm,
    layers: Vec<Vec<Block>>,
    cfg: ResNetConfig,
}

/// Build a ResNet whose parameters are named as the original code names them in `layout`
/// (see [`KeyLayout`]); `vb` is the model root.
pub fn resnet(cfg: &ResNetConfig, layout: KeyLayout, vb: VarBuilder) -> crate::Result<ResNet> {
    cfg.validate()?;
    let c0 = cfg.stem_channels();
    let conv1 = match cfg.stem {
        // The replaced 3×3 conv1 of model.py keeps PyTorch's default Conv2d init.
        Stem::Cifar | Stem::Small64 => {
            let c = Conv2dConfig { stride: 1, padding: 1, init: TORCH_DEFAULT_INIT, imp: cfg.conv_impl };
            conv2d(3, c0, 3, c, vb.pp(layout.prefix("conv1")))?
        }
        Stem::Imagenet => {
            let c = Conv2dConfig { stride: 2, padding: 3, init: TORCHVISION_CONV_INIT, imp: cfg.conv_impl };
            conv2d(3, c0, 7, c, vb.pp(layout.prefix("conv1")))?
        }
    };
    let bn1 = batch_norm(c0, BatchNormConfig::default(), vb.pp(layout.prefix("bn1")))?;
    let mut in_c = c0;
    let mut layers = vec![];
    for (i, &n) in cfg.arch.blocks().iter().enumerate() {
        let vbl = vb.pp(layout.prefix(super::keys::PARTS[2 + i]));
        let planes = cfg.planes(i);
        let mut stage = vec![];
        for j in 0..n {
            let stride = if i > 0 && j == 0 { 2 } else { 1 };
            stage.push(block(cfg, in_c, planes, stride, vbl.pp(j.to_string()))?);
            in_c = planes * cfg.arch.expansion();
        }
        layers.push(stage);
    }
    Ok(ResNet { conv1, bn1, layers, cfg: *cfg })
}

impl ResNet {
    pub fn config(&self) -> &ResNetConfig {
        &self.cfg
    }

    /// The feature map after the last stage, before pooling.
    pub fn forward_features_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut y = self.bn1.forward_relu_t(&self.conv1.forward(x)?, train)?;
        if self.cfg.stem != Stem::Cifar {
            y = max_pool2d(&y, 3, 2, 1)?;
        }
        for stage in &self.layers {
            for b in stage {
                y = b.forward_t(&y, train)?;
            }
        }
        Ok(y)
    }
}

impl ModuleT for ResNet {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        global_avg_pool(&self.forward_features_t(x, train)?)
    }
}
