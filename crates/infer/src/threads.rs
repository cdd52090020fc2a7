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

/// Sets the rayon (candle) pool size before any pool starts, unless the user set `RAYON_NUM_THREADS`.
/// Must be called at program start, before the first embedding call.
pub fn configure_candle_threads(n: usize) {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // SAFETY-free: set_var is unsafe in edition 2024 only; this crate is edition 2021 and this runs
        // before any other thread reads the environment.
        std::env::set_var("RAYON_NUM_THREADS", n.max(1).to_string());
    }
}
