//! PostgreSQL integration: decoding arguments, errors, interrupts and progress, relation
//! names, reading vectors out of tables and writing biases back, the snapshot-checked search
//! cache, storing Faiss structures, Citus metadata. Only the session's main thread runs this
//! code.

pub mod ann_store;
pub mod args;
pub mod cache;
pub mod citus;
pub mod coerce;
pub mod errors;
pub mod interrupts;
pub mod plans;
pub mod read;
pub mod relation;
pub mod write;
