//! Data-parallel semantics without an MPI library: ranks as threads of this test, joined by a
//! small in-process [`Communicator`] (shared buffers and a barrier), each thread training in its
//! own world (`dist::with_world`). Checks what `tests/dist.rs` checks across processes, on every
//! build: synchronised batch norm, the row gather and the gradient sum give the one-process
//! numbers.

use std::sync::{Arc, Barrier, Mutex};

use mixbt::candle_core::{DType, Device, Tensor, Var};
use mixbt::dist::{self, Communicator, Group};
use mixbt::train::{presets, LossStats, PretrainOptions, Pretrainer};

/// Ranks as threads: every collective writes this rank's slot, waits for all, reads them all in
/// rank order, and waits again before the slots are reused.
struct Threads {
    rank: usize,
    size: usize,
    shared: Arc<(Barrier, Mutex<Vec<Vec<u8>>>)>,
}

impl Threads {
    fn group(size: usize) -> Vec<Group> {
        let shared = Arc::new((Barrier::new(size), Mutex::new(vec![Vec::new(); size])));
        (0..size).map(|rank| Group::new(Arc::new(Threads { rank, size, shared: shared.clone() }))).collect()
    }

    /// Every rank's bytes, in rank order.
    fn exchange(&self, mine: Vec<u8>) -> Vec<Vec<u8>> {
        let (barrier, slots) = &*self.shared;
        slots.lock().unwrap()[self.rank] = mine;
        barrier.wait();
        let all = slots.lock().unwrap().clone();
        barrier.wait();
        all
    }
}

impl Communicator for Threads {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn backend(&self) -> &'static str {
        "threads"
    }
    fn all_reduce_f32(&self, buf: &mut [f32]) -> mixbt::Result<()> {
        let all = self.exchange(buf.iter().flat_map(|v| v.to_le_bytes()).collect());
        for (i, v) in buf.iter_mut().enumerate() {
            *v = all.iter().map(|b| f32::from_le_bytes(b[4 * i..4 * i + 4].try_into().unwrap())).sum();
        }
        Ok(())
    }
    fn all_reduce_f64(&self, buf: &mut [f64]) -> mixbt::Result<()> {
        let all = self.exchange(buf.iter().flat_map(|v| v.to_le_bytes()).collect());
        for (i, v) in buf.iter_mut().enumerate() {
            *v = all.iter().map(|b| f64::from_le_bytes(b[8 * i..8 * i + 8].try_into().unwrap())).sum();
        }
        Ok(())
    }
    fn all_gather_f32(&self, send: &[f32]) -> mixbt::Result<Vec<f32>> {
        let all = self.exchange(send.iter().flat_map(|v| v.to_le_bytes()).collect());
        Ok(all.concat().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect())
    }
    fn broadcast_bytes(&self, buf: &mut Vec<u8>, root: usize) -> mixbt::Result<()> {
        let all = self.exchange(buf.clone());
        *buf = all[root].clone();
        Ok(())
    }
    fn barrier(&self) -> mixbt::Result<()> {
        self.exchange(Vec::new());
        Ok(())
    }
}

/// Run `f(rank)` on `size` threads, each in its own rank's world; results in rank order.
fn on_ranks<R: Send + 'static>(size: usize, f: impl Fn(usize) -> R + Send + Sync + 'static) -> Vec<R> {
    let f = Arc::new(f);
    let hs: Vec<_> = Threads::group(size)
        .into_iter()
        .enumerate()
        .map(|(r, g)| {
            let f = f.clone();
            std::thread::spawn(move || dist::with_world(g, || f(r)))
        })
        .collect();
    hs.into_iter().map(|h| h.join().expect("rank thread")).collect()
}

fn max_rel(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max) / scale
}

