//! Pillow-exact pixel routines (8-bit arithmetic as PIL 9 computes it): crops, fixed-point
//! resampling, `convert("L")`, `Image.blend`-based colour adjustments, RGB↔HSV, solarisation and
//! the box-blur Gaussian.

use image::RgbImage;
use rand::Rng;

use super::{uniform, Interp};

/// `img.crop((left, top, left + w, top + h))` (the region must lie inside the image).
pub fn crop(img: &RgbImage, top: usize, left: usize, h: usize, w: usize) -> RgbImage {
    if top == 0 && left == 0 && h == img.height() as usize && w == img.width() as usize {
        return img.clone();
    }
    image::imageops::crop_imm(img, left as u32, top as u32, w as u32, h as u32).to_image()
}

/// `CenterCrop(size)`: top = round((H − size)/2) (half to even), as torchvision.
pub fn center_crop(img: &RgbImage, size: usize) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if size > w || size > h {
        // torchvision pads with zeros first; our pipelines never need it, so resize instead.
        return resize(img, size, size, Interp::Bilinear);
    }
    let top = ((h - size) as f64 / 2.0).round_ties_even() as usize;
    let left = ((w - size) as f64 / 2.0).round_ties_even() as usize;
    crop(img, top, left, size, size)
}

// ---------------------------------------------------------------------------------------------
// PIL resampling (Resample.c): separable convolution with the filter stretched by the
// down-scaling factor, 8-bit fixed-point coefficients, horizontal pass then vertical pass.

const PRECISION_BITS: u32 = 32 - 8 - 2;

fn filter(interp: Interp, x: f64) -> f64 {
    let x = x.abs();
    match interp {
        Interp::Bilinear => {
            if x < 1.0 {
                1.0 - x
            } else {
                0.0
            }
        }
        Interp::Bicubic => {
            let a = -0.5;
            if x < 1.0 {
                ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
            } else if x < 2.0 {
                (((x - 5.0) * x + 8.0) * x - 4.0) * a
            } else {
                0.0
            }
        }
    }
}

fn support(interp: Interp) -> f64 {
    match interp {
        Interp::Bilinear => 1.0,
        Interp::Bicubic => 2.0,
    }
}

/// Per output index: (first input index, fixed-point weights).
fn coeffs(in_size: usize, out_size: usize, interp: Interp) -> Vec<(usize, Vec<i32>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let sup = support(interp) * filterscale;
    let ss = 1.0 / filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let xmin = ((center - sup + 0.5) as i64).max(0) as usize;
            let xmax = ((center + sup + 0.5) as i64).min(in_size as i64) as usize;
            let mut w: Vec<f64> = (xmin..xmax).map(|x| filter(interp, (x as f64 - center + 0.5) * ss)).collect();
            let sum: f64 = w.iter().sum();
            if sum != 0.0 {
                w.iter_mut().for_each(|v| *v /= sum);
            }
            let k = w
                .iter()
                .map(|&v| {
                    let f = v * (1u32 << PRECISION_BITS) as f64;
                    if v < 0.0 {
                        (-0.5 + f) as i32
                    } else {
                        (0.5 + f) as i32
                    }
                })
                .collect();
            (xmin, k)
        })
        .collect()
}

#[inline]
fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// PIL `Image.resize((w, h), resample)` for an RGB image.
pub fn resize(img: &RgbImage, out_h: usize, out_w: usize, interp: Interp) -> RgbImage {
    let (in_w, in_h) = (img.width() as usize, img.height() as usize);
    if in_w == out_w && in_h == out_h {
        return img.clone();
    }
    let src = img.as_raw();
    // Horizontal pass.
    let (tmp, tw) = if in_w != out_w {
        let cx = coeffs(in_w, out_w, interp);
        let mut tmp = vec![0u8; in_h * out_w * 3];
        for y in 0..in_h {
            let line = &src[y * in_w * 3..(y + 1) * in_w * 3];
            for (xx, (xmin, k)) in cx.iter().enumerate() {
                let mut acc = [1i32 << (PRECISION_BITS - 1); 3];
                for (j, &kv) in k.iter().enumerate() {
                    let p = (xmin + j) * 3;
                    acc[0] += line[p] as i32 * kv;
                    acc[1] += line[p + 1] as i32 * kv;
                    acc[2] += line[p + 2] as i32 * kv;
                }
                let o = (y * out_w + xx) * 3;
                tmp[o] = clip8(acc[0]);
                tmp[o + 1] = clip8(acc[1]);
                tmp[o + 2] = clip8(acc[2]);
            }
        }
        (tmp, out_w)
    } else {
        (src.to_vec(), in_w)
    };
    // Vertical pass.
    let out = if in_h != out_h {
        let cy = coeffs(in_h, out_h, interp);
        let mut out = vec![0u8; out_h * tw * 3];
        for (yy, (ymin, k)) in cy.iter().enumerate() {
            for x in 0..tw * 3 {
                let mut acc = 1i32 << (PRECISION_BITS - 1);
                for (j, &kv) in k.iter().enumerate() {
                    acc += tmp[(ymin + j) * tw * 3 + x] as i32 * kv;
                }
                out[yy * tw * 3 + x] = clip8(acc);
            }
        }
        out
    } else {
        tmp
    };
    RgbImage::from_raw(out_w as u32, out_h as u32, out).expect("resize buffer size")
}

