//! A tiny wall-clock profiler for the hot paths, on when `MIXBT_PROFILE=1`:
//! `let _p = profile::scope("conv.fwd");` adds the scope's time under its name, and the CPU time
//! the whole process spent meanwhile (so `cpu / wall` says how many cores were busy: on a
//! scope of the main thread, below the thread count means idle cores);
//! `profile::report()` returns the totals (printed by `mixbt bench train`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Instant;

static STATE: AtomicU8 = AtomicU8::new(0); // 0 unknown, 1 off, 2 on
static TOTALS: Mutex<BTreeMap<&'static str, Total>> = Mutex::new(BTreeMap::new());

/// Accumulated time of one scope name.
#[derive(Debug, Clone, Copy, Default)]
pub struct Total {
    pub name: &'static str,
    /// Wall-clock seconds.
    pub wall: f64,
    /// CPU seconds of the whole process (all threads) during the scopes.
    pub cpu: f64,
    pub calls: u64,
}

/// CPU time of the process (all threads), in seconds.
fn process_cpu() -> f64 {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `ts` is a valid timespec to write.
        if unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) } == 0 {
            return ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9;
        }
    }
    0.0
}

/// Whether profiling is on (`MIXBT_PROFILE=1`).
pub fn enabled() -> bool {
    match STATE.load(Ordering::Relaxed) {
        0 => {
            let on = std::env::var("MIXBT_PROFILE").map(|v| v == "1").unwrap_or(false);
            STATE.store(if on { 2 } else { 1 }, Ordering::Relaxed);
            on
        }
        s => s == 2,
    }
}

/// Time the rest of the enclosing block under a name built at run time (only when profiling is
/// on; each distinct name is interned once).
pub fn scope_with(name: impl FnOnce() -> String) -> Scope {
    if !enabled() {
        return Scope(None);
    }
    static NAMES: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let name = name();
    let mut names = NAMES.lock().unwrap();
    let interned = match names.iter().find(|n| **n == name) {
        Some(n) => *n,
        None => {
            let n: &'static str = Box::leak(name.into_boxed_str());
            names.push(n);
            n
        }
    };
    drop(names);
    scope(interned)
}

/// A running scope; its time is added on drop.
pub struct Scope(Option<(&'static str, Instant, f64)>);

/// Time the rest of the enclosing block under `name`.
pub fn scope(name: &'static str) -> Scope {
    Scope(enabled().then(|| (name, Instant::now(), process_cpu())))
}

impl Drop for Scope {
    fn drop(&mut self) {
        if let Some((name, t, c)) = self.0.take() {
            let (wall, cpu) = (t.elapsed().as_secs_f64(), process_cpu() - c);
            let mut m = TOTALS.lock().unwrap();
            let e = m.entry(name).or_insert(Total { name, ..Total::default() });
            e.wall += wall;
            e.cpu += cpu;
            e.calls += 1;
        }
    }
}

/// The totals, longest wall-clock time first.
pub fn report() -> Vec<Total> {
    let m = TOTALS.lock().unwrap();
    let mut v: Vec<Total> = m.values().copied().collect();
    v.sort_by(|a, b| b.wall.total_cmp(&a.wall));
    v
}

/// Forget the totals.
pub fn reset() {
    TOTALS.lock().unwrap().clear();
}
