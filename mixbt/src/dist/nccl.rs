//! The NCCL backend (feature `cuda`): cudarc's `nccl` module on the training device's own CUDA
//! stream, one process per GPU. Ranks meet as `torchrun` ranks do: rank 0 creates the NCCL
//! unique id and hands it to the others over TCP at `MASTER_ADDR:MASTER_PORT` (only the id
//! crosses that socket; every collective is NCCL's). Tensors on the device are reduced in
//! place on the device; host buffers (batch-norm sums, gathered embeddings, broadcasts) are
//! copied to the device and back.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use candle_core::cuda_backend::cudarc::driver::CudaStream;
use candle_core::cuda_backend::cudarc::nccl::safe::{Comm, Id, ReduceOp};
use candle_core::{Device, Storage, Tensor};

use super::{guarded, timeout, Communicator};
use crate::{Error, Result};

/// One NCCL rank on one GPU.
pub struct NcclComm {
    comm: Mutex<Comm>,
    stream: Arc<CudaStream>,
    device: Device,
    rank: usize,
    size: usize,
}

// SAFETY: the communicator is used under its lock only, from one thread at a time.
unsafe impl Send for NcclComm {}
unsafe impl Sync for NcclComm {}

fn nccl_err(what: &str, e: impl std::fmt::Debug) -> Error {
    Error::msg(format!("NCCL {what}: {e:?}"))
}