#[test]
fn synchronised_batch_norm_gives_the_global_batch_numbers() {
    use mixbt::candle_core::ModuleT;
    use mixbt::model::layers::{batch_norm, BatchNormConfig};
    // [8, 3, 4, 4], split 4 + 4 over two ranks; a loss that weighs every output differently.
    let x: Vec<f32> = (0..8 * 3 * 16).map(|i| ((i * 37 % 101) as f32 / 50.0 - 1.0) * (1.0 + (i % 3) as f32)).collect();
    let wts: Vec<f32> = (0..8 * 3 * 16).map(|i| ((i * 13 % 29) as f32) / 29.0).collect();
    let run = move |rows: std::ops::Range<usize>, relu: bool| -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
        let per = 3 * 16;
        let xs = Var::from_vec(x[rows.start * per..rows.end * per].to_vec(), (rows.len(), 3, 4, 4), &Device::Cpu).unwrap();
        let ws = Tensor::from_vec(wts[rows.start * per..rows.end * per].to_vec(), (rows.len(), 3, 4, 4), &Device::Cpu).unwrap();
        let vm = mixbt::candle_nn::VarMap::new();
        let vb = mixbt::candle_nn::VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let bn = batch_norm(3, BatchNormConfig::default(), vb).unwrap();
        let y = if relu { bn.forward_relu_t(xs.as_tensor(), true).unwrap() } else { bn.forward_t(xs.as_tensor(), true).unwrap() };
        let loss = (&y * &ws).unwrap().sum_all().unwrap();
        let g = loss.backward().unwrap();
        let v = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let mut params = vec![];
        params.extend(v(g.get(bn.weight()).unwrap()));
        params.extend(v(g.get(bn.bias()).unwrap()));
        (v(&y), v(g.get(xs.as_tensor()).unwrap()), params, v(bn.running_var()))
    };
    for relu in [false, true] {
        let (y, dx, dp, rv) = run(0..8, relu);
        let rank_run = run.clone();
        let parts = on_ranks(2, move |r| rank_run(r * 4..(r + 1) * 4, relu));
        let cat = |f: fn(&(Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>)) -> &Vec<f32>| parts.iter().flat_map(|p| f(p).clone()).collect::<Vec<f32>>();
        assert!(max_rel(&cat(|p| &p.0), &y) < 1e-5, "outputs (relu {relu})");
        assert!(max_rel(&cat(|p| &p.1), &dx) < 1e-5, "input gradients (relu {relu})");
        // Every rank's weight and bias gradients are already the whole (summed over ranks in
        // the backward pass).
        for p in &parts {
            assert!(max_rel(&p.2, &dp) < 1e-5, "weight and bias gradients (relu {relu})");
        }
        // Running statistics: the global batch's, the same on both ranks.
        assert!(max_rel(&parts[0].3, &rv) < 1e-6 && parts[0].3 == parts[1].3, "running variance");
    }
}

#[test]
fn gather_rows_keeps_each_ranks_rows_differentiable() {
    let outs = on_ranks(3, |r| {
        let g = dist::world();
        let x = Var::from_vec(vec![r as f32 + 1.0, 10.0 * (r as f32 + 1.0)], (1, 2), &Device::Cpu).unwrap();
        let all = g.gather_rows(x.as_tensor()).unwrap();
        // loss = Σ_i (i + 1) · row_i · [1, 2]: this rank's gradient is its own row's weight.
        let w = Tensor::new(&[[1f32, 2.], [2., 4.], [3., 6.]], &Device::Cpu).unwrap();
        let loss = (&all * &w).unwrap().sum_all().unwrap();
        let grad = loss.backward().unwrap().get(x.as_tensor()).unwrap().to_vec2::<f32>().unwrap();
        (all.to_vec2::<f32>().unwrap(), grad, loss.to_scalar::<f32>().unwrap())
    });
    for (r, (all, grad, loss)) in outs.iter().enumerate() {
        assert_eq!(all, &vec![vec![1., 10.], vec![2., 20.], vec![3., 30.]]);
        assert_eq!(grad, &vec![vec![(r + 1) as f32, 2.0 * (r + 1) as f32]]);
        assert_eq!(*loss, 1. + 20. + 4. + 80. + 9. + 180.);
    }
}

