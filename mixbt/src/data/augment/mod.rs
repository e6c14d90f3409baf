//! Image augmentations with torchvision (0.12, on PIL images) semantics: the same parameters,
//! probabilities, order and random draws, and PIL's 8-bit arithmetic (fixed-point resampling,
//! `Image.blend` truncation, `convert("L")` luma, RGB↔HSV), so that views look as the original's.
//!
//! A [`Transform`] is data (a list of [`Op`] and a normalisation). This file holds the types and
//! how ops are applied; `presets` the original pipelines per data set and their normalisation
//! statistics ([`norm`]); `pil` the Pillow-exact pixel routines.

mod pil;
mod presets;

pub use pil::*;
pub use presets::norm;
use pil::color_jitter;

use image::RgbImage;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Resampling filter (PIL's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interp {
    Bilinear,
    Bicubic,
}

/// One augmentation step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// `RandomResizedCrop(size, scale, ratio, interpolation)`.
    RandomResizedCrop { size: usize, scale: (f64, f64), ratio: (f64, f64), interp: Interp },
    /// `RandomHorizontalFlip(p)`.
    RandomHorizontalFlip { p: f64 },
    /// `RandomApply([ColorJitter(brightness, contrast, saturation, hue)], p)`.
    ColorJitter { p: f64, brightness: f64, contrast: f64, saturation: f64, hue: f64 },
    /// `RandomGrayscale(p)` (3 output channels).
    RandomGrayscale { p: f64 },
    /// The ImageNet code's `GaussianBlur(p)`: σ = U(0.1, 2.0), PIL `ImageFilter.GaussianBlur(σ)`.
    GaussianBlur { p: f64, sigma: (f64, f64) },
    /// The ImageNet code's `Solarization(p)`: `ImageOps.solarize` (threshold 128).
    Solarize { p: f64, threshold: u8 },
    /// `Resize(size)`: the shorter side becomes `size`, aspect kept.
    Resize { size: usize, interp: Interp },
    /// `Resize((h, w))`: exactly this size (aspect not kept; the transfer protocol).
    ResizeExact { height: usize, width: usize, interp: Interp },
    /// `CenterCrop(size)`.
    CenterCrop { size: usize },
}

/// A pipeline: ops in order, then `ToTensor` + `Normalize(mean, std)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transform {
    pub ops: Vec<Op>,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Transform {
    pub fn new(ops: Vec<Op>, (mean, std): ([f32; 3], [f32; 3])) -> Self {
        Self { ops, mean, std }
    }

    /// ToTensor + Normalize only.
    pub fn normalize_only(stats: ([f32; 3], [f32; 3])) -> Self {
        Self::new(vec![], stats)
    }

    /// Whether the pipeline draws random numbers.
    pub fn is_random(&self) -> bool {
        self.ops.iter().any(|o| !matches!(o, Op::Resize { .. } | Op::ResizeExact { .. } | Op::CenterCrop { .. }))
    }

    /// The output `(height, width)` for an input of the given size.
    pub fn output_size(&self, h: usize, w: usize) -> (usize, usize) {
        let (mut h, mut w) = (h, w);
        for op in &self.ops {
            match op {
                Op::RandomResizedCrop { size, .. } | Op::CenterCrop { size } => (h, w) = (*size, *size),
                Op::Resize { size, .. } => (h, w) = resize_shorter(h, w, *size),
                Op::ResizeExact { height, width, .. } => (h, w) = (*height, *width),
                _ => {}
            }
        }
        (h, w)
    }

    /// Apply the ops to an image.
    pub fn augment<R: Rng + ?Sized>(&self, img: &RgbImage, rng: &mut R) -> RgbImage {
        let mut im = img.clone();
        for op in &self.ops {
            im = apply_op(op, im, rng);
        }
        im
    }

    /// Write `Normalize(ToTensor(img))` as CHW f32 into `out` (len 3·H·W).
    pub fn to_tensor_into(&self, img: &RgbImage, out: &mut [f32]) {
        let (w, h) = img.dimensions();
        let hw = (w * h) as usize;
        assert_eq!(out.len(), 3 * hw, "output buffer size");
        let raw = img.as_raw();
        for c in 0..3 {
            let (m, s) = (self.mean[c], self.std[c]);
            // Lookup table: the same f32 ops as torchvision (x/255, then −mean, then /std).
            let mut lut = [0f32; 256];
            for (v, l) in lut.iter_mut().enumerate() {
                *l = (v as f32 / 255.0 - m) / s;
            }
            let dst = &mut out[c * hw..(c + 1) * hw];
            for (i, d) in dst.iter_mut().enumerate() {
                *d = lut[raw[3 * i + c] as usize];
            }
        }
    }

    /// Augment and write the normalised CHW tensor into `out`.
    pub fn apply_into<R: Rng + ?Sized>(&self, img: &RgbImage, rng: &mut R, out: &mut [f32]) {
        if self.ops.is_empty() {
            self.to_tensor_into(img, out)
        } else {
            self.to_tensor_into(&self.augment(img, rng), out)
        }
    }
}

