//! Data-parallel training on existing distributed engines: MPI for CPU machines and clusters
//! (feature `mpi`: the `mpi` crate on Open MPI or MPICH) and NCCL for GPUs (feature `cuda`:
//! cudarc's `nccl`). A [`Communicator`] is one backend's handful of collectives; a [`Group`]
//! wraps it with what training needs on tensors (a differentiable all-reduce and row gather,
//! the gradient reduction, broadcasting a value from rank 0) and counts what crosses.
//!
//! The world a process trains in is [`world()`]: a single process (size 1, no collective at
//! all: exactly the one-process numbers) unless [`init_from_env`] found a launcher
//! (`mpirun`, or `WORLD_SIZE`/`RANK`/`MASTER_ADDR`/`MASTER_PORT` for NCCL) and [`set_world`]
//! installed it.
//!
//! Every collective runs under a watchdog: one that has waited longer than the time-out
//! (`MIXBT_DIST_TIMEOUT` seconds, default 1800) ends the process with a message naming the
//! collective, the rank and the step, and the launcher then ends the other ranks; a rank that
//! dies is seen by the launcher the same way. No rank waits forever.

#[cfg(feature = "mpi")]
mod mpi;
#[cfg(feature = "cuda")]
mod nccl;

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor, Var};

use crate::{Error, Result};

/// The collectives data-parallel training needs, over the ranks of one job. Every rank calls
/// them in the same order with buffers of the same length.
pub trait Communicator: Send + Sync {
    /// This process's rank, `0..size`.
    fn rank(&self) -> usize;
    /// Ranks in the job.
    fn size(&self) -> usize;
    /// `"single"`, `"mpi"` or `"nccl"`.
    fn backend(&self) -> &'static str;
    /// Element-wise sum over ranks, in place.
    fn all_reduce_f32(&self, buf: &mut [f32]) -> Result<()>;
    /// Element-wise sum over ranks, in place (batch-norm statistics).
    fn all_reduce_f64(&self, buf: &mut [f64]) -> Result<()>;
    /// Every rank's `send` (one length on every rank), concatenated in rank order.
    fn all_gather_f32(&self, send: &[f32]) -> Result<Vec<f32>>;
    /// Rank `root`'s `buf` (any length) on every rank.
    fn broadcast_bytes(&self, buf: &mut Vec<u8>, root: usize) -> Result<()>;
    /// Wait until every rank is here.
    fn barrier(&self) -> Result<()>;
    /// End this rank's part in the job (MPI's `MPI_Finalize`, which the launcher expects from
    /// every rank that ends well); no collective may follow.
    fn finalize(&self) -> Result<()> {
        Ok(())
    }
    /// [`all_reduce_f32`](Self::all_reduce_f32) of a tensor, on the tensor's device where the
    /// backend can (NCCL on a CUDA tensor); through the host otherwise.
    fn all_reduce_tensor(&self, t: &Tensor) -> Result<Tensor> {
        all_reduce_through_host(self, t)
    }
}

/// [`Communicator::all_reduce_tensor`] through a host buffer (any device).
pub fn all_reduce_through_host<C: Communicator + ?Sized>(comm: &C, t: &Tensor) -> Result<Tensor> {
    let mut v: Vec<f32> = t.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1()?;
    comm.all_reduce_f32(&mut v)?;
    Ok(Tensor::from_vec(v, t.shape(), t.device())?.to_dtype(t.dtype())?)
}

/// One process: every collective is the identity.
pub struct Single;

impl Communicator for Single {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn backend(&self) -> &'static str {
        "single"
    }
    fn all_reduce_f32(&self, _: &mut [f32]) -> Result<()> {
        Ok(())
    }
    fn all_reduce_f64(&self, _: &mut [f64]) -> Result<()> {
        Ok(())
    }
    fn all_gather_f32(&self, send: &[f32]) -> Result<Vec<f32>> {
        Ok(send.to_vec())
    }
    fn broadcast_bytes(&self, _: &mut Vec<u8>, _: usize) -> Result<()> {
        Ok(())
    }
    fn barrier(&self) -> Result<()> {
        Ok(())
    }
    fn all_reduce_tensor(&self, t: &Tensor) -> Result<Tensor> {
        Ok(t.clone())
    }
}

