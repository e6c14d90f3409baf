//! The original pipelines of each data set as [`Transform`]s (reference §5), and the
//! normalisation statistics they use ([`norm`]).

use super::{Interp, Op, Transform};

/// Normalisation statistics of the original code.
pub mod norm {
    /// CIFAR-10 stats of `main.py`/`linear.py` (also used for CIFAR-100 there).
    pub const CIFAR: ([f32; 3], [f32; 3]) = ([0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]);
    pub const TINY: ([f32; 3], [f32; 3]) = ([0.480, 0.448, 0.398], [0.277, 0.269, 0.282]);
    pub const STL: ([f32; 3], [f32; 3]) = ([0.43, 0.42, 0.39], [0.27, 0.26, 0.27]);
    pub const IMAGENET: ([f32; 3], [f32; 3]) = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);
    /// CIFAR-100's own statistics in `ssl-sota` (the baselines), unlike `main.py`.
    pub const CIFAR100_SSL: ([f32; 3], [f32; 3]) = ([0.5071, 0.4867, 0.4408], [0.2675, 0.2565, 0.2761]);
    /// The built-in data set (measured with `mixbt data stats --dataset builtin`).
    pub const BUILTIN: ([f32; 3], [f32; 3]) = ([0.4522, 0.4549, 0.4540], [0.2105, 0.2104, 0.2106]);
}

const JITTER_CIFAR: Op = Op::ColorJitter { p: 0.8, brightness: 0.4, contrast: 0.4, saturation: 0.4, hue: 0.1 };

impl Transform {
    /// `CifarPairTransform(train_transform=True)`: RRC(32) → flip → jitter(0.8) → gray(0.2).
    pub fn cifar_train() -> Self {
        Self::cifar_train_sized(32)
    }
    /// The CIFAR training pipeline at another crop size (the built-in data set uses 32).
    pub fn cifar_train_sized(size: usize) -> Self {
        Self::new(
            vec![
                Op::RandomResizedCrop { size, scale: (0.08, 1.0), ratio: (3.0 / 4.0, 4.0 / 3.0), interp: Interp::Bilinear },
                Op::RandomHorizontalFlip { p: 0.5 },
                JITTER_CIFAR,
                Op::RandomGrayscale { p: 0.2 },
            ],
            norm::CIFAR,
        )
    }
    /// The built-in data set's pre-training pipeline: the CIFAR one with SimCLR-strength colour
    /// distortion (jitter 0.8/0.8/0.8, hue 0.5) and crops of at least 20 %: the shapes' colours
    /// are random, so colour must not survive from one view to the other.
    pub fn builtin_train() -> Self {
        Self::new(
            vec![
                Op::RandomResizedCrop { size: 32, scale: (0.2, 1.0), ratio: (3.0 / 4.0, 4.0 / 3.0), interp: Interp::Bilinear },
                Op::RandomHorizontalFlip { p: 0.5 },
                Op::ColorJitter { p: 0.8, brightness: 0.8, contrast: 0.8, saturation: 0.8, hue: 0.5 },
                Op::RandomGrayscale { p: 0.2 },
            ],
            norm::BUILTIN,
        )
    }
    /// The built-in data set's eval transform.
    pub fn builtin_eval() -> Self {
        Self::normalize_only(norm::BUILTIN)
    }

