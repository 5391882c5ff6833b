//! Smoke testing: the spec, the engine that runs it, and the verdict drawn from a run.

pub mod engine;
pub mod expect;
pub mod spec;
pub mod verdict;