/// What a [`Group`] moved: calls, bytes each rank sent into all-reduces and gathers, and the
/// time spent in them (the bench's figures).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CommStats {
    pub calls: u64,
    pub bytes: u64,
    pub seconds: f64,
}

/// A communicator with the tensor-level operations of training. Cheap to clone (shared).
#[derive(Clone)]
pub struct Group {
    comm: Arc<dyn Communicator>,
    stats: Arc<Mutex<CommStats>>,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Group({} rank {} of {})", self.backend(), self.rank(), self.size())
    }
}

impl Group {
    pub fn new(comm: Arc<dyn Communicator>) -> Self {
        Self { comm, stats: Arc::default() }
    }
    /// The one-process world.
    pub fn single() -> Self {
        Self::new(Arc::new(Single))
    }
    pub fn rank(&self) -> usize {
        self.comm.rank()
    }
    pub fn size(&self) -> usize {
        self.comm.size()
    }
    pub fn backend(&self) -> &'static str {
        self.comm.backend()
    }
    /// Whether this rank writes files and prints (rank 0).
    pub fn is_root(&self) -> bool {
        self.rank() == 0
    }
    pub fn communicator(&self) -> &dyn Communicator {
        self.comm.as_ref()
    }
    /// What crossed so far.
    pub fn stats(&self) -> CommStats {
        *self.stats.lock().unwrap()
    }
    pub fn reset_stats(&self) {
        *self.stats.lock().unwrap() = CommStats::default();
    }

    fn timed<R>(&self, bytes: usize, f: impl FnOnce() -> Result<R>) -> Result<R> {
        let t0 = Instant::now();
        let r = f();
        let mut s = self.stats.lock().unwrap();
        s.calls += 1;
        s.bytes += bytes as u64;
        s.seconds += t0.elapsed().as_secs_f64();
        r
    }

    pub fn all_reduce_f64(&self, buf: &mut [f64]) -> Result<()> {
        if self.size() == 1 {
            return Ok(());
        }
        self.timed(buf.len() * 8, || self.comm.all_reduce_f64(buf))
    }

    pub fn barrier(&self) -> Result<()> {
        if self.size() == 1 {
            return Ok(());
        }
        self.comm.barrier()
    }

    /// Rank 0's `value` on every rank (serialised as JSON).
    pub fn broadcast_json<T: serde::Serialize + serde::de::DeserializeOwned>(&self, value: Option<T>) -> Result<T> {
        if self.size() == 1 {
            return value.ok_or_else(|| Error::msg("broadcast: rank 0 has no value"));
        }
        let mut buf = match (&value, self.is_root()) {
            (Some(v), true) => serde_json::to_vec(v)?,
            (None, true) => return Err(Error::msg("broadcast: rank 0 has no value")),
            _ => Vec::new(),
        };
        self.comm.broadcast_bytes(&mut buf, 0)?;
        Ok(serde_json::from_slice(&buf)?)
    }

    /// The sum over ranks of `t`, differentiable: its gradient is the sum over ranks of the
    /// incoming gradients (each rank's gradient is its own path's part of one global loss).
    pub fn all_reduce(&self, t: &Tensor) -> Result<Tensor> {
        if self.size() == 1 {
            return Ok(t.clone());
        }
        Ok(t.contiguous()?.apply_op1(AllReduceOp { group: self.clone() })?)
    }

    /// Every rank's rows of `t` (`[n, …]`, the same `n` on every rank), stacked in rank order
    /// (`[size·n, …]`). This rank's block is `t` itself, so the gradient of a loss of the whole
    /// batch flows back into this rank's rows only; the other blocks are constants here and
    /// get their gradient on their own ranks. The identity for one process.
    pub fn gather_rows(&self, t: &Tensor) -> Result<Tensor> {
        if self.size() == 1 {
            return Ok(t.clone());
        }
        let local: Vec<f32> = t.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1()?;
        let all = self.timed(local.len() * 4, || self.comm.all_gather_f32(&local))?;
        let mut dims = t.dims().to_vec();
        let n = dims[0];
        let mut blocks = Vec::with_capacity(self.size());
        for r in 0..self.size() {
            if r == self.rank() {
                blocks.push(t.clone());
            } else {
                dims[0] = n;
                let b = Tensor::from_slice(&all[r * local.len()..(r + 1) * local.len()], dims.as_slice(), t.device())?.to_dtype(t.dtype())?;
                blocks.push(b);
            }
        }
        Ok(Tensor::cat(&blocks, 0)?)
    }

    /// Sum (or, with `mean`, average) the gradients of `vars` over ranks, in one all-reduce of
    /// all of them. A variable without a gradient on this rank contributes zeros; one whose
    /// gradient is already the sum over ranks ([`mark_reduced`]) is left as it is (divided by
    /// the rank count with `mean`). With one process nothing changes.
    pub fn reduce_grads(&self, grads: &mut GradStore, vars: &[Var], mean: bool) -> Result<()> {
        let reduced = REDUCED.with(|r| std::mem::take(&mut *r.borrow_mut()));
        if self.size() == 1 {
            return Ok(());
        }
        let (done, vars): (Vec<&Var>, Vec<&Var>) = vars.iter().partition(|v| reduced.contains(&v.as_tensor().id()));
        if mean {
            for v in done {
                if let Some(g) = grads.get(v.as_tensor()) {
                    let g = (g / self.size() as f64)?;
                    grads.insert(v.as_tensor(), g);
                }
            }
        }
        let mut flat = Vec::with_capacity(vars.len());
        for v in &vars {
            let g = match grads.get(v.as_tensor()) {
                Some(g) => g.flatten_all()?,
                None => v.as_tensor().zeros_like()?.flatten_all()?,
            };
            flat.push(g);
        }
        let all = Tensor::cat(&flat, 0)?;
        let bytes = all.elem_count() * 4;
        let mut sum = self.timed(bytes, || self.comm.all_reduce_tensor(&all))?;
        if mean {
            sum = (sum / self.size() as f64)?;
        }
        let mut at = 0;
        for v in &vars {
            let n = v.as_tensor().elem_count();
            grads.insert(v.as_tensor(), sum.narrow(0, at, n)?.reshape(v.as_tensor().shape())?);
            at += n;
        }
        Ok(())
    }
}

