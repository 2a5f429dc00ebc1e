//! `ringgate demo`: start the bundled example against its built-in upstreams, print what to try,
//! run until stopped.

use super::{load_profile, run::run_until_stopped, CmdResult};
use ringgate::control::{ConfigSource, Control};
use std::net::SocketAddr;

/// Runs the demo on `listen` until stopped.
pub fn demo(listen: SocketAddr, profile: Option<&str>) -> CmdResult {
    let profile = load_profile(profile)?;
    let demo = ringgate::demo::start_demo(&profile, listen)?;
    println!("{}", demo.gateway.start_line);
    println!(
        "demo upstreams: {}",
        demo.upstreams
            .iter()
            .map(|u| u.addrs()[0].to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("try:");
    for l in &demo.try_lines {
        println!("  {l}");
    }
    println!("Ctrl-C stops the demo.");
    let upstreams = demo.upstreams;
    let control = Control::new(
        ConfigSource::Inline {
            label: "demo (built in)".into(),
            text: demo.config_text,
        },
        demo.config,
        &demo.gateway,
    );
    let code = run_until_stopped(demo.gateway, control, None, None, false);
    drop(upstreams);
    code
}
