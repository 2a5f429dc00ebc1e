//! `ringbench plot`: overlay the percentile spectra of several saved runs (`--json` files) on
//! one SVG.

use std::path::PathBuf;

use clap::Args;

use crate::report::plot::spectrum_svg;
use crate::run::RunReport;

/// Options of `ringbench plot`.
#[derive(Debug, Args)]
pub struct PlotArgs {
    /// Run reports written by `ringbench run --json`; `LABEL=FILE` to name a line.
    #[arg(required = true)]
    pub runs: Vec<String>,
    /// The SVG to write.
    #[arg(long)]
    pub out: PathBuf,
}

/// Draws the plot; returns the exit code.
pub fn run(args: PlotArgs) -> i32 {
    let mut loaded = Vec::new();
    for item in &args.runs {
        let (label, file) = item
            .split_once('=')
            .unwrap_or((item.as_str(), item.as_str()));
        let report: RunReport = match std::fs::read_to_string(file)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
        {
            Ok(r) => r,
            Err(e) => {
                eprintln!("ringbench plot: {file}: {e}");
                return 2;
            }
        };
        loaded.push((label.to_string(), report));
    }
    let refs: Vec<(String, &RunReport)> = loaded.iter().map(|(l, r)| (l.clone(), r)).collect();
    if let Err(e) = std::fs::write(&args.out, spectrum_svg(&refs)) {
        eprintln!("ringbench plot: {}: {e}", args.out.display());
        return 2;
    }
    0
}
