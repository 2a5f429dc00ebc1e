//! Outputs beyond the run's own table and JSON: the HdrHistogram interval log and SVG plots.

pub mod hlog;
pub mod plot;
