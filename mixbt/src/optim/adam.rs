//! Adam as `torch.optim.Adam` (coupled L2 weight decay, added to the gradient) and AdamW
//! (`decoupled: true`, `p ← p·(1 − lr·wd)` before the Adam step).

use std::collections::BTreeMap;

use candle_core::backprop::GradStore;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::{load_into, Optimizer, ParamGroup};
use crate::Result;

/// Adam hyper-parameters (PyTorch defaults for betas and eps).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// AdamW's decoupled weight decay instead of PyTorch Adam's L2 term.
    #[serde(default)]
    pub decoupled: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled: false }
    }
}

struct State {
    m: Tensor,
    v: Tensor,
    step: u64,
}

/// The Adam optimiser.
pub struct Adam {
    groups: Vec<ParamGroup>,
    cfg: AdamConfig,
    state: BTreeMap<String, State>,
}

impl Adam {
    /// Adam over `groups` (the group learning rates override `cfg.lr`).
    pub fn new(groups: Vec<ParamGroup>, cfg: AdamConfig) -> Self {
        Self { groups, cfg, state: BTreeMap::new() }
    }
    /// One group with `cfg.lr`.
    pub fn single(params: Vec<(String, candle_core::Var)>, cfg: AdamConfig) -> Self {
        Self::new(vec![ParamGroup::new(params, cfg.lr)], cfg)
    }
    pub fn config(&self) -> &AdamConfig {
        &self.cfg
    }
}

impl Optimizer for Adam {
    fn step(&mut self, grads: &GradStore) -> Result<()> {
        let c = self.cfg;
        for g in &self.groups {
            for (name, var) in &g.params {
                let Some(grad) = grads.get(var.as_tensor()) else { continue };
                // Detached, so that the moments hold no graph (see `Lars::step`).
                let (grad, p) = (&grad.detach(), &var.as_tensor().detach());
                let st = match self.state.get_mut(name) {
                    Some(s) => s,
                    None => {
                        let z = p.zeros_like()?;
                        self.state.entry(name.clone()).or_insert(State { m: z.clone(), v: z, step: 0 })
                    }
                };
                st.step += 1;
                if fused_cpu_step(var, grad, &mut st.m, &mut st.v, st.step, g.lr, &c)? {
                    continue;
                }
                let mut p = p.clone();
                let mut grad = grad.clone();
                if c.weight_decay != 0.0 {
                    if c.decoupled {
                        p = (p * (1.0 - g.lr * c.weight_decay))?;
                    } else {
                        grad = (grad + (&p * c.weight_decay)?)?;
                    }
                }
                let bc1 = 1.0 - c.beta1.powi(st.step as i32);
                let bc2 = 1.0 - c.beta2.powi(st.step as i32);
                st.m = ((&st.m * c.beta1)? + (&grad * (1.0 - c.beta1))?)?;
                st.v = ((&st.v * c.beta2)? + (grad.sqr()? * (1.0 - c.beta2))?)?;
                let denom = ((st.v.sqrt()? / bc2.sqrt())? + c.eps)?;
                let step_size = g.lr / bc1;
                let new_p = (p - ((&st.m / denom)? * step_size)?)?;
                var.set(&new_p)?;
            }
        }
        Ok(())
    }
    fn num_groups(&self) -> usize {
        self.groups.len()
    }
    fn lr(&self, group: usize) -> f64 {
        self.groups[group].lr
    }
    fn set_lr(&mut self, group: usize, lr: f64) {
        self.groups[group].lr = lr;
    }
    fn state_tensors(&self) -> BTreeMap<String, Tensor> {
        let mut out = BTreeMap::new();
        for (k, s) in &self.state {
            out.insert(format!("exp_avg.{k}"), s.m.clone());
            out.insert(format!("exp_avg_sq.{k}"), s.v.clone());
        }
        out
    }
    fn state_scalars(&self) -> serde_json::Value {
        let steps: BTreeMap<&String, u64> = self.state.iter().map(|(k, s)| (k, s.step)).collect();
        serde_json::json!({ "kind": "adam", "steps": steps, "lrs": self.groups.iter().map(|g| g.lr).collect::<Vec<_>>() })
    }
    fn load_state(&mut self, tensors: &BTreeMap<String, Tensor>, scalars: &serde_json::Value) -> Result<()> {
        self.state.clear();
        let steps = scalars.get("steps").and_then(|s| s.as_object()).cloned().unwrap_or_default();
        for g in &self.groups {
            for (name, var) in &g.params {
                let Some(step) = steps.get(name).and_then(|v| v.as_u64()) else { continue };
                let m = load_into(tensors, &format!("exp_avg.{name}"), var.as_tensor())?;
                let v = load_into(tensors, &format!("exp_avg_sq.{name}"), var.as_tensor())?;
                self.state.insert(name.clone(), State { m, v, step });
            }
        }
        if let Some(lrs) = scalars.get("lrs").and_then(|v| v.as_array()) {
            for (g, lr) in self.groups.iter_mut().zip(lrs) {
                if let Some(lr) = lr.as_f64() {
                    g.lr = lr;
                }
            }
        }
        Ok(())
    }
}

