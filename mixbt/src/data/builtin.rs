//! The built-in data set: procedurally generated 32×32 images of 10 shape classes under random
//! colours, position, scale, rotation, textured backgrounds and noise. Deterministic from a seed,
//! nothing to download; image `i` is rendered on access.
//!
//! Colour, position and size carry no class information, and the pre-training augmentations
//! (colour jitter, greyscale, crops) teach invariance to them: a randomly initialised network
//! clusters by colour, a pre-trained one by shape, which k-NN measures.

use std::f32::consts::PI;

use image::RgbImage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{Dataset, Split};
use crate::Result;

pub const SHAPE_CLASSES: [&str; 10] =
    ["disc", "square", "triangle", "cross", "ring", "star", "bar", "crescent", "two-dots", "l-shape"];

/// Built-in data set options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuiltinConfig {
    pub seed: u64,
    pub train_size: usize,
    pub test_size: usize,
    /// Image side in pixels.
    pub size: u32,
}

impl Default for BuiltinConfig {
    fn default() -> Self {
        Self { seed: 0, train_size: 10_000, test_size: 2_000, size: 32 }
    }
}

/// The generated shapes data set (one split).
#[derive(Debug, Clone)]
pub struct BuiltinShapes {
    cfg: BuiltinConfig,
    split: Split,
}

impl BuiltinShapes {
    pub fn new(cfg: BuiltinConfig, split: Split) -> Self {
        Self { cfg, split }
    }

    fn rng_for(&self, i: usize) -> ChaCha8Rng {
        let salt = match self.split {
            Split::Test => 0x7e57_0000_0000_0000u64,
            _ => 0,
        };
        ChaCha8Rng::seed_from_u64(self.cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt ^ (i as u64).wrapping_mul(0xD1B5_4A32_D192_ED03))
    }
}

fn rand_color<R: Rng>(rng: &mut R) -> [f32; 3] {
    [rng.random_range(0.0..255.0), rng.random_range(0.0..255.0), rng.random_range(0.0..255.0)]
}

fn dist(a: [f32; 3], b: [f32; 3]) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

fn sd_box(x: f32, y: f32, hx: f32, hy: f32) -> f32 {
    let (dx, dy) = (x.abs() - hx, y.abs() - hy);
    (dx.max(0.0).powi(2) + dy.max(0.0).powi(2)).sqrt() + dx.max(dy).min(0.0)
}

/// Signed distance (in units of the shape scale) of point (x, y) in the shape's frame.
fn shape_sdf(class: usize, x: f32, y: f32) -> f32 {
    let r = (x * x + y * y).sqrt();
    match class {
        0 => r - 1.0,                           // disc
        1 => sd_box(x, y, 0.8, 0.8),            // square
        2 => {
            // equilateral triangle (circumradius 1)
            let k = 3f32.sqrt();
            let (mut px, mut py) = (x.abs() - 0.866, y + 0.5);
            if px + k * py > 0.0 {
                let (nx, ny) = ((px - k * py) / 2.0, (-k * px - py) / 2.0);
                px = nx;
                py = ny;
            }
            px -= px.clamp(-1.732, 0.0);
            -(px * px + py * py).sqrt() * py.signum()
        }
        3 => sd_box(x, y, 1.0, 0.3).min(sd_box(x, y, 0.3, 1.0)), // cross
        4 => (r - 0.8).abs() - 0.22,                            // ring
        5 => {
            // five-pointed star: radius oscillating between 0.45 and 1.05
            let a = y.atan2(x);
            let t = ((a * 5.0 / (2.0 * PI)).rem_euclid(1.0) - 0.5).abs() * 2.0; // 1 at tips
            r - (0.45 + 0.6 * t)
        }
        6 => sd_box(x, y, 1.05, 0.32),                           // bar
        7 => (r - 1.0).max(-(((x - 0.55).powi(2) + y * y).sqrt() - 0.8)), // crescent
        8 => (((x - 0.55).powi(2) + y * y).sqrt() - 0.42).min(((x + 0.55).powi(2) + y * y).sqrt() - 0.42), // two dots
        _ => sd_box(x + 0.35, y, 0.28, 1.0).min(sd_box(x, y - 0.72, 0.63, 0.28)), // L
    }
}

/// Render image `i` of class `class` with `rng`.
pub fn render<R: Rng>(class: usize, size: u32, rng: &mut R) -> RgbImage {
    let s = size as f32;
    let bg1 = rand_color(rng);
    let mut bg2 = rand_color(rng);
    if rng.random::<f32>() < 0.5 {
        bg2 = bg1;
    }
    let mut fg = rand_color(rng);
    for _ in 0..20 {
        if dist(fg, bg1) > 120.0 && dist(fg, bg2) > 120.0 {
            break;
        }
        fg = rand_color(rng);
    }
    // Background: a linear gradient between two colours plus a faint sinusoidal texture.
    let ga = rng.random_range(0.0..2.0 * PI);
    let (gx, gy) = (ga.cos(), ga.sin());
    let tex_f = rng.random_range(0.2..0.9);
    let tex_a = rng.random_range(0.0..18.0);
    let tex_dir = rng.random_range(0.0..PI);
    // Shape placement.
    let scale = rng.random_range(0.2..0.34) * s;
    let cx = s / 2.0 + rng.random_range(-0.18..0.18) * s;
    let cy = s / 2.0 + rng.random_range(-0.18..0.18) * s;
    let rot = rng.random_range(0.0..2.0 * PI);
    let (cr, sr) = (rot.cos(), rot.sin());
    let noise = rng.random_range(2.0..10.0);
    let mut img = RgbImage::new(size, size);
    for py in 0..size {
        for px in 0..size {
            let (fx, fy) = (px as f32 + 0.5, py as f32 + 0.5);
            let t = (((fx / s - 0.5) * gx + (fy / s - 0.5) * gy) + 0.5).clamp(0.0, 1.0);
            let tex = tex_a * ((fx * tex_dir.cos() + fy * tex_dir.sin()) * tex_f).sin();
            let (dx, dy) = ((fx - cx) / scale, (fy - cy) / scale);
            let (lx, ly) = (cr * dx + sr * dy, -sr * dx + cr * dy);
            let d = shape_sdf(class, lx, ly) * scale; // in pixels
            let cov = (0.5 - d).clamp(0.0, 1.0);
            let mut out = [0u8; 3];
            for c in 0..3 {
                let b = bg1[c] * (1.0 - t) + bg2[c] * t + tex;
                let v = b * (1.0 - cov) + fg[c] * cov + noise * (rng.random::<f32>() - 0.5) * 2.0;
                out[c] = v.clamp(0.0, 255.0) as u8;
            }
            img.put_pixel(px, py, image::Rgb(out));
        }
    }
    img
}

impl Dataset for BuiltinShapes {
    fn len(&self) -> usize {
        match self.split {
            Split::Test => self.cfg.test_size,
            _ => self.cfg.train_size,
        }
    }
    fn image(&self, i: usize) -> Result<RgbImage> {
        let mut rng = self.rng_for(i);
        Ok(render(i % 10, self.cfg.size, &mut rng))
    }
    fn label(&self, i: usize) -> Option<usize> {
        Some(i % 10)
    }
    fn classes(&self) -> Vec<String> {
        SHAPE_CLASSES.iter().map(|s| s.to_string()).collect()
    }
    fn describe(&self) -> String {
        format!("built-in shapes ({:?}, seed {}, {} images)", self.split, self.cfg.seed, self.len())
    }
}
