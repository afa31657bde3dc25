//! The integration tests: one binary (one link step) with a module per area.

mod api;
mod cache;
mod cli;
mod differential;
mod docs;
mod hostile;
mod programs;
mod reload;
mod repl;
mod support;
mod watch;
