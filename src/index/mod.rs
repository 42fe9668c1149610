//! The service layer: what nnn does with an index — its definition in `nnn.indexes`, bias
//! builds, searches (exact, cached, through a Faiss structure), augmented pgvector columns,
//! tuning. Called by the thin SQL wrappers in `api/`; uses `postgres/` for PostgreSQL itself.

pub mod ann;
pub mod augmented;
pub mod build;
pub mod definition;
pub mod exact;
pub mod family;
pub mod registry;
pub mod rows;
pub mod search;
pub mod tune;
