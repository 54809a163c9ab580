//! The host's integration tests: one binary, one module per topic.

mod cli;
mod examples;
mod hot_swap;
mod sandbox;
mod signals;
mod support;
