//! Demo stories the local demo runs: each prints a readable story and returns whether every
//! verdict was the expected one.

pub mod alarm_rollback;
pub mod pipeline;
pub mod smoke_hook;
