//! The user-facing SQL surface, one file per concept.

pub mod ann;
pub mod augmented;
pub mod bias;
pub mod cache;
pub mod catalog;
pub mod score;
pub mod search;
pub mod tune;
