//! The MPI backend (feature `mpi`): the `mpi` crate (rsmpi) over the system's MPI library
//! (Open MPI or MPICH). MPI is initialised with `MPI_THREAD_SERIALIZED` and every call is made
//! under one lock; each one runs under the watchdog ([`super::guarded`]).

use std::sync::Mutex;

use mpi::collective::SystemOperation;
use mpi::topology::{Communicator as _, SimpleCommunicator};
use mpi::traits::*;

use super::{guarded, Communicator};
use crate::{Error, Result};

/// `MPI_COMM_WORLD` of this process's job.
pub struct MpiComm {
    world: Mutex<SimpleCommunicator>,
    rank: usize,
    size: usize,
    /// Finalises MPI when dropped: taken by [`Communicator::finalize`] (the world itself lives
    /// as long as the process).
    universe: Mutex<Option<mpi::environment::Universe>>,
}

// SAFETY: MPI is initialised with at least MPI_THREAD_SERIALIZED (checked in `init`) and every
// call goes through the `world` lock, so no two threads are ever inside MPI at once.
unsafe impl Send for MpiComm {}
unsafe impl Sync for MpiComm {}

impl MpiComm {
    /// `MPI_Init_thread` (serialised calls) and `MPI_COMM_WORLD`.
    pub fn init() -> Result<Self> {
        let (universe, threading) = mpi::initialize_with_threading(mpi::Threading::Serialized)
            .ok_or_else(|| Error::msg("MPI was already initialised in this process"))?;
        if threading < mpi::Threading::Serialized {
            return Err(Error::msg(format!("the MPI library offers thread level {threading:?}; mixbt needs Serialized")));
        }
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        Ok(Self { world: Mutex::new(world), rank, size, universe: Mutex::new(Some(universe)) })
    }

    fn with<R>(&self, what: &'static str, f: impl FnOnce(&SimpleCommunicator) -> R) -> R {
        let w = self.world.lock().unwrap();
        guarded(self.rank, what, || f(&w))
    }

    /// Element-wise sum over ranks, in place.
    fn sum_in_place<T: mpi::datatype::Equivalence + Copy>(&self, buf: &mut [T]) -> Result<()> {
        self.with("all-reduce", |w| {
            for part in buf.chunks_mut(PART) {
                let send = part.to_vec();
                w.all_reduce_into(&send[..], part, SystemOperation::sum());
            }
        });
        Ok(())
    }
}

/// MPI counts are `int`: longer buffers go in parts of this many elements.
const PART: usize = 1 << 28;

impl Communicator for MpiComm {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn backend(&self) -> &'static str {
        "mpi"
    }
    fn all_reduce_f32(&self, buf: &mut [f32]) -> Result<()> {
        self.sum_in_place(buf)
    }
    fn all_reduce_f64(&self, buf: &mut [f64]) -> Result<()> {
        self.sum_in_place(buf)
    }
    fn all_gather_f32(&self, send: &[f32]) -> Result<Vec<f32>> {
        if send.len() * self.size > i32::MAX as usize {
            return Err(Error::msg(format!("all-gather of {} floats per rank is beyond one MPI call", send.len())));
        }
        let mut out = vec![0f32; send.len() * self.size];
        self.with("all-gather", |w| w.all_gather_into(send, &mut out[..]));
        Ok(out)
    }
    fn broadcast_bytes(&self, buf: &mut Vec<u8>, root: usize) -> Result<()> {
        let mut len = [buf.len() as u64];
        self.with("broadcast", |w| {
            let r = w.process_at_rank(root as i32);
            r.broadcast_into(&mut len[..]);
            buf.resize(len[0] as usize, 0);
            for part in buf.chunks_mut(PART) {
                r.broadcast_into(part);
            }
        });
        Ok(())
    }
    fn barrier(&self) -> Result<()> {
        self.with("barrier", |w| w.barrier());
        Ok(())
    }
    fn finalize(&self) -> Result<()> {
        if let Some(u) = self.universe.lock().unwrap().take() {
            self.barrier()?;
            let _w = self.world.lock().unwrap();
            drop(u);
        }
        Ok(())
    }
}
