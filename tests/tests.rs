//! Process-level tests: each drives the real `accord` binary in a
//! temporary data folder, the way a person or a script would.

mod durability;
mod errors;
mod relay_faults;
mod relay_kill_loop;
mod repair;
mod story;
mod support;
mod sync;
mod trust;
mod web;