    /// Evaluation of image folders and parquet data, whose images may have any size:
    /// Resize(32) → CenterCrop(32) (the identity on 32×32 images), CIFAR statistics.
    pub fn folder_eval() -> Self {
        Self::new(vec![Op::Resize { size: 32, interp: Interp::Bilinear }, Op::CenterCrop { size: 32 }], norm::CIFAR)
    }
    /// CIFAR eval: ToTensor + Normalize.
    pub fn cifar_eval() -> Self {
        Self::normalize_only(norm::CIFAR)
    }
    /// `TinyImageNetPairTransform`: jitter(0.8) → gray(0.1) → RRC(64, (0.2,1), bicubic) → flip.
    pub fn tiny_train() -> Self {
        Self::new(Self::small64_ops(), norm::TINY)
    }
    pub fn tiny_eval() -> Self {
        Self::normalize_only(norm::TINY)
    }
    /// `StlPairTransform`: as TinyImageNet (jitter on the full 96×96, then the 64 crop).
    pub fn stl_train() -> Self {
        Self::new(Self::small64_ops(), norm::STL)
    }
    /// STL-10 eval: Resize(70, bicubic) → CenterCrop(64).
    pub fn stl_eval() -> Self {
        Self::new(vec![Op::Resize { size: 70, interp: Interp::Bicubic }, Op::CenterCrop { size: 64 }], norm::STL)
    }
    fn small64_ops() -> Vec<Op> {
        vec![
            JITTER_CIFAR,
            Op::RandomGrayscale { p: 0.1 },
            Op::RandomResizedCrop { size: 64, scale: (0.2, 1.0), ratio: (0.75, 4.0 / 3.0), interp: Interp::Bicubic },
            Op::RandomHorizontalFlip { p: 0.5 },
        ]
    }
    /// `ssl-sota`'s `aug_transform(crop)` (the SimCLR/BYOL/W-MSE baselines): jitter(0.4, 0.4,
    /// 0.4, 0.1; p 0.8) → grey(0.1) → RRC(crop, scale 0.2–1, bicubic) → flip, then `stats`
    /// (crop 32 for CIFAR, 64 for STL-10 and TinyImageNet).
    pub fn ssl_sota(crop: usize, stats: ([f32; 3], [f32; 3])) -> Self {
        Self::new(
            vec![
                JITTER_CIFAR,
                Op::RandomGrayscale { p: 0.1 },
                Op::RandomResizedCrop { size: crop, scale: (0.2, 1.0), ratio: (0.75, 4.0 / 3.0), interp: Interp::Bicubic },
                Op::RandomHorizontalFlip { p: 0.5 },
            ],
            stats,
        )
    }
    /// `main_imagenet.Transform` first view (blur p=1, no solarisation).
    pub fn imagenet_view1() -> Self {
        Self::imagenet_view(1.0, 0.0)
    }
    /// `main_imagenet.Transform` second view (`transform_prime`: blur p=0.1, solarisation p=0.2).
    pub fn imagenet_view2() -> Self {
        Self::imagenet_view(0.1, 0.2)
    }
    fn imagenet_view(blur: f64, solarize: f64) -> Self {
        Self::new(
            vec![
                Op::RandomResizedCrop { size: 224, scale: (0.08, 1.0), ratio: (3.0 / 4.0, 4.0 / 3.0), interp: Interp::Bicubic },
                Op::RandomHorizontalFlip { p: 0.5 },
                Op::ColorJitter { p: 0.8, brightness: 0.4, contrast: 0.4, saturation: 0.2, hue: 0.1 },
                Op::RandomGrayscale { p: 0.2 },
                Op::GaussianBlur { p: blur, sigma: (0.1, 2.0) },
                Op::Solarize { p: solarize, threshold: 128 },
            ],
            norm::IMAGENET,
        )
    }
    /// `evaluate_imagenet.py`'s training transform of the linear probe:
    /// RandomResizedCrop(224) (bilinear, scale 0.08–1) → RandomHorizontalFlip.
    pub fn imagenet_probe_train() -> Self {
        Self::new(
            vec![
                Op::RandomResizedCrop { size: 224, scale: (0.08, 1.0), ratio: (3.0 / 4.0, 4.0 / 3.0), interp: Interp::Bilinear },
                Op::RandomHorizontalFlip { p: 0.5 },
            ],
            norm::IMAGENET,
        )
    }
    /// ImageNet eval: Resize(256) → CenterCrop(224).
    pub fn imagenet_eval() -> Self {
        Self::new(vec![Op::Resize { size: 256, interp: Interp::Bilinear }, Op::CenterCrop { size: 224 }], norm::IMAGENET)
    }
    /// Transfer protocol: Resize((s, s)) bilinear, then Normalize with the target's statistics.
    pub fn transfer(size: usize, stats: ([f32; 3], [f32; 3])) -> Self {
        Self::new(vec![Op::ResizeExact { height: size, width: size, interp: Interp::Bilinear }], stats)
    }
}
