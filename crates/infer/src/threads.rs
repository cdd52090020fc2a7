//! Thread counts for the engines.
//!
//! llama.cpp (OpenMP) and candle (rayon) each default to one thread per core and spin while waiting;
//! on a small machine two such pools oversubscribe the cores and generation slows several-fold. We size
//! both deliberately: llama.cpp gets the physical cores for its own decode calls, candle the same number,
//! and the two never run a hot loop at the same time on the same request path.

/// Number of cores available to this process (affinity mask aware).
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Sets the rayon (candle) pool size and how long candle's idle workers spin before any pool starts,
/// unless the user set `RAYON_NUM_THREADS` / `CANDLE_BARRIER_POOL_SPIN_LIMIT`.
/// Must be called at program start, before the first embedding call.
pub fn configure_candle_threads(n: usize) {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // SAFETY-free: set_var is unsafe in edition 2024 only; this crate is edition 2021 and this runs
        // before any other thread reads the environment.
        std::env::set_var("RAYON_NUM_THREADS", n.max(1).to_string());
    }
    // candle's element-wise pool spins 25,000 times before parking; its spinning worker then competes
    // with gemm's rayon threads for the same cores. Parking sooner measured 8-10% faster batch
    // embedding and a fifth less CPU time on 2 cores.
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", CANDLE_SPIN_LIMIT.to_string());
    }
}

/// Spins of an idle candle element-wise worker before it parks (candle's default is 25,000).
pub const CANDLE_SPIN_LIMIT: u32 = 1000;
