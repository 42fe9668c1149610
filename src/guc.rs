//! The `nnn.*` settings. All are per session (`SET`, `SET LOCAL`, `ALTER ROLE … SET`).

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting, PostgresGucEnum};

/// Weight of the bias at query time: score = q·r − alpha·bias(r).
pub static ALPHA: GucSetting<f64> = GucSetting::<f64>::new(0.75);
/// Worker threads for bias builds and searches; 0 means one per CPU core.
pub static THREADS: GucSetting<i32> = GucSetting::<i32>::new(0);
/// Where the heavy work runs.
pub static BACKEND: GucSetting<BackendChoice> = GucSetting::<BackendChoice>::new(BackendChoice::Auto);
/// Whether long work reports progress as NOTICE messages.
pub static PROGRESS: GucSetting<bool> = GucSetting::<bool>::new(true);
/// Upper bound, in MiB, on the vectors one call holds in memory.
pub static MAX_MEMORY_MB: GucSetting<i32> = GucSetting::<i32>::new(1024);

/// Upper bound, in MiB, on the candidate vectors one backend keeps cached for nnn_search.
pub static CACHE_MB: GucSetting<i32> = GucSetting::<i32>::new(1024);

/// Values of `nnn.backend`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, PostgresGucEnum)]
pub enum BackendChoice {
    /// The best backend this build has: the CPU.
    Auto,
    /// CPU threads (rayon and SIMD GEMM).
    Cpu,
}

/// Defines every setting; called from `_PG_init`.
pub fn init() {
    GucRegistry::define_float_guc(
        c"nnn.alpha",
        c"Weight of the NNN bias: score = q·r - alpha * bias.",
        c"0 gives plain inner-product ranking. The stored bias does not depend on alpha.",
        &ALPHA,
        -1000.0,
        1000.0,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"nnn.threads",
        c"Worker threads for bias builds and searches (0 = one per CPU core).",
        c"",
        &THREADS,
        0,
        1024,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"nnn.backend",
        c"Where nnn computes: auto or cpu.",
        c"auto picks the fastest backend built into this library; this build has the CPU backend.",
        &BACKEND,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"nnn.progress",
        c"Report progress of long bias builds as NOTICE messages.",
        c"",
        &PROGRESS,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"nnn.cache_mb",
        c"Memory (MiB) each backend may use to cache candidate vectors for nnn_search (0 = no cache).",
        c"The cache is checked against the caller's snapshot on every call; it never changes an answer.",
        &CACHE_MB,
        0,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_MB,
    );
    GucRegistry::define_int_guc(
        c"nnn.max_memory_mb",
        c"Largest amount of vector data (MiB) one nnn call may hold in memory.",
        c"Calls that would need more fail before reading, naming this setting.",
        &MAX_MEMORY_MB,
        1,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_MB,
    );
}

/// `nnn.threads` resolved to a positive count.
pub fn threads() -> usize {
    match THREADS.get() {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n as usize,
    }
}
