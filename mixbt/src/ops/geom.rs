//! What the direct ([`super::conv`]) and Winograd ([`super::winograd`]) convolutions share:
//! the geometry of a convolution, how a batch is cut into chunks of images, and per-thread
//! scratch buffers. Both import from here; neither imports the other's internals.

use candle_core::Result;

/// Geometry of one convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeom {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    pub ho: usize,
    pub wo: usize,
}

impl ConvGeom {
    pub fn new(xd: &[usize], wd: &[usize], stride: usize, pad: usize) -> Result<Self> {
        if xd.len() != 4 || wd.len() != 4 {
            candle_core::bail!("conv2d: expected 4-d input and kernel, got {xd:?} and {wd:?}")
        }
        let (n, c, h, w) = (xd[0], xd[1], xd[2], xd[3]);
        let (o, ci, k, k2) = (wd[0], wd[1], wd[2], wd[3]);
        if ci != c || k != k2 || stride == 0 {
            candle_core::bail!("conv2d: input {xd:?} and kernel {wd:?} do not match")
        }
        if h + 2 * pad < k || w + 2 * pad < k {
            candle_core::bail!("conv2d: kernel {k} larger than the padded input {h}x{w}")
        }
        let ho = (h + 2 * pad - k) / stride + 1;
        let wo = (w + 2 * pad - k) / stride + 1;
        Ok(Self { n, c, h, w, o, k, stride, pad, ho, wo })
    }
    /// `C→O kxk/stride HxW` (for profiles).
    pub(super) fn label(&self) -> String {
        format!("{}→{} {}x{}/{} {}x{}", self.c, self.o, self.k, self.k, self.stride, self.h, self.w)
    }
    pub(super) fn ckk(&self) -> usize {
        self.c * self.k * self.k
    }
    pub(super) fn hwo(&self) -> usize {
        self.ho * self.wo
    }
    pub(super) fn hw(&self) -> usize {
        self.h * self.w
    }
    pub(super) fn in_size(&self) -> usize {
        self.c * self.hw()
    }
    pub(super) fn out_size(&self) -> usize {
        self.o * self.hwo()
    }
}

/// Images per chunk for a batch of `n` when `want` would fill one: at most `want`, and a whole
/// number of chunks per thread when the batch allows (3 chunks on 2 threads would leave one
/// thread idle a third of the time).
pub(super) fn images_per_chunk(n: usize, want: usize, threads: usize) -> usize {
    let nc = want.clamp(1, n.max(1));
    if n < threads {
        return nc;
    }
    n.div_ceil(n.div_ceil(nc).div_ceil(threads).max(1) * threads)
}

thread_local! {
    /// Per-thread scratch buffers (im2col matrices, gathered gradients), reused across calls.
    static SCRATCH: std::cell::RefCell<[Vec<f32>; 2]> = const { std::cell::RefCell::new([Vec::new(), Vec::new()]) };
}

/// Run `f` with two scratch buffers of at least `a` and `b` elements (contents unspecified).
pub(super) fn with_scratch<R>(a: usize, b: usize, f: impl FnOnce(&mut [f32], &mut [f32]) -> R) -> R {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        let [x, y] = &mut *s;
        if x.len() < a {
            *x = vec![0f32; a];
        }
        if y.len() < b {
            *y = vec![0f32; b];
        }
        f(&mut x[..a], &mut y[..b])
    })
}