fn apply_op<R: Rng + ?Sized>(op: &Op, im: RgbImage, rng: &mut R) -> RgbImage {
    match *op {
        Op::RandomResizedCrop { size, scale, ratio, interp } => {
            let (top, left, h, w) = rrc_params(im.height() as usize, im.width() as usize, scale, ratio, rng);
            resize(&crop(&im, top, left, h, w), size, size, interp)
        }
        Op::RandomHorizontalFlip { p } => {
            if rng.random::<f64>() < p {
                image::imageops::flip_horizontal(&im)
            } else {
                im
            }
        }
        Op::ColorJitter { p, brightness, contrast, saturation, hue } => {
            if rng.random::<f64>() < p {
                color_jitter(im, brightness, contrast, saturation, hue, rng)
            } else {
                im
            }
        }
        Op::RandomGrayscale { p } => {
            if rng.random::<f64>() < p {
                grayscale(&im)
            } else {
                im
            }
        }
        Op::GaussianBlur { p, sigma } => {
            if rng.random::<f64>() < p {
                let s = rng.random::<f64>() * (sigma.1 - sigma.0) + sigma.0;
                gaussian_blur(&im, s as f32)
            } else {
                im
            }
        }
        Op::Solarize { p, threshold } => {
            if rng.random::<f64>() < p {
                solarize(im, threshold)
            } else {
                im
            }
        }
        Op::Resize { size, interp } => {
            // torchvision returns the image itself when its shorter side is already `size`.
            if (im.height() as usize).min(im.width() as usize) == size {
                return im;
            }
            let (h, w) = resize_shorter(im.height() as usize, im.width() as usize, size);
            resize(&im, h, w, interp)
        }
        Op::ResizeExact { height, width, interp } => resize(&im, height, width, interp),
        Op::CenterCrop { size } => center_crop(&im, size),
    }
}

/// torchvision's output size for `Resize(size)` with an int: shorter side = size, the longer
/// `int(size * long / short)`.
pub fn resize_shorter(h: usize, w: usize, size: usize) -> (usize, usize) {
    if h <= w {
        (size, (size as f64 * w as f64 / h as f64) as usize)
    } else {
        ((size as f64 * h as f64 / w as f64) as usize, size)
    }
}

/// `RandomResizedCrop.get_params`: 10 tries of (area ∈ scale, log-uniform ratio), then the
/// central fallback. Returns (top, left, height, width). Rounding is Python's (half to even).
pub fn rrc_params<R: Rng + ?Sized>(height: usize, width: usize, scale: (f64, f64), ratio: (f64, f64), rng: &mut R) -> (usize, usize, usize, usize) {
    let area = (height * width) as f64;
    let (lr0, lr1) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target_area = area * uniform(rng, scale.0, scale.1);
        let aspect = uniform(rng, lr0, lr1).exp();
        let w = (target_area * aspect).sqrt().round_ties_even() as i64;
        let h = (target_area / aspect).sqrt().round_ties_even() as i64;
        if 0 < w && w as usize <= width && 0 < h && h as usize <= height {
            let (w, h) = (w as usize, h as usize);
            let i = rng.random_range(0..=height - h);
            let j = rng.random_range(0..=width - w);
            return (i, j, h, w);
        }
    }
    let in_ratio = width as f64 / height as f64;
    let (w, h) = if in_ratio < ratio.0.min(ratio.1) {
        (width, (width as f64 / ratio.0.min(ratio.1)).round_ties_even() as usize)
    } else if in_ratio > ratio.0.max(ratio.1) {
        ((height as f64 * ratio.0.max(ratio.1)).round_ties_even() as usize, height)
    } else {
        (width, height)
    };
    ((height - h) / 2, (width - w) / 2, h, w)
}

fn uniform<R: Rng + ?Sized>(rng: &mut R, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.random::<f64>()
}
