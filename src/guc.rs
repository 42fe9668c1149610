//! The `nnn.*` settings. All are per session (`SET`, `SET LOCAL`, `ALTER ROLE … SET`).

use pgrx::{pg_sys, GucContext, GucFlags, GucRegistry, GucSetting, PostgresGucEnum};
use std::ffi::CString;

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

/// Upper bound, in MiB, on the candidate vectors one session keeps cached for nnn_search.
pub static CACHE_MB: GucSetting<i32> = GucSetting::<i32>::new(1024);
/// Device memory (MiB) one call may use on the GPU; 0 = 90 % of what is free.
pub static CUDA_MEMORY_MB: GucSetting<i32> = GucSetting::<i32>::new(0);
/// Whether GPU products may round their inputs to TF32 (faster, no longer exact f32).
pub static CUDA_TF32: GucSetting<bool> = GucSetting::<bool>::new(false);
/// Faiss factory string of the index the `faiss` backend builds over the reference set.
pub static FAISS_BACKEND_INDEX: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"Flat"));
/// Whether nnn_search uses an index's Faiss structure (nnn.set_ann) when it has one.
pub static ANN: GucSetting<bool> = GucSetting::<bool>::new(true);
/// Inverted lists a Faiss IVF structure visits per query (0 = the structure's own, 1).
pub static PROBES: GucSetting<i32> = GucSetting::<i32>::new(32);
/// Candidate list length of a Faiss HNSW search (0 = the structure's own, 16).
pub static EF_SEARCH: GucSetting<i32> = GucSetting::<i32>::new(64);
/// Faiss results fetched and re-scored exactly per result asked for.
pub static RERANK_FACTOR: GucSetting<f64> = GucSetting::<f64>::new(2.0);

/// Values of `nnn.backend`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, PostgresGucEnum)]
pub enum BackendChoice {
    /// A usable GPU for work of at least `backend::AUTO_GPU_FLOP`, else the CPU.
    Auto,
    /// CPU threads (rayon and SIMD GEMM).
    Cpu,
    /// A Faiss index over the reference set (`nnn.faiss_backend_index`); builds with the
    /// `faiss` feature only.
    Faiss,
    /// The first NVIDIA GPU (cuBLAS); builds with the `cuda` feature only.
    Cuda,
}

/// The α a search of an index ranks with: `nnn.alpha` when it is set anywhere (SET, ALTER
/// ROLE/DATABASE … SET, the configuration file), else the index's own (`stored`), else
/// `nnn.alpha`'s default.
pub fn alpha_for(stored: Option<f32>) -> f32 {
    match stored {
        Some(a) if !alpha_is_set() => a,
        _ => ALPHA.get() as f32,
    }
}

/// `nnn.alpha` where a query vector or score was not given its α. Inside a Citus worker's part
/// of a distributed query (application_name `citus_internal …`) an error instead, unless the
/// setting was set there: the worker's session does not see the coordinator's `SET nnn.alpha`,
/// and would rank with its own default without a word.
pub fn default_alpha() -> f64 {
    // SAFETY: reads the application_name setting's C string on the session's main thread.
    let internal = unsafe {
        !pg_sys::application_name.is_null()
            && std::ffi::CStr::from_ptr(pg_sys::application_name).to_bytes().starts_with(b"citus_internal")
    };
    if internal && !alpha_is_set() {
        crate::postgres::errors::fail(
            pgrx::PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            "nnn.alpha is not set in this Citus worker's session: the coordinator's setting does not reach it",
            "Pass alpha explicitly (nnn.query_vector(q, 0.75), nnn_score(emb, q, bias, 0.75)), or make the query vector once on the coordinator: (SELECT nnn.query_vector(q)).",
        );
    }
    ALPHA.get()
}

/// Whether `nnn.alpha` has a value from any source other than its built-in default.
fn alpha_is_set() -> bool {
    // SAFETY: reads PostgreSQL's table of settings on the session's main thread; its entries
    // live as long as the process and `GetNumConfigOptions` counts them.
    unsafe {
        let vars = pg_sys::get_guc_variables();
        (0..pg_sys::GetNumConfigOptions() as usize).map(|i| *vars.add(i)).any(|g| {
            std::ffi::CStr::from_ptr((*g).name) == c"nnn.alpha"
                && (*g).source > pg_sys::GucSource::PGC_S_DYNAMIC_DEFAULT
        })
    }
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
        c"Where nnn computes: auto, cpu, cuda or faiss.",
        c"auto uses a usable GPU for large work and the CPU otherwise; faiss builds nnn.faiss_backend_index over the reference set.",
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
        c"Memory (MiB) each session may use to cache candidate vectors for nnn_search (0 = no cache).",
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
    GucRegistry::define_int_guc(
        c"nnn.cuda_memory_mb",
        c"Device memory (MiB) one nnn call may use on the GPU (0 = 90% of what is free).",
        c"Work is cut into row blocks that fit; too small a budget for one block is an error.",
        &CUDA_MEMORY_MB,
        0,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_MB,
    );
    GucRegistry::define_bool_guc(
        c"nnn.cuda_tf32",
        c"Let GPU products round their inputs to TF32 on tensor cores (faster, not exact f32).",
        c"Scores of unit vectors move by less than 2^-9; off gives the CPU's results exactly.",
        &CUDA_TF32,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"nnn.faiss_backend_index",
        c"Faiss factory string of the index nnn.backend = faiss builds over the reference set.",
        c"Flat is exact; e.g. IVF256,Flat is faster and approximate (see nnn.probes).",
        &FAISS_BACKEND_INDEX,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"nnn.ann",
        c"Search through an index's Faiss structure (nnn.set_ann) when it has one.",
        c"off always scans every candidate exactly.",
        &ANN,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"nnn.probes",
        c"Inverted lists a Faiss IVF structure visits per query (0 = its own default).",
        c"More lists: higher recall, slower queries.",
        &PROBES,
        0,
        1 << 20,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"nnn.ef_search",
        c"Candidate list length of a Faiss HNSW search (0 = its own default).",
        c"Longer lists: higher recall, slower queries.",
        &EF_SEARCH,
        0,
        1 << 20,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"nnn.rerank_factor",
        c"Faiss results re-scored exactly per result asked for.",
        c"Raise it for compressed structures such as PQ, whose own scores are approximate.",
        &RERANK_FACTOR,
        1.0,
        1000.0,
        GucContext::Userset,
        GucFlags::default(),
    );
}

/// `nnn.probes` and `nnn.ef_search` for a Faiss search.
pub fn ann_params() -> nnn_engine::faiss::AnnParams {
    nnn_engine::faiss::AnnParams { probes: PROBES.get() as usize, ef_search: EF_SEARCH.get() as usize }
}

/// The Faiss factory string of `nnn.faiss_backend_index`.
pub fn faiss_backend_index() -> String {
    FAISS_BACKEND_INDEX.get().map_or_else(|| "Flat".to_string(), |s| s.to_string_lossy().into_owned())
}

/// `nnn.threads` resolved to a positive count.
pub fn threads() -> usize {
    match THREADS.get() {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n as usize,
    }
}