#[test]
fn blockwise_standardisation_is_the_standardisation_of_each_block() {
    use mixbt::loss::{standardize, standardize_blocks, MixedBarlowTwins};
    let z = Tensor::from_vec((0..6 * 3).map(|i| ((i * 7 % 11) as f32) * (1.0 + (i / 9) as f32)).collect::<Vec<_>>(), (6, 3), &Device::Cpu).unwrap();
    let whole = standardize_blocks(&z, 2).unwrap().to_vec2::<f32>().unwrap();
    let halves = [standardize(&z.narrow(0, 0, 3).unwrap()).unwrap(), standardize(&z.narrow(0, 3, 3).unwrap()).unwrap()];
    let expect: Vec<Vec<f32>> = halves.iter().flat_map(|h| h.to_vec2::<f32>().unwrap()).collect();
    assert_eq!(whole, expect);
    assert_eq!(standardize_blocks(&z, 1).unwrap().to_vec2::<f32>().unwrap(), standardize(&z).unwrap().to_vec2::<f32>().unwrap());
    assert!(standardize_blocks(&z, 4).is_err(), "6 rows do not split in 4 blocks");
    // One block is the loss as it was, bit for bit; two blocks another loss.
    let h = |s: u64| Tensor::rand(0f32, 1f32, (8, 16), &Device::Cpu).map(|t| (t + s as f64).unwrap()).unwrap();
    let (a, b, m) = (h(0), h(1), h(2));
    let perm: Vec<usize> = vec![1, 0, 3, 2, 5, 4, 7, 6];
    let loss = MixedBarlowTwins::default();
    let total = |p: mixbt::loss::LossParts| p.total.to_scalar::<f32>().unwrap();
    assert_eq!(total(loss.compute_blocks(&a, &b, &m, &perm, 0.3, 1).unwrap()), total(loss.compute(&a, &b, &m, &perm, 0.3).unwrap()));
    assert_ne!(total(loss.compute_blocks(&a, &b, &m, &perm, 0.3, 2).unwrap()), total(loss.compute(&a, &b, &m, &perm, 0.3).unwrap()));
}

#[test]
fn two_thread_ranks_train_as_one_process_with_two_mixing_blocks() {
    for stats in [LossStats::Global, LossStats::PerRank] {
        two_thread_ranks_against_one_process(stats);
    }
}

fn two_thread_ranks_against_one_process(stats: LossStats) {
    let steps = 4;
    let recipe = || {
        let mut r = presets::quickstart();
        r.data.builtin.as_mut().unwrap().train_size = 256;
        r.batch_size = 32;
        r.encoder = r.encoder.with_width(0.0625);
        r
    };
    let opts = PretrainOptions { skip_random_init_knn: true, workers: 1, mix_groups: Some(2), loss_stats: stats, ..Default::default() };
    let mut one = Pretrainer::new(recipe(), opts.clone()).unwrap();
    let l1: Vec<f64> = (0..steps).map(|_| one.step().unwrap().loss).collect();
    let w1: Vec<f32> = one.params().tensors().values().flat_map(|t| t.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()).collect();
    let ranks = on_ranks(2, move |_| {
        let mut t = Pretrainer::new(recipe(), PretrainOptions { mix_groups: None, ..opts.clone() }).unwrap();
        assert_eq!(t.world().size(), 2);
        let l: Vec<f64> = (0..steps).map(|_| t.step().unwrap().loss).collect();
        let w: Vec<f32> = t.params().tensors().values().flat_map(|t| t.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()).collect();
        (l, w)
    });
    for (l, w) in &ranks {
        for (a, b) in l.iter().zip(&l1) {
            assert!((a - b).abs() / b.abs() < 1e-4, "{stats:?}: loss {a} vs {b}: {l:?} vs {l1:?}");
        }
        assert!(max_rel(w, &w1) < 1e-4, "weights differ by {}", max_rel(w, &w1));
    }
    // Both ranks hold the same model.
    assert_eq!(ranks[0].1, ranks[1].1);
}
