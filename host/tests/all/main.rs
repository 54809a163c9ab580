//! The host's integration tests: one binary, one module per topic.

mod acting;
mod actions_ecs_ec2;
mod actions_lambda_sns;
mod aws;
mod cli;
mod examples;
mod facts;
mod governor;
mod hot_swap;
mod live;
mod moto;
mod recover;
mod replicas;
mod sandbox;
mod service;
mod signals;
mod store;
mod support;
mod throttle;
