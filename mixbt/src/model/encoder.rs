//! [`Encoder`] = ResNet backbone + projector, as `model.py`'s `Model` and `main_imagenet.py`'s `BarlowTwins`.

use candle_core::{Device, ModuleT, Result, Tensor, D};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::keys::KeyLayout;
use super::projector::{projector, Projector, ProjectorConfig};
use super::resnet::{resnet, Arch, ResNet, ResNetConfig, Stem};

/// Encoder configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncoderConfig {
    pub backbone: ResNetConfig,
    pub projector: ProjectorConfig,
    /// Parameter-name layout (derived from the stem by the constructors below).
    pub layout: KeyLayout,
    /// Small-dataset behaviour: the loss works on L2-normalised projector outputs
    /// (`model.py` returns `F.normalize(out)`); ImageNet works on the raw outputs.
    pub l2_normalize: bool,
}

impl EncoderConfig {
    /// `model.py`'s `Model(feature_dim=d, dataset, arch)` at a width multiplier; projector hidden 512.
    pub fn small(arch: Arch, stem: Stem, d: usize, width: f64) -> Self {
        let backbone = ResNetConfig { arch, stem, width, ..Default::default() };
        let projector = ProjectorConfig::small(backbone.feature_dim(), d);
        Self { backbone, projector, layout: stem.key_layout(), l2_normalize: true }
    }

    /// `main_imagenet.py`'s `BarlowTwins`: ResNet-50 (zero_init_residual), projector `spec`.
    pub fn imagenet(spec: &str, width: f64) -> crate::Result<Self> {
        let backbone =
            ResNetConfig { arch: Arch::R50, stem: Stem::Imagenet, width, zero_init_residual: true, ..Default::default() };
        let projector = ProjectorConfig::imagenet(backbone.feature_dim(), spec)?;
        Ok(Self { backbone, projector, layout: KeyLayout::ImageNet, l2_normalize: false })
    }

    /// Pooled backbone feature size.
    pub fn feature_dim(&self) -> usize {
        self.backbone.feature_dim()
    }
    /// Output size `d` of the projector; without one, the pooled feature size.
    pub fn out_dim(&self) -> usize {
        if self.projector.is_none() {
            self.feature_dim()
        } else {
            self.projector.out_dim()
        }
    }

    /// The same encoder at another width multiplier: the backbone's channels scale, the
    /// projector's input follows the new feature size, its hidden and output sizes stay.
    pub fn with_width(mut self, width: f64) -> Self {
        self.backbone.width = width;
        if let Some(first) = self.projector.sizes.first_mut() {
            *first = self.backbone.feature_dim();
        }
        self
    }

    /// Trainable parameters of backbone and projector, counted without building them.
    pub fn num_params(&self) -> u128 {
        self.backbone.num_params() + self.projector.num_params()
    }

    /// An [`Error::Field`](crate::Error::Field) naming the field that cannot be built: the
    /// backbone's width, the projector's sizes, or a projector input that is not the backbone's
    /// feature size.
    pub fn validate(&self) -> crate::Result<()> {
        self.backbone.validate()?;
        self.projector.validate()?;
        let f = self.backbone.feature_dim();
        if !self.projector.is_none() && self.projector.sizes[0] != f {
            return Err(crate::Error::field(
                "projector.sizes[0]",
                format!("is {}, but the backbone's feature size is {f} (set it to the backbone's feature size)", self.projector.sizes[0]),
            ));
        }
        Ok(())
    }
}

/// Backbone + projector. `forward_t` returns the raw `(pooled feature, projector output)`.
#[derive(Debug, Clone)]
pub struct Encoder {
    pub backbone: ResNet,
    /// `None` for a bare backbone ([`ProjectorConfig::none`]).
    pub projector: Option<Projector>,
    cfg: EncoderConfig,
    device: Device,
}

/// Build an [`Encoder`]; `vb` is the model root (names as in the original state dicts).
pub fn encoder(cfg: &EncoderConfig, vb: VarBuilder) -> crate::Result<Encoder> {
    cfg.validate()?;
    let backbone = resnet(&cfg.backbone, cfg.layout, vb.clone())?;
    let projector = if cfg.projector.is_none() { None } else { Some(projector(&cfg.projector, vb.pp(cfg.layout.prefix("projector")))?) };
    Ok(Encoder { backbone, projector, cfg: cfg.clone(), device: vb.device().clone() })
}

/// Row-wise L2 normalisation as `F.normalize(x, dim=-1)` (eps 1e-12).
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(1e-12, f64::INFINITY)?;
    x.broadcast_div(&norm)
}

impl Encoder {
    pub fn config(&self) -> &EncoderConfig {
        &self.cfg
    }

    /// Raw `(pooled backbone feature [N, F], projector output [N, d])`; without a projector the
    /// second is the pooled feature too.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<(Tensor, Tensor)> {
        let f = self.backbone.forward_t(x, train)?;
        let z = match &self.projector {
            Some(p) => p.forward_t(&f, train)?,
            None => f.clone(),
        };
        Ok((f, z))
    }

    /// What the original `Model.forward` returns: both outputs L2-normalised when
    /// `l2_normalize` is set (small datasets), raw otherwise.
    pub fn forward_model_t(&self, x: &Tensor, train: bool) -> Result<(Tensor, Tensor)> {
        let (f, z) = self.forward_t(x, train)?;
        if self.cfg.l2_normalize {
            Ok((l2_normalize(&f)?, l2_normalize(&z)?))
        } else {
            Ok((f, z))
        }
    }

    /// L2-normalised pooled backbone features (k-NN, `embed`), eval mode.
    pub fn embed(&self, x: &Tensor) -> Result<Tensor> {
        l2_normalize(&self.backbone.forward_t(x, false)?)
    }

    /// Raw pooled backbone features, eval mode (linear probes).
    pub fn backbone_features(&self, x: &Tensor) -> Result<Tensor> {
        self.backbone.forward_t(x, false)
    }

    /// The device the parameters live on.
    pub fn device(&self) -> &Device {
        &self.device
    }
}