// ---------------------------------------------------------------------------------------------
// Colour operations on 8-bit images, as PIL.

/// PIL `convert("L")`: ITU-R 601-2 luma in 16-bit fixed point, rounded.
#[inline]
pub fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((r as u32 * 19595 + g as u32 * 38470 + b as u32 * 7471 + 0x8000) >> 16) as u8
}

/// `RandomGrayscale`/`rgb_to_grayscale(num_output_channels=3)`: `convert("L")` then back to RGB.
pub fn grayscale(img: &RgbImage) -> RgbImage {
    let mut out = img.clone();
    for p in out.pixels_mut() {
        let l = luma(p[0], p[1], p[2]);
        p.0 = [l, l, l];
    }
    out
}

/// PIL `Image.blend(degenerate, img, f)` per byte: `trunc(d + f·(x − d))`, clipped.
#[inline]
fn blend(d: u8, x: u8, f: f32) -> u8 {
    let t = d as f32 + f * (x as f32 - d as f32);
    if t <= 0.0 {
        0
    } else if t >= 255.0 {
        255
    } else {
        t as u8
    }
}

/// `adjust_brightness`: blend with black.
pub fn adjust_brightness(mut img: RgbImage, f: f32) -> RgbImage {
    img.iter_mut().for_each(|v| *v = blend(0, *v, f));
    img
}

/// `adjust_contrast`: blend with the mean grey level `int(mean(L) + 0.5)`.
pub fn adjust_contrast(mut img: RgbImage, f: f32) -> RgbImage {
    let n = (img.width() * img.height()) as f64;
    let sum: u64 = img.pixels().map(|p| luma(p[0], p[1], p[2]) as u64).sum();
    let mean = (sum as f64 / n + 0.5) as u8;
    img.iter_mut().for_each(|v| *v = blend(mean, *v, f));
    img
}

/// `adjust_saturation`: blend with the grey image.
pub fn adjust_saturation(mut img: RgbImage, f: f32) -> RgbImage {
    for p in img.pixels_mut() {
        let l = luma(p[0], p[1], p[2]);
        p.0 = [blend(l, p[0], f), blend(l, p[1], f), blend(l, p[2], f)];
    }
    img
}

/// PIL RGB → HSV (Convert.c `rgb2hsv_row`).
pub fn rgb_to_hsv(r: u8, g: u8, b: u8) -> [u8; 3] {
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
    if minc == maxc {
        return [0, 0, maxc];
    }
    let cr = (maxc - minc) as f32;
    let s = cr / maxc as f32;
    let rc = (maxc - r) as f32 / cr;
    let gc = (maxc - g) as f32 / cr;
    let bc = (maxc - b) as f32 / cr;
    let h = if r == maxc {
        bc - gc
    } else if g == maxc {
        2.0 + rc - bc
    } else {
        4.0 + gc - rc
    };
    let h = ((h / 6.0 + 1.0) as f64 % 1.0) as f32;
    [((h * 255.0) as i32).clamp(0, 255) as u8, ((s * 255.0) as i32).clamp(0, 255) as u8, maxc]
}

