//! End-to-end tests: the real function binaries, run through the Runtime API emulator against
//! the local AWS test bed and a local sample app. Every test asserts what was reported.

mod support;

mod alarm_rollback;
mod bake_timer;
mod image_gate;

mod smoke_hook_codedeploy;
mod smoke_hook_ecs;