/// Rank 0 serves the id to the `size − 1` others; they fetch it (retrying until the time-out).
fn exchange_id(rank: usize, size: usize, addr: &str, port: u16) -> Result<Id> {
    const LEN: usize = 128;
    if rank == 0 {
        let id = Id::new().map_err(|e| nccl_err("unique id", e))?;
        let bytes: Vec<u8> = id.internal().iter().map(|c| *c as u8).collect();
        let listener = TcpListener::bind(("0.0.0.0", port)).map_err(|e| Error::msg(format!("rank 0: listening on port {port} (MASTER_PORT): {e}")))?;
        for _ in 1..size {
            let (mut s, _) = listener.accept().map_err(|e| Error::msg(format!("rank 0: accepting a rank on port {port}: {e}")))?;
            s.write_all(&bytes).map_err(|e| Error::msg(format!("rank 0: sending the NCCL id: {e}")))?;
        }
        return Ok(id);
    }
    let t0 = Instant::now();
    loop {
        match TcpStream::connect((addr, port)) {
            Ok(mut s) => {
                let mut buf = [0u8; LEN];
                s.read_exact(&mut buf).map_err(|e| Error::msg(format!("rank {rank}: reading the NCCL id from {addr}:{port}: {e}")))?;
                let mut internal = [0 as std::ffi::c_char; LEN];
                for (d, s) in internal.iter_mut().zip(buf) {
                    *d = s as std::ffi::c_char;
                }
                return Ok(Id::uninit(internal));
            }
            Err(e) if t0.elapsed() > timeout() => {
                return Err(Error::msg(format!("rank {rank}: no rank 0 at {addr}:{port} (MASTER_ADDR:MASTER_PORT) after {:.0} s: {e}", t0.elapsed().as_secs_f64())))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

impl NcclComm {
    /// Join the NCCL world `size` as `rank`, training on `device` (a CUDA device).
    pub fn init(size: usize, rank: usize, device: &Device, addr: &str, port: u16) -> Result<Self> {
        let stream = device.as_cuda_device().map_err(|_| Error::Config("NCCL ranks train on a CUDA device (--device cuda)".into()))?.cuda_stream();
        let id = exchange_id(rank, size, addr, port)?;
        let comm = guarded(rank, "NCCL init", || Comm::from_rank(stream.clone(), rank, size, id)).map_err(|e| nccl_err("init", e))?;
        Ok(Self { comm: Mutex::new(comm), stream, device: device.clone(), rank, size })
    }

    fn host_all_reduce<T>(&self, buf: &mut [T]) -> Result<()>
    where
        T: candle_core::cuda_backend::cudarc::nccl::NcclType + candle_core::cuda_backend::cudarc::driver::DeviceRepr + Default + Copy,
    {
        let c = self.comm.lock().unwrap();
        guarded(self.rank, "all-reduce", || -> Result<()> {
            let mut d = self.stream.clone_htod(buf).map_err(|e| nccl_err("copy", e))?;
            c.all_reduce_in_place(&mut d, &ReduceOp::Sum).map_err(|e| nccl_err("all-reduce", e))?;
            let h = self.stream.clone_dtoh(&d).map_err(|e| nccl_err("copy", e))?;
            buf.copy_from_slice(&h);
            Ok(())
        })
    }
}

impl Communicator for NcclComm {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn backend(&self) -> &'static str {
        "nccl"
    }
    fn all_reduce_f32(&self, buf: &mut [f32]) -> Result<()> {
        self.host_all_reduce(buf)
    }
    fn all_reduce_f64(&self, buf: &mut [f64]) -> Result<()> {
        self.host_all_reduce(buf)
    }
    fn all_gather_f32(&self, send: &[f32]) -> Result<Vec<f32>> {
        let c = self.comm.lock().unwrap();
        guarded(self.rank, "all-gather", || -> Result<Vec<f32>> {
            let d = self.stream.clone_htod(send).map_err(|e| nccl_err("copy", e))?;
            let mut out = self.stream.alloc_zeros::<f32>(send.len() * self.size).map_err(|e| nccl_err("alloc", e))?;
            c.all_gather(&d, &mut out).map_err(|e| nccl_err("all-gather", e))?;
            self.stream.clone_dtoh(&out).map_err(|e| nccl_err("copy", e))
        })
    }
    fn broadcast_bytes(&self, buf: &mut Vec<u8>, root: usize) -> Result<()> {
        let c = self.comm.lock().unwrap();
        guarded(self.rank, "broadcast", || -> Result<()> {
            let mut len = self.stream.clone_htod(&[buf.len() as u64]).map_err(|e| nccl_err("copy", e))?;
            c.broadcast_in_place(&mut len, root as i32).map_err(|e| nccl_err("broadcast", e))?;
            let n = self.stream.clone_dtoh(&len).map_err(|e| nccl_err("copy", e))?[0] as usize;
            buf.resize(n, 0);
            let mut d = self.stream.clone_htod(&buf[..]).map_err(|e| nccl_err("copy", e))?;
            c.broadcast_in_place(&mut d, root as i32).map_err(|e| nccl_err("broadcast", e))?;
            buf.copy_from_slice(&self.stream.clone_dtoh(&d).map_err(|e| nccl_err("copy", e))?);
            Ok(())
        })
    }
    fn barrier(&self) -> Result<()> {
        let mut one = [0f32];
        self.host_all_reduce(&mut one)
    }
    fn all_reduce_tensor(&self, t: &Tensor) -> Result<Tensor> {
        if !t.device().is_cuda() {
            return super::all_reduce_through_host(self, t);
        }
        let x = t.to_dtype(candle_core::DType::F32)?.contiguous()?;
        let n = x.elem_count();
        let (st, l) = x.storage_and_layout();
        let Storage::Cuda(cs) = &*st else { return Err(Error::msg("NCCL all-reduce: a CUDA tensor expected")) };
        let src = cs.as_cuda_slice::<f32>()?.slice(l.start_offset()..l.start_offset() + n);
        let c = self.comm.lock().unwrap();
        let out = guarded(self.rank, "all-reduce", || -> Result<_> {
            let mut out = self.stream.alloc_zeros::<f32>(n).map_err(|e| nccl_err("alloc", e))?;
            c.all_reduce(&src, &mut out, &ReduceOp::Sum).map_err(|e| nccl_err("all-reduce", e))?;
            self.stream.synchronize().map_err(|e| nccl_err("synchronize", e))?;
            Ok(out)
        })?;
        let dev = self.device.as_cuda_device()?.clone();
        let storage = Storage::Cuda(candle_core::CudaStorage::wrap_cuda_slice(out, dev));
        Ok(Tensor::from_storage(storage, t.shape().clone(), candle_core::op::BackpropOp::none(), false).to_dtype(t.dtype())?)
    }
}
