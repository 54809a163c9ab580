//! The host's integration tests: one binary, one module per topic.

mod acting;
mod actions_ecs_ec2;
mod actions_lambda_sns;
mod api;
mod approval;
mod aws;
mod cli;
mod config_file;
mod examples;
mod facts;
mod governor;
mod hot_swap;
mod live;
mod moto;
mod recover;
mod replay;
mod replicas;
mod sandbox;
mod service;
mod signals;
mod sns_http;
mod store;
mod support;
mod swap_service;
mod throttle;
