//! The HdrHistogram interval log (`--hlog`): one V2-deflate-encoded response-time histogram per
//! interval, in the standard text format that HdrHistogram's own tools (HistogramLogProcessor,
//! HdrHistogramVisualizer) read. Values are nanoseconds; a `#[MaxValueDivisor: 1000000.0]`
//! style note says so for readers that expect milliseconds.

use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use hdrhistogram::serialization::V2DeflateSerializer;

use crate::run::RunReport;

/// Writes the interval log of `report` to `path`.
pub fn write(path: &Path, report: &RunReport, interval: Duration) -> io::Result<()> {
    let mut out = Vec::new();
    write_to(&mut out, report, interval)?;
    std::fs::write(path, out)
}

/// Writes the interval log into `w`.
pub fn write_to<W: Write>(w: &mut W, report: &RunReport, interval: Duration) -> io::Result<()> {
    // The log starts when the measured window opened (interval 0's start), not when it is
    // written: readers place every interval at StartTime + its offset.
    let start = Duration::from_secs_f64(report.started_unix_s.max(0.0));
    let mut ser = V2DeflateSerializer::new();
    let mut builder = IntervalLogWriterBuilder::new();
    builder
        .add_comment(&format!("ringbench {} {}", report.version, report.target))
        .add_comment(&format!("verdict: {}", report.verdict.name()))
        .add_comment("values in nanoseconds; response time from intended send")
        .with_start_time(SystemTime::UNIX_EPOCH + start)
        .with_base_time(SystemTime::UNIX_EPOCH + start)
        .with_max_value_divisor(1e6);
    let mut log = builder
        .begin_log_with(w, &mut ser)
        .map_err(io::Error::other)?;
    for (i, h) in report.intervals.iter().enumerate() {
        let at = interval * i as u32;
        log.write_histogram(h, at, interval, None)
            .map_err(|e| io::Error::other(format!("{e:?}")))?;
    }
    Ok(())
}