/// Scalars of one fused Adam update.
#[derive(Clone, Copy)]
struct AdamHyper {
    b1: f32,
    b2: f32,
    bc2_sqrt: f32,
    eps: f32,
    wd: f32,
    decoupled: bool,
    decay: f32,
    step_size: f32,
}

crate::ops::simd_fn! {
    /// Adam on one chunk: new parameters, first and second moments from the old ones.
    fn adam_chunk(np: &mut [f32], nm: &mut [f32], nv: &mut [f32], ps: &[f32], gs: &[f32], ms: &[f32], vs: &[f32], h: &AdamHyper) {
        let AdamHyper { b1, b2, bc2_sqrt, eps, wd, decoupled, decay, step_size } = *h;
        for i in 0..np.len() {
            let mut pi = ps[i];
            let mut gi = gs[i];
            if wd != 0.0 {
                if decoupled {
                    pi *= decay;
                } else {
                    gi += pi * wd;
                }
            }
            let mi = ms[i] * b1 + gi * (1.0 - b1);
            let vi = vs[i] * b2 + gi * gi * (1.0 - b2);
            let denom = vi.sqrt() / bc2_sqrt + eps;
            np[i] = pi - mi / denom * step_size;
            nm[i] = mi;
            nv[i] = vi;
        }
    }
}

/// One Adam update of `var` in a single pass over its elements on the CPU (f32, contiguous);
/// the same arithmetic as the tensor path. Returns false when it does not apply.
fn fused_cpu_step(var: &candle_core::Var, grad: &Tensor, m: &mut Tensor, v: &mut Tensor, step: u64, lr: f64, c: &AdamConfig) -> Result<bool> {
    use candle_core::{DType, Storage};
    let p = var.as_tensor();
    if !p.device().is_cpu() || p.dtype() != DType::F32 || grad.dtype() != DType::F32 {
        return Ok(false);
    }
    let grad = grad.contiguous()?;
    let n = p.elem_count();
    let (b1, b2) = (c.beta1 as f32, c.beta2 as f32);
    let bc1 = 1.0 - c.beta1.powi(step as i32);
    let bc2 = 1.0 - c.beta2.powi(step as i32);
    let step_size = (lr / bc1) as f32;
    let bc2_sqrt = bc2.sqrt() as f32;
    let (eps, wd, decoupled) = (c.eps as f32, c.weight_decay as f32, c.decoupled);
    let decay = (1.0 - lr * c.weight_decay) as f32;
    let [new_p, new_m, new_v] = {
        let views = [p, &grad, &*m, &*v].map(|t| t.storage_and_layout());
        let mut sl: Vec<&[f32]> = Vec::with_capacity(4);
        for (s, l) in &views {
            let Storage::Cpu(cs) = &**s else { return Ok(false) };
            let Some((a, b)) = l.contiguous_offsets() else { return Ok(false) };
            sl.push(&cs.as_slice::<f32>()?[a..b]);
        }
        let (ps, gs, ms, vs) = (sl[0], sl[1], sl[2], sl[3]);
        const CH: usize = 1 << 15;
        let h = AdamHyper { b1, b2, bc2_sqrt, eps, wd, decoupled, decay, step_size };
        crate::ops::par_new_n(n, CH, true, |k, [np, nm, nv]| {
            let r = k * CH..k * CH + np.len();
            adam_chunk(np, nm, nv, &ps[r.clone()], &gs[r.clone()], &ms[r.clone()], &vs[r], &h);
        })
    };
    let dims = p.dims().to_vec();
    var.set(&Tensor::from_vec(new_p, dims.as_slice(), p.device())?)?;
    *m = Tensor::from_vec(new_m, dims.as_slice(), p.device())?;
    *v = Tensor::from_vec(new_v, dims.as_slice(), p.device())?;
    Ok(true)
}
