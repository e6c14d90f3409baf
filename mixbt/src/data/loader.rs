//! The parallel, deterministic loader: shuffles per epoch, decodes and augments every image of a
//! batch in parallel (a dedicated rayon pool), prepares the next batches on a background thread
//! while the model computes, and hands out NCHW f32 tensors on the chosen device.
//!
//! Every random draw of sample `k` of epoch `e` comes from its own generator seeded by
//! `(seed, e, k, view)`, so batches are identical for any number of threads, and a run can start
//! at any batch of any epoch (resume) without replaying the ones before.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::{Dataset, DynDataset, Transform};
use crate::{Error, Result};

/// Loader options.
#[derive(Debug, Clone)]
pub struct LoaderConfig {
    pub batch_size: usize,
    pub shuffle: bool,
    /// Drop the last incomplete batch (pre-training: every batch has exactly `batch_size`).
    pub drop_last: bool,
    pub seed: u64,
    /// Decode/augment threads (0: one per core).
    pub workers: usize,
    /// Batches prepared ahead of the consumer.
    pub prefetch: usize,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self { batch_size: 256, shuffle: true, drop_last: true, seed: 0, workers: 0, prefetch: 2 }
    }
}

/// Two augmented views of the same images.
#[derive(Debug, Clone)]
pub struct PairBatch {
    pub view_a: Tensor,
    pub view_b: Tensor,
    pub labels: Vec<Option<usize>>,
    /// Data-set indices of the images.
    pub indices: Vec<usize>,
}

/// `N` augmented views of the same images (the pre-trainer's batches; the method says how many).
#[derive(Debug, Clone)]
pub struct ViewsBatch {
    /// One `[B, 3, H, W]` tensor per view.
    pub views: Vec<Tensor>,
    pub labels: Vec<Option<usize>>,
    /// Data-set indices of the images.
    pub indices: Vec<usize>,
}

/// One view per image (evaluation, probes).
#[derive(Debug, Clone)]
pub struct Batch {
    pub images: Tensor,
    pub labels: Vec<Option<usize>>,
    pub indices: Vec<usize>,
}

/// Host-side batch produced by the workers.
struct HostBatch {
    views: Vec<Vec<f32>>,
    shape: (usize, usize, usize, usize),
    labels: Vec<Option<usize>>,
    indices: Vec<usize>,
}

/// A data loader over one data set with one transform per view.
#[derive(Clone)]
pub struct Loader {
    ds: DynDataset,
    transforms: Vec<Arc<Transform>>,
    cfg: LoaderConfig,
    workers: usize,
    device: Device,
    /// `(rank, ranks)`: this rank's share of every batch ([`Loader::sharded`]).
    shard: (usize, usize),
}

/// The seed of sample `k` of `epoch`, view `v`.
fn sample_seed(seed: u64, epoch: u64, k: u64, v: u64) -> u64 {
    let mut h = seed ^ 0x6a09_e667_f3bc_c908;
    for x in [epoch, k, v] {
        h = (h ^ x).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^= h >> 29;
    }
    h
}

