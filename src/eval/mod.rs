//! Measuring a bundle: label-free code statistics and agreement with reference labels.

pub mod metrics;
pub mod report;
pub mod stats;
