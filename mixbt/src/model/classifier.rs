//! [`Classifier`]: a frozen backbone with a linear layer on its pooled feature, as the ImageNet
//! linear probe of `evaluate_imagenet.py` saves it (`backbone` + `fc`).

use candle_core::{Module, Result, Tensor};
use candle_nn::Linear;

use super::Encoder;

/// A backbone (eval mode) and a linear classifier: `forward` gives the logits.
#[derive(Debug, Clone)]
pub struct Classifier {
    pub encoder: Encoder,
    pub fc: Linear,
}

impl Classifier {
    /// Logits `[N, classes]` of images `[N, 3, H, W]` (normalised), the backbone in eval mode.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.fc.forward(&self.encoder.backbone_features(x)?)
    }

    /// Number of classes (rows of `fc.weight`).
    pub fn num_classes(&self) -> usize {
        self.fc.weight().dim(0).unwrap_or(0)
    }
}