impl Loader {
    /// A loader yielding `transforms.len()` views per image (one for evaluation, two for a pair —
    /// the same transform twice, or the two ImageNet views — or more for a method that asks for
    /// them). View `v` of sample `k` is drawn with its own key `(seed, epoch, k, v)`, so the
    /// first two views do not depend on how many follow.
    pub fn new(ds: DynDataset, transforms: Vec<Transform>, cfg: LoaderConfig, device: &Device) -> Result<Self> {
        if transforms.is_empty() {
            return Err(Error::Config("a loader needs at least one transform".into()));
        }
        if cfg.batch_size == 0 {
            return Err(Error::Config("batch size must be positive".into()));
        }
        if ds.is_empty() {
            return Err(Error::Config(format!("{} is empty", ds.describe())));
        }
        if cfg.drop_last && ds.len() < cfg.batch_size {
            return Err(Error::Config(format!(
                "{} has {} images, fewer than one batch of {} (drop_last)",
                ds.describe(),
                ds.len(),
                cfg.batch_size
            )));
        }
        let workers = if cfg.workers == 0 { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) } else { cfg.workers };
        Ok(Self { ds, transforms: transforms.into_iter().map(Arc::new).collect(), cfg, workers, device: device.clone(), shard: (0, 1) })
    }

    /// The loader of rank `rank` of `ranks` data-parallel ranks: every epoch has the order and
    /// the batches of the one-process loader (`batch_size` stays the global batch), and this
    /// rank gets its contiguous share of each batch (`batch_size / ranks` images, the same
    /// augmentations: every draw is keyed by the sample's place in the epoch). An error unless
    /// `ranks` divides the batch size.
    pub fn sharded(mut self, rank: usize, ranks: usize) -> Result<Self> {
        crate::dist::shard_range(self.cfg.batch_size, rank, ranks)?;
        if !self.cfg.drop_last && self.ds.len() % self.cfg.batch_size != 0 {
            return Err(Error::Config("a sharded loader needs whole batches (drop_last)".into()));
        }
        self.shard = (rank, ranks);
        Ok(self)
    }

    /// `(rank, ranks)` of a sharded loader; `(0, 1)` otherwise.
    pub fn shard(&self) -> (usize, usize) {
        self.shard
    }

    /// The decode/augment pool. It is built by the thread that uses it (one per epoch stream),
    /// never stored in the loader: in an evcxr notebook every cell is a freshly loaded library
    /// with its own copy of rayon's thread-locals, so a pool made by one cell and driven by
    /// the next would fail rayon's worker-thread assertion.
    fn build_pool(&self) -> Result<rayon::ThreadPool> {
        rayon::ThreadPoolBuilder::new()
            .num_threads(self.workers)
            .thread_name(|i| format!("mixbt-data-{i}"))
            .build()
            .map_err(|e| Error::msg(format!("thread pool: {e}")))
    }

    /// Two views per image with the same transform (the small-data-set pair transforms).
    pub fn pairs(ds: DynDataset, t: Transform, cfg: LoaderConfig, device: &Device) -> Result<Self> {
        Self::new(ds, vec![t.clone(), t], cfg, device)
    }

    /// One view per image.
    pub fn single(ds: DynDataset, t: Transform, cfg: LoaderConfig, device: &Device) -> Result<Self> {
        Self::new(ds, vec![t], cfg, device)
    }

    pub fn dataset(&self) -> &DynDataset {
        &self.ds
    }
    pub fn config(&self) -> &LoaderConfig {
        &self.cfg
    }

    /// Batches per epoch.
    pub fn batches_per_epoch(&self) -> usize {
        let (n, b) = (self.ds.len(), self.cfg.batch_size);
        if self.cfg.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// The sample order of `epoch`.
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..self.ds.len()).collect();
        if self.cfg.shuffle {
            let mut rng = ChaCha8Rng::seed_from_u64(self.cfg.seed ^ epoch.wrapping_mul(0xA076_1D64_78BD_642F));
            idx.shuffle(&mut rng);
        }
        idx
    }

    /// Produce batch `b` of `epoch` on the calling thread (workers in the pool).
    fn host_batch(&self, pool: &rayon::ThreadPool, epoch: u64, order: &[usize], b: usize) -> Result<HostBatch> {
        let bs = self.cfg.batch_size;
        let mut start = b * bs;
        let mut end = (start + bs).min(order.len());
        if self.shard.1 > 1 {
            let r = crate::dist::shard_range(bs, self.shard.0, self.shard.1)?;
            (start, end) = (start + r.start, start + r.end);
        }
        let ds: &dyn Dataset = self.ds.as_ref();
        let seed = self.cfg.seed;
        let nviews = self.transforms.len();
        let items: Vec<Result<(Vec<Vec<f32>>, (usize, usize), usize)>> = pool.install(|| {
            (start..end)
                .into_par_iter()
                .map(|k| {
                    let mut idx = order[k];
                    let mut tries = 0;
                    let img = loop {
                        match ds.image(idx) {
                            Ok(im) => break im,
                            Err(e) if ds.skip_corrupt() && tries < ds.len() => {
                                ds.note_skipped(idx, &e);
                                idx = (idx + 1) % ds.len();
                                tries += 1;
                            }
                            Err(e) => return Err(e),
                        }
                    };
                    let mut views = Vec::with_capacity(nviews);
                    let mut hw = (0, 0);
                    for (v, t) in self.transforms.iter().enumerate() {
                        let mut rng = ChaCha8Rng::seed_from_u64(sample_seed(seed, epoch, k as u64, v as u64));
                        let im = t.augment(&img, &mut rng);
                        let (h, w) = (im.height() as usize, im.width() as usize);
                        if v > 0 && (h, w) != hw {
                            return Err(Error::Config(format!("view {v} is {h}×{w}, view 0 {}×{}: the views' transforms must give one size", hw.0, hw.1)));
                        }
                        hw = (h, w);
                        let mut buf = vec![0f32; 3 * h * w];
                        t.to_tensor_into(&im, &mut buf);
                        views.push(buf);
                    }
                    Ok((views, hw, idx))
                })
                .collect()
        });
        let n = end - start;
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); nviews];
        let mut shape = None;
        let mut labels = Vec::with_capacity(n);
        let mut indices = Vec::with_capacity(n);
        for item in items {
            let (views, hw, idx) = item?;
            match shape {
                None => {
                    shape = Some(hw);
                    for o in out.iter_mut() {
                        o.reserve(n * 3 * hw.0 * hw.1);
                    }
                }
                Some(s) if s != hw => {
                    return Err(Error::Config(format!(
                        "{}: images of different sizes in one batch ({}×{} and {}×{}); use a transform that crops or resizes to a fixed size (the image-folder presets, e.g. cifar10-cpu, do)",
                        self.ds.describe(),
                        s.0,
                        s.1,
                        hw.0,
                        hw.1
                    )))
                }
                _ => {}
            }
            for (o, v) in out.iter_mut().zip(views) {
                o.extend_from_slice(&v);
            }
            labels.push(ds.label(idx));
            indices.push(idx);
        }
        let (h, w) = shape.unwrap_or((0, 0));
        Ok(HostBatch { views: out, shape: (n, 3, h, w), labels, indices })
    }

    fn to_tensors(&self, hb: HostBatch) -> Result<(Vec<Tensor>, Vec<Option<usize>>, Vec<usize>)> {
        let ts = hb
            .views
            .into_iter()
            .map(|v| Ok(Tensor::from_vec(v, hb.shape, &Device::Cpu)?.to_device(&self.device)?))
            .collect::<Result<Vec<_>>>()?;
        Ok((ts, hb.labels, hb.indices))
    }

    /// Iterate the batches of `epoch` from batch `first` on, prepared in the background.
    fn stream(&self, epoch: u64, first: usize) -> Receiver<Result<HostBatch>> {
        let (tx, rx) = sync_channel(self.cfg.prefetch.max(1));
        let me = self.clone();
        std::thread::Builder::new()
            .name("mixbt-loader".into())
            .spawn(move || {
                let pool = match me.build_pool() {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let order = me.order(epoch);
                for b in first..me.batches_per_epoch() {
                    let r = me.host_batch(&pool, epoch, &order, b);
                    let stop = r.is_err();
                    if tx.send(r).is_err() || stop {
                        break;
                    }
                }
            })
            .expect("spawn loader thread");
        rx
    }

    /// The pair batches of `epoch` (two views), from batch `first` on, prepared in the
    /// background. The iterator owns what it needs (a clone of the loader).
    pub fn pair_epoch(&self, epoch: u64, first: usize) -> PairEpoch {
        assert_eq!(self.transforms.len(), 2, "pair_epoch needs a two-view loader");
        PairEpoch { inner: self.views_epoch(epoch, first) }
    }

    /// The batches of `epoch` with all the loader's views, from batch `first` on, prepared in
    /// the background.
    pub fn views_epoch(&self, epoch: u64, first: usize) -> ViewsEpoch {
        ViewsEpoch { rx: self.stream(epoch, first), loader: self.clone() }
    }

    /// Views per image.
    pub fn num_views(&self) -> usize {
        self.transforms.len()
    }

    /// The single-view batches of `epoch`, from batch `first` on.
    pub fn epoch(&self, epoch: u64, first: usize) -> SingleEpoch {
        SingleEpoch { rx: self.stream(epoch, first), loader: self.clone() }
    }

    /// One batch computed synchronously (no background thread): batch `b` of `epoch`.
    pub fn batch_at(&self, epoch: u64, b: usize) -> Result<Vec<Tensor>> {
        let order = self.order(epoch);
        let pool = self.build_pool()?;
        Ok(self.to_tensors(self.host_batch(&pool, epoch, &order, b)?)?.0)
    }
}

