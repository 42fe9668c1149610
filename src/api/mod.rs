//! The user-facing SQL surface: thin `#[pg_extern]` wrappers over `index/`, one file per
//! concept.

pub mod ann;
pub mod augmented;
pub mod bias;
pub mod cache;
pub mod index;
pub mod score;
pub mod search;
pub mod tune;