thread_local! {
    /// Tensors whose gradient of this step is already the sum over ranks.
    static REDUCED: RefCell<std::collections::HashSet<candle_core::TensorId>> = RefCell::new(Default::default());
}

/// Say that the gradient `t` receives in this step's backward pass is already the sum over
/// ranks (the synchronised batch norm's weight and bias: summed in f64 in its backward pass,
/// more exactly than f32 shares added afterwards), so [`Group::reduce_grads`] leaves it.
pub fn mark_reduced(t: &Tensor) {
    REDUCED.with(|r| r.borrow_mut().insert(t.id()));
}

/// [`Group::all_reduce`] as a custom op.
struct AllReduceOp {
    group: Group,
}

impl CustomOp1 for AllReduceOp {
    fn name(&self) -> &'static str {
        "mixbt-all-reduce"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let mut v = match (s, l.contiguous_offsets()) {
            (CpuStorage::F32(v), Some((a, b))) => v[a..b].to_vec(),
            _ => candle_core::bail!("all-reduce: a contiguous f32 tensor expected"),
        };
        let g = &self.group;
        g.timed(v.len() * 4, || g.comm.all_reduce_f32(&mut v)).map_err(candle_core::Error::wrap)?;
        Ok((CpuStorage::F32(v), l.shape().clone()))
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s: &candle_core::CudaStorage, l: &Layout) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::backend::BackendStorage;
        let t = Tensor::from_storage(candle_core::Storage::Cuda(s.try_clone(l)?), l.shape().clone(), candle_core::op::BackpropOp::none(), false);
        let g = &self.group;
        let r = g.timed(l.shape().elem_count() * 4, || g.comm.all_reduce_tensor(&t)).map_err(candle_core::Error::wrap)?;
        let (st, _) = r.storage_and_layout();
        match &*st {
            candle_core::Storage::Cuda(c) => Ok((c.try_clone(r.layout())?, l.shape().clone())),
            _ => candle_core::bail!("all-reduce: a CUDA result expected"),
        }
    }
    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(self.group.all_reduce(grad).map_err(candle_core::Error::wrap)?))
    }
}