/// Iterator over the pair batches of one epoch (the two views of a [`ViewsEpoch`]).
pub struct PairEpoch {
    inner: ViewsEpoch,
}

impl Iterator for PairEpoch {
    type Item = Result<PairBatch>;
    fn next(&mut self) -> Option<Self::Item> {
        Some(self.inner.next()?.map(|b| {
            let [view_a, view_b]: [Tensor; 2] = b.views.try_into().expect("pair_epoch checks for two views");
            PairBatch { view_a, view_b, labels: b.labels, indices: b.indices }
        }))
    }
}

/// Iterator over the N-view batches of one epoch.
pub struct ViewsEpoch {
    rx: Receiver<Result<HostBatch>>,
    loader: Loader,
}

impl Iterator for ViewsEpoch {
    type Item = Result<ViewsBatch>;
    fn next(&mut self) -> Option<Self::Item> {
        let hb = self.rx.recv().ok()?;
        Some(hb.and_then(|hb| {
            let (views, labels, indices) = self.loader.to_tensors(hb)?;
            Ok(ViewsBatch { views, labels, indices })
        }))
    }
}

/// Iterator over the single-view batches of one epoch.
pub struct SingleEpoch {
    rx: Receiver<Result<HostBatch>>,
    loader: Loader,
}

impl Iterator for SingleEpoch {
    type Item = Result<Batch>;
    fn next(&mut self) -> Option<Self::Item> {
        let hb = self.rx.recv().ok()?;
        Some(hb.and_then(|hb| {
            let (mut ts, labels, indices) = self.loader.to_tensors(hb)?;
            Ok(Batch { images: ts.swap_remove(0), labels, indices })
        }))
    }
}
