//! A tiny wall-clock profiler for the hot paths, on when `MIXBT_PROFILE=1`:
//! `let _p = profile::scope("conv.fwd");` adds the scope's time under its name;
//! `profile::report()` returns the totals (printed by `mixbt bench train`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Instant;

static STATE: AtomicU8 = AtomicU8::new(0); // 0 unknown, 1 off, 2 on
static TOTALS: Mutex<BTreeMap<&'static str, (f64, u64)>> = Mutex::new(BTreeMap::new());

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

/// A running scope; its time is added on drop.
pub struct Scope(Option<(&'static str, Instant)>);

/// Time the rest of the enclosing block under `name`.
pub fn scope(name: &'static str) -> Scope {
    Scope(enabled().then(|| (name, Instant::now())))
}

impl Drop for Scope {
    fn drop(&mut self) {
        if let Some((name, t)) = self.0.take() {
            let mut m = TOTALS.lock().unwrap();
            let e = m.entry(name).or_insert((0.0, 0));
            e.0 += t.elapsed().as_secs_f64();
            e.1 += 1;
        }
    }
}

/// (name, seconds, calls), sorted by time.
pub fn report() -> Vec<(&'static str, f64, u64)> {
    let m = TOTALS.lock().unwrap();
    let mut v: Vec<_> = m.iter().map(|(k, (s, c))| (*k, *s, *c)).collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v
}

/// Forget the totals.
pub fn reset() {
    TOTALS.lock().unwrap().clear();
}