// ---------------------------------------------------------------------------------------------
// The world of this process.

static WORLD: OnceLock<Group> = OnceLock::new();

thread_local! {
    static THREAD_WORLD: RefCell<Option<Group>> = const { RefCell::new(None) };
}

/// The group this thread trains in: the one [`with_world`] set for the thread, else the one
/// [`set_world`] installed for the process, else a single process.
pub fn world() -> Group {
    THREAD_WORLD.with(|w| w.borrow().clone()).or_else(|| WORLD.get().cloned()).unwrap_or_else(Group::single)
}

/// Install the process's group (once; the launcher's world does not change).
pub fn set_world(g: Group) -> Result<()> {
    WORLD.set(g).map_err(|_| Error::Config("the distributed world was already set".into()))
}

/// Finalise the process's world (see [`Communicator::finalize`]): the last call of a rank that
/// ends well. Nothing without one.
pub fn finalize() -> Result<()> {
    match WORLD.get() {
        Some(g) => g.comm.finalize(),
        None => Ok(()),
    }
}

/// Run `f` with `g` as this thread's world (one thread per rank in one process).
pub fn with_world<R>(g: Group, f: impl FnOnce() -> R) -> R {
    let old = THREAD_WORLD.with(|w| w.replace(Some(g)));
    let r = f();
    THREAD_WORLD.with(|w| *w.borrow_mut() = old);
    r
}

/// How this process was launched, read from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launch {
    /// No launcher: one process.
    Single,
    /// An MPI launcher (`mpirun`/`mpiexec`/`srun` with PMI): ranks come from MPI itself.
    Mpi { size: usize, rank: usize, local_size: usize, var: &'static str },
    /// `torchrun`-style variables: `WORLD_SIZE`, `RANK`, `LOCAL_RANK`, `MASTER_ADDR`,
    /// `MASTER_PORT` (NCCL, one process per GPU).
    Env { size: usize, rank: usize, local_rank: usize, addr: String, port: u16 },
}

fn env_usize(k: &str) -> Option<usize> {
    std::env::var(k).ok().and_then(|v| v.trim().parse().ok())
}

impl Launch {
    /// Read the launcher's variables: Open MPI (`OMPI_COMM_WORLD_SIZE`), MPICH/Hydra and Slurm
    /// PMI (`PMI_SIZE`), PMIx (`PMIX_RANK`), then `WORLD_SIZE`.
    pub fn from_env() -> Result<Launch> {
        for (size_var, rank_var, local_var) in [
            ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"),
            ("PMI_SIZE", "PMI_RANK", "MPI_LOCALNRANKS"),
        ] {
            if let Some(size) = env_usize(size_var) {
                let rank = env_usize(rank_var).unwrap_or(0);
                let local_size = env_usize(local_var).unwrap_or(size).max(1);
                return Ok(Launch::Mpi { size, rank, local_size, var: size_var });
            }
        }
        if let Some(size) = env_usize("WORLD_SIZE") {
            let get = |k: &str| std::env::var(k).map_err(|_| Error::Config(format!("WORLD_SIZE is set but {k} is not (NCCL ranks need WORLD_SIZE, RANK, MASTER_ADDR and MASTER_PORT)")));
            let rank: usize = get("RANK")?.trim().parse().map_err(|_| Error::Config("RANK must be a number".into()))?;
            let port: u16 = get("MASTER_PORT")?.trim().parse().map_err(|_| Error::Config("MASTER_PORT must be a port number".into()))?;
            let addr = get("MASTER_ADDR")?;
            if rank >= size || size == 0 {
                return Err(Error::Config(format!("RANK {rank} is not below WORLD_SIZE {size}")));
            }
            return Ok(Launch::Env { size, rank, local_rank: env_usize("LOCAL_RANK").unwrap_or(rank), addr, port });
        }
        Ok(Launch::Single)
    }

