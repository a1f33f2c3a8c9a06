//! Measuring a bundle: label-free code statistics and agreement with reference labels.

pub mod buckets;
pub mod metrics;
pub mod plot;
pub mod report;