/// PIL HSV → RGB (Convert.c `hsv2rgb`).
pub fn hsv_to_rgb(h: u8, s: u8, v: u8) -> [u8; 3] {
    if s == 0 {
        return [v, v, v];
    }
    let hf = h as f32 * 6.0 / 255.0;
    let i = hf.floor() as i32;
    let f = hf - i as f32;
    let fs = s as f32 / 255.0;
    let vf = v as f32;
    let p = (vf * (1.0 - fs)).round().clamp(0.0, 255.0) as u8;
    let q = (vf * (1.0 - fs * f)).round().clamp(0.0, 255.0) as u8;
    let t = (vf * (1.0 - fs * (1.0 - f))).round().clamp(0.0, 255.0) as u8;
    match i % 6 {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

/// `adjust_hue` on PIL: the H channel of PIL's HSV shifted by `uint8(hue·255)` with wrap-around.
pub fn adjust_hue(mut img: RgbImage, hue: f32) -> RgbImage {
    // np.uint8(hue * 255): truncation toward zero, then modulo 256 for negative values.
    let shift = ((hue * 255.0) as i32).rem_euclid(256) as u8;
    for p in img.pixels_mut() {
        let [h, s, v] = rgb_to_hsv(p[0], p[1], p[2]);
        p.0 = hsv_to_rgb(h.wrapping_add(shift), s, v);
    }
    img
}

/// `ColorJitter.forward`: factors drawn as `get_params`, the four adjustments in a random order.
pub(super) fn color_jitter<R: Rng + ?Sized>(mut img: RgbImage, b: f64, c: f64, s: f64, h: f64, rng: &mut R) -> RgbImage {
    use rand::seq::SliceRandom;
    let mut order = [0usize, 1, 2, 3];
    order.shuffle(rng);
    let factor = |rng: &mut R, v: f64| if v > 0.0 { Some(uniform(rng, (1.0 - v).max(0.0), 1.0 + v) as f32) } else { None };
    let bf = factor(rng, b);
    let cf = factor(rng, c);
    let sf = factor(rng, s);
    let hf = if h > 0.0 { Some(uniform(rng, -h, h) as f32) } else { None };
    for k in order {
        img = match (k, bf, cf, sf, hf) {
            (0, Some(f), ..) => adjust_brightness(img, f),
            (1, _, Some(f), ..) => adjust_contrast(img, f),
            (2, _, _, Some(f), _) => adjust_saturation(img, f),
            (3, _, _, _, Some(f)) => adjust_hue(img, f),
            _ => img,
        };
    }
    img
}

/// `ImageOps.solarize(img, threshold)`: values ≥ threshold are inverted.
pub fn solarize(mut img: RgbImage, threshold: u8) -> RgbImage {
    img.iter_mut().for_each(|v| {
        if *v >= threshold {
            *v = 255 - *v
        }
    });
    img
}

/// PIL `ImageFilter.GaussianBlur(radius=σ)`: three passes of an extended box blur per axis
/// (BoxBlur.c), in 8-bit fixed point.
pub fn gaussian_blur(img: &RgbImage, sigma: f32) -> RgbImage {
    let r = gaussian_blur_radius(sigma, 3);
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut buf = img.as_raw().clone();
    let mut line = vec![0u8; w.max(h) * 3];
    for _ in 0..3 {
        for y in 0..h {
            box_blur_line(&buf[y * w * 3..(y + 1) * w * 3], &mut line[..w * 3], w, r);
            buf[y * w * 3..(y + 1) * w * 3].copy_from_slice(&line[..w * 3]);
        }
    }
    let mut col = vec![0u8; h * 3];
    for _ in 0..3 {
        for x in 0..w {
            for y in 0..h {
                col[y * 3..y * 3 + 3].copy_from_slice(&buf[(y * w + x) * 3..(y * w + x) * 3 + 3]);
            }
            box_blur_line(&col, &mut line[..h * 3], h, r);
            for y in 0..h {
                buf[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&line[y * 3..y * 3 + 3]);
            }
        }
    }
    RgbImage::from_raw(w as u32, h as u32, buf).unwrap()
}

fn gaussian_blur_radius(sigma: f32, passes: u32) -> f32 {
    let sigma2 = sigma * sigma / passes as f32;
    let l_big = (12.0 * sigma2 + 1.0).sqrt();
    let l = ((l_big - 1.0) / 2.0).floor();
    let mut a = (2.0 * l + 1.0) * (l * (l + 1.0) - 3.0 * sigma2);
    a /= 6.0 * (sigma2 - (l + 1.0) * (l + 1.0));
    l + a
}

/// One line of PIL's box blur with a fractional radius: edge pixels repeat.
fn box_blur_line(input: &[u8], out: &mut [u8], n: usize, radius_f: f32) {
    let radius = radius_f as i64;
    let ww: u32 = ((1u32 << 24) as f32 / (radius_f * 2.0 + 1.0)) as u32;
    let fw: u32 = ((1u32 << 24) - (radius as u32 * 2 + 1) * ww) / 2;
    let last = n as i64 - 1;
    let px = |i: i64, c: usize| input[(i.clamp(0, last) as usize) * 3 + c] as u32;
    for c in 0..3 {
        let mut acc: u32 = (-radius..=radius).map(|i| px(i, c)).sum();
        for x in 0..n as i64 {
            if x > 0 {
                acc = acc + px(x + radius, c) - px(x - radius - 1, c);
            }
            let bulk = acc * ww + (px(x - radius - 1, c) + px(x + radius + 1, c)) * fw;
            out[x as usize * 3 + c] = ((bulk + (1 << 23)) >> 24) as u8;
        }
    }
}
