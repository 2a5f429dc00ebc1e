//! `ringbench compare` end to end with the targets that need nothing installed: `direct` runs,
//! a missing ringgate binary is reported as not run, and the report folder has every part.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use ringbench::compare::{self, targets::Kind, CompareConfig};

#[test]
fn compare_writes_runs_summary_plots_and_notes_missing_targets() {
    let out = std::env::temp_dir().join(format!("ringbench-compare-test-{}", std::process::id()));
    let cfg = CompareConfig {
        name: "t".into(),
        out: out.clone(),
        targets: vec![Kind::Direct, Kind::Ringgate],
        rates: vec![300.0, 600.0],
        reps: 2,
        duration: Duration::from_millis(700),
        warmup: Duration::from_millis(200),
        generator_cpus: None,
        target_cpus: String::new(),
        upstream_cpus: String::new(),
        body_bytes: 16,
        conns: 4,
        path: "/".into(),
        ringgate: Some(PathBuf::from("/nonexistent/ringgate")),
        oha: false,
        command_line: "ringbench compare --name t".into(),
        ringbench: Some(PathBuf::from(env!("CARGO_BIN_EXE_ringbench"))),
        thresholds: ringbench::run::Thresholds::default(),
    };
    let md = compare::compare(&cfg).unwrap();
    let dir = out.join("t");
    assert!(md.contains("### 300 req/s offered") && md.contains("### 600 req/s offered"));
    assert!(md.contains("| direct"));
    assert!(md.contains("ringgate was not run"));
    for f in [
        "command.txt",
        "summary.md",
        "summary.json",
        "plots/spectrum-300.svg",
        "runs/direct-600-r2.json",
    ] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    let run: ringbench::run::RunReport = serde_json::from_str(
        &std::fs::read_to_string(dir.join("runs/direct-300-r1.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(run.counts.scheduled, 210);
    assert!(run.target_cpu.is_some());
    std::fs::remove_dir_all(&out).unwrap();
}
