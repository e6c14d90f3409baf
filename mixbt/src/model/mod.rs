//! The networks: ResNet-18/50 backbones with three stems, projectors, and the encoder.

pub mod classifier;
pub mod encoder;
pub mod keys;
pub mod layers;
pub mod projector;
pub mod resnet;

pub use classifier::Classifier;
pub use encoder::{encoder, l2_normalize, Encoder, EncoderConfig};
pub use keys::KeyLayout;
pub use layers::{BatchNorm, BatchNormConfig, Conv2d, Conv2dConfig, ConvImpl};
pub use projector::{projector, Projector, ProjectorConfig};
pub use resnet::{resnet, Arch, ResNet, ResNetConfig, Stem};
