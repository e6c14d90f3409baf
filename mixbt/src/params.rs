//! [`ParamStore`]: the named tensors of a model (trainable parameters and buffers), created with a
//! seeded, reproducible initialisation and read/written as safetensors.
//!
//! It is a `candle_nn` [`SimpleBackend`], so layers are built the candle-nn way with a
//! [`VarBuilder`]: `let vb = store.var_builder(); let conv = conv2d(.., vb.pp("conv1"))`.
//! Unlike `candle_nn::VarMap`, initial values come from a ChaCha RNG seeded by the store seed and
//! the tensor name (candle's CPU RNG cannot be seeded), so the same seed gives the same network
//! on every run and every device.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::init::{FanInOut, NormalOrUniform};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::{Error, Result};

/// Names whose last component marks a buffer (statistics, counters): never trained, never decayed.
pub const BUFFER_SUFFIXES: &[&str] = &["running_mean", "running_var", "num_batches_tracked"];

/// Whether `name` is a buffer rather than a trainable parameter.
pub fn is_buffer(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name);
    BUFFER_SUFFIXES.contains(&last)
}

#[derive(Default)]
struct Inner {
    vars: BTreeMap<String, Var>,
}

/// Named model tensors with reproducible initialisation. Cloning shares the same tensors.
#[derive(Clone)]
pub struct ParamStore {
    inner: Arc<Mutex<Inner>>,
    seed: u64,
    dtype: DType,
    device: Device,
}

impl ParamStore {
    /// An empty store; tensors are created on first request by the layers' constructors.
    pub fn new(seed: u64, dtype: DType, device: &Device) -> Self {
        Self { inner: Arc::default(), seed, dtype, device: device.clone() }
    }

    pub fn device(&self) -> &Device {
        &self.device
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// A `VarBuilder` that creates tensors in this store.
    pub fn var_builder(&self) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), self.dtype, self.device.clone())
    }

    /// Every tensor, sorted by name.
    pub fn all(&self) -> Vec<(String, Var)> {
        let g = self.inner.lock().unwrap();
        g.vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Trainable parameters (not buffers), sorted by name.
    pub fn trainable(&self) -> Vec<(String, Var)> {
        self.all().into_iter().filter(|(k, _)| !is_buffer(k)).collect()
    }

    /// The tensor called `name`.
    pub fn get(&self, name: &str) -> Option<Var> {
        self.inner.lock().unwrap().vars.get(name).cloned()
    }

    /// Names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.inner.lock().unwrap().vars.keys().cloned().collect()
    }

    /// Number of elements in trainable parameters.
    pub fn num_trainable(&self) -> usize {
        self.trainable().iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// Overwrite tensor `name` (shape must match; dtype is converted).
    pub fn set(&self, name: &str, value: &Tensor) -> Result<()> {
        let var = self
            .get(name)
            .ok_or_else(|| Error::Checkpoint(format!("no tensor called `{name}` in the model")))?;
        if var.shape() != value.shape() {
            return Err(Error::Checkpoint(format!(
                "`{name}`: shape {:?} in the file, {:?} in the model",
                value.dims(),
                var.dims()
            )));
        }
        let v = value.to_dtype(var.dtype())?.to_device(var.device())?;
        var.set(&v)?;
        Ok(())
    }

    /// Every tensor as a name → tensor map (contiguous, on the store's device).
    pub fn tensors(&self) -> BTreeMap<String, Tensor> {
        self.all().into_iter().map(|(k, v)| (k, v.as_tensor().clone())).collect()
    }

    /// Save every tensor as safetensors, atomically (temporary file + rename).
    pub fn save_safetensors(&self, path: &Path, metadata: Option<BTreeMap<String, String>>) -> Result<()> {
        crate::io::write_safetensors(path, &self.tensors(), metadata)
    }

    /// Load every tensor of the store from a safetensors file. Missing, unexpected or mis-shaped
    /// names are reported together in one error.
    pub fn load_safetensors(&self, path: &Path) -> Result<()> {
        let map = crate::io::read_safetensors(path, &Device::Cpu)?;
        self.load_map(&map).map_err(|e| match e {
            Error::Checkpoint(m) => Error::format(path, m),
            e => e,
        })
    }

    /// Load from a map, checking that the names and shapes are exactly the store's and that
    /// every value is finite.
    pub fn load_map(&self, map: &BTreeMap<String, Tensor>) -> Result<()> {
        check_keys(self, map)?;
        check_finite(map)?;
        for (k, v) in map {
            self.set(k, v)?;
        }
        Ok(())
    }

    fn init_tensor(&self, shape: &Shape, name: &str, init: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let n = shape.elem_count();
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ fnv1a(name));
        let host: Vec<f64> = match init {
            Init::Const(c) => vec![c; n],
            Init::Uniform { lo, up } => (0..n).map(|_| rng.random_range(lo..up)).collect(),
            Init::Randn { mean, stdev } => sample_normal(&mut rng, n, mean, stdev),
            Init::Kaiming { dist, fan, non_linearity } => {
                let fan = fan_for(fan, shape);
                let std = non_linearity.gain() / (fan as f64).sqrt();
                match dist {
                    NormalOrUniform::Normal => sample_normal(&mut rng, n, 0.0, std),
                    NormalOrUniform::Uniform => {
                        let b = 3f64.sqrt() * std;
                        (0..n).map(|_| rng.random_range(-b..b)).collect()
                    }
                }
            }
        };
        Ok(Tensor::from_vec(host, shape.clone(), &Device::Cpu)?.to_dtype(dtype)?.to_device(dev)?)
    }
}

