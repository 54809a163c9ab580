//! swap-test version 1.
const VERSION: &str = "1";
include!("../../swap-common.rs");