    /// Ranks of this job on this machine (to share its cores).
    pub fn local_size(&self) -> usize {
        match self {
            Launch::Single => 1,
            Launch::Mpi { local_size, .. } => *local_size,
            Launch::Env { size, .. } => env_usize("LOCAL_WORLD_SIZE").unwrap_or(*size).max(1),
        }
    }
}

/// Join the job this process was launched into ([`Launch::from_env`]) and return its group
/// (not installed: see [`set_world`]). `cuda` says whether training runs on a CUDA device
/// (NCCL needs one). A launcher this build cannot serve is an error that says which feature
/// to build with. NCCL ranks train on `device` (the CLI picks `cuda:LOCAL_RANK`). The group is
/// checked with one all-reduce before it is returned.
pub fn init_from_env(device: &candle_core::Device) -> Result<Group> {
    let cuda = device.is_cuda();
    let g = match Launch::from_env()? {
        Launch::Single => return Ok(Group::single()),
        Launch::Mpi { size, var, .. } => mpi_group(size, var)?,
        Launch::Env { size, rank, addr, port, .. } => {
            if !cuda {
                return Err(Error::Config(format!(
                    "WORLD_SIZE={size} asks for NCCL ranks, which train on GPUs: pass --device cuda (CPU ranks: mpirun with a build with --features mpi)"
                )));
            }
            nccl_group(size, rank, device, &addr, port)?
        }
    };
    // One all-reduce before anything else: every rank is there and sums agree.
    let mut probe = [g.rank() as f64 + 1.0];
    g.all_reduce_f64(&mut probe)?;
    let n = g.size() as f64;
    if probe[0] != n * (n + 1.0) / 2.0 {
        return Err(Error::msg(format!("{} check failed on rank {}: sum of ranks {} (expected {})", g.backend(), g.rank(), probe[0], n * (n + 1.0) / 2.0)));
    }
    Ok(g)
}

#[cfg(feature = "mpi")]
fn mpi_group(_size: usize, _var: &str) -> Result<Group> {
    Ok(Group::new(Arc::new(mpi::MpiComm::init()?)))
}

#[cfg(not(feature = "mpi"))]
fn mpi_group(size: usize, var: &str) -> Result<Group> {
    Err(Error::Config(format!(
        "started by an MPI launcher ({var}={size}) but this mixbt was built without MPI: build it with `cargo build --release --features mpi` (Debian: libopenmpi-dev, libclang-dev)"
    )))
}

#[cfg(feature = "cuda")]
fn nccl_group(size: usize, rank: usize, device: &candle_core::Device, addr: &str, port: u16) -> Result<Group> {
    Ok(Group::new(Arc::new(nccl::NcclComm::init(size, rank, device, addr, port)?)))
}

#[cfg(not(feature = "cuda"))]
fn nccl_group(_size: usize, _rank: usize, _device: &candle_core::Device, _addr: &str, _port: u16) -> Result<Group> {
    Err(Error::Config("WORLD_SIZE is set for NCCL ranks but this mixbt was built without CUDA (scripts/build-cuda.sh)".into()))
}

// ---------------------------------------------------------------------------------------------
// The watchdog (used by the MPI and NCCL backends).

/// The time-out of one collective: `MIXBT_DIST_TIMEOUT` seconds, default 1800 (rank 0's k-NN
/// runs while the others wait in a broadcast).
pub fn timeout() -> Duration {
    let s = std::env::var("MIXBT_DIST_TIMEOUT").ok().and_then(|v| v.trim().parse::<f64>().ok()).filter(|v| *v > 0.0).unwrap_or(1800.0);
    Duration::from_secs_f64(s)
}