fn fan_for(fan: FanInOut, shape: &Shape) -> usize {
    fan.for_shape(shape).max(1)
}

fn sample_normal(rng: &mut ChaCha8Rng, n: usize, mean: f64, std: f64) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let z: f64 = StandardNormal.sample(rng);
            mean + std * z
        })
        .collect()
}

/// 64-bit FNV-1a hash, used to derive a per-tensor seed from its name.
pub fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

impl SimpleBackend for ParamStore {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        if let Some(v) = self.inner.lock().unwrap().vars.get(name) {
            if v.shape() != &s {
                candle_core::bail!("tensor `{name}` exists with shape {:?}, requested {:?}", v.dims(), s.dims())
            }
            return Ok(v.as_tensor().clone());
        }
        let t = self.init_tensor(&s, name, h, dtype, dev).map_err(candle_core::Error::wrap)?;
        let var = Var::from_tensor(&t)?;
        let out = var.as_tensor().clone();
        self.inner.lock().unwrap().vars.insert(name.to_string(), var);
        Ok(out)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> candle_core::Result<Tensor> {
        match self.inner.lock().unwrap().vars.get(name) {
            Some(v) => Ok(v.as_tensor().clone()),
            None => candle_core::bail!("no tensor called `{name}`"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.inner.lock().unwrap().vars.contains_key(name)
    }
}

/// Check that `map` has exactly the store's names with the same shapes; one error lists every
/// missing, unexpected and mis-shaped key.
pub fn check_keys(store: &ParamStore, map: &BTreeMap<String, Tensor>) -> Result<()> {
    let mut missing = vec![];
    let mut mis = vec![];
    for (name, var) in store.all() {
        match map.get(&name) {
            None => missing.push(name),
            Some(t) if t.dims() != var.dims() => {
                mis.push(format!("{name} (file {:?}, model {:?})", t.dims(), var.dims()))
            }
            _ => {}
        }
    }
    let unexpected: Vec<String> = map.keys().filter(|k| store.get(k).is_none()).cloned().collect();
    if missing.is_empty() && unexpected.is_empty() && mis.is_empty() {
        return Ok(());
    }
    let mut msg = String::from("checkpoint does not match the model:");
    let list = |v: &[String]| {
        let mut s = v.iter().take(12).cloned().collect::<Vec<_>>().join(", ");
        if v.len() > 12 {
            s.push_str(&format!(", … ({} in all)", v.len()));
        }
        s
    };
    if !missing.is_empty() {
        msg.push_str(&format!("\n  missing keys: {}", list(&missing)));
    }
    if !unexpected.is_empty() {
        msg.push_str(&format!("\n  unexpected keys: {}", list(&unexpected)));
    }
    if !mis.is_empty() {
        msg.push_str(&format!("\n  mis-shaped keys: {}", list(&mis)));
    }
    Err(Error::Checkpoint(msg))
}

/// An error naming the first floating-point tensor of `map` that holds NaN or infinite values
/// (a diverged or corrupted checkpoint would otherwise embed to zeros and score k-NN).
pub fn check_finite(map: &BTreeMap<String, Tensor>) -> Result<()> {
    for (name, t) in map {
        if !t.dtype().is_float() {
            continue;
        }
        let v: Vec<f64> = t.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
        let bad = v.iter().filter(|x| !x.is_finite()).count();
        if bad > 0 {
            return Err(Error::Checkpoint(format!("tensor `{name}` holds {bad} NaN or infinite values of {}", v.len())));
        }
    }
    Ok(())
}

/// A device by name: `cpu`, `cuda` or `cuda:N` (CUDA needs the `cuda` feature).
pub fn parse_device(s: &str) -> Result<Device> {
    let s = s.trim();
    if s == "cpu" {
        return Ok(Device::Cpu);
    }
    if let Some(n) = s.strip_prefix("cuda:").or_else(|| (s == "cuda").then_some("0")) {
        let n: usize = n.parse().map_err(|_| crate::Error::Config(format!("bad device `{s}` (cpu or cuda:N)")))?;
        if !cfg!(feature = "cuda") {
            return Err(crate::Error::Config(format!(
                "device `{s}`: this mixbt was built without CUDA (build with `--features cuda`; in a notebook, add features = [\"cuda\"] to the `:dep mixbt` line)"
            )));
        }
        return Ok(Device::new_cuda(n)?);
    }
    Err(crate::Error::Config(format!("bad device `{s}` (cpu or cuda:N)")))
}

/// The device named by `MIXBT_DEVICE` (`cpu` when unset): what every notebook runs on.
pub fn device_from_env() -> Result<Device> {
    match std::env::var("MIXBT_DEVICE") {
        Ok(s) if !s.trim().is_empty() => parse_device(&s),
        _ => Ok(Device::Cpu),
    }
}
