//! swap-test version 2.
const VERSION: &str = "2";
include!("../../swap-common.rs");