/// The step training is at (named by the watchdog's message).
static STEP: AtomicUsize = AtomicUsize::new(0);
/// Milliseconds since [`EPOCH0`] at which the collective in progress started (0: none).
#[cfg_attr(not(any(feature = "mpi", feature = "cuda")), allow(dead_code))]
static IN_COLLECTIVE: AtomicU64 = AtomicU64::new(0);
#[cfg_attr(not(any(feature = "mpi", feature = "cuda")), allow(dead_code))]
static WHAT: Mutex<&'static str> = Mutex::new("");
#[cfg_attr(not(any(feature = "mpi", feature = "cuda")), allow(dead_code))]
static EPOCH0: OnceLock<Instant> = OnceLock::new();

/// Tell the watchdog which step training is at.
pub fn set_step(step: usize) {
    STEP.store(step, Ordering::Relaxed);
}

/// Run collective `what` of rank `rank` under the watchdog: if it has not returned after
/// [`timeout`], the process prints why and exits with status 70 (the launcher ends the rest).
#[cfg_attr(not(any(feature = "mpi", feature = "cuda")), allow(dead_code))]
pub(crate) fn guarded<R>(rank: usize, what: &'static str, f: impl FnOnce() -> R) -> R {
    static STARTED: OnceLock<()> = OnceLock::new();
    let t0 = *EPOCH0.get_or_init(Instant::now);
    STARTED.get_or_init(|| {
        let limit = timeout();
        std::thread::Builder::new()
            .name("mixbt-dist-watchdog".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_millis(200).min(limit / 4));
                let since = IN_COLLECTIVE.load(Ordering::Relaxed);
                if since == 0 {
                    continue;
                }
                let waited = (t0.elapsed().as_millis() as u64).saturating_sub(since);
                if waited > limit.as_millis() as u64 {
                    let what = *WHAT.lock().unwrap();
                    eprintln!(
                        "error: rank {rank}: {what} waited {:.0} s for the other ranks at step {} (time-out {:.0} s, MIXBT_DIST_TIMEOUT): a rank died or hangs; stopping",
                        waited as f64 / 1e3,
                        STEP.load(Ordering::Relaxed) + 1,
                        limit.as_secs_f64()
                    );
                    // SAFETY: ends the process at once, without running atexit handlers that
                    // could wait on the hung collective.
                    unsafe { libc::_exit(70) };
                }
            })
            .expect("watchdog thread");
    });
    *WHAT.lock().unwrap() = what;
    IN_COLLECTIVE.store((t0.elapsed().as_millis() as u64).max(1), Ordering::Relaxed);
    let r = f();
    IN_COLLECTIVE.store(0, Ordering::Relaxed);
    r
}

/// Fault injection for the launcher tests: `MIXBT_DIST_FAULT=exit:<rank>:<step>` makes rank
/// `<rank>` exit (status 3) when step `<step>` (1-based) starts, `hang:<rank>:<step>` makes it
/// stop answering. Nothing happens without the variable.
pub fn fault_point(rank: usize, step: usize) {
    let Ok(spec) = std::env::var("MIXBT_DIST_FAULT") else { return };
    let parts: Vec<&str> = spec.split(':').collect();
    let [kind, r, s] = parts.as_slice() else { return };
    if r.parse::<usize>().ok() != Some(rank) || s.parse::<usize>().ok() != Some(step) {
        return;
    }
    match *kind {
        "exit" => {
            eprintln!("rank {rank}: exiting at step {step} (MIXBT_DIST_FAULT)");
            std::process::exit(3);
        }
        "hang" => {
            eprintln!("rank {rank}: hanging at step {step} (MIXBT_DIST_FAULT)");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        _ => {}
    }
}

/// This rank's share `[start, end)` of a global batch of `n` rows over `size` ranks (an error
/// unless `size` divides `n`).
pub fn shard_range(n: usize, rank: usize, size: usize) -> Result<std::ops::Range<usize>> {
    if size == 0 || n % size != 0 {
        return Err(Error::field("batch_size", format!("{n} is the global batch; it must divide evenly over {size} ranks")));
    }
    let per = n / size;
    Ok(rank * per..(rank + 1) * per)
}
