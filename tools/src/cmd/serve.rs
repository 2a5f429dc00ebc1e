//! `ringgate serve`: load a config file and a profile, start the gateway (or take the listening
//! sockets over from a running one), then run until stopped.

use super::{load_profile, run::run_until_stopped, CmdResult};
use ringgate::config::RawConfig;
use ringgate::contenthash::config_hash;
use ringgate::control::{first_snapshot, ConfigSource, Control};
use ringgate::server::{start, start_with};
use ringgate_core::handoff::take_over;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Serves `config`; with `takeover`, takes the sockets offered on `handoff` first.
pub fn serve(
    config: String,
    profile: Option<&str>,
    handoff: Option<PathBuf>,
    takeover: bool,
) -> CmdResult {
    let profile = load_profile(profile)?;
    let text = std::fs::read_to_string(&config)
        .map_err(|e| format!("cannot read config {config}: {e}"))?;
    let raw = RawConfig::parse(&text)?;
    let (hub, snapshot) = first_snapshot(&raw, config_hash(&text, &raw))?;
    // A busy admin port fails the start like a busy listener, before any traffic is
    // taken. (A takeover binds it later: the previous process holds it until then.)
    let admin_listener = if takeover { None } else { bind_admin(&raw)? };
    let (gw, taken) = if takeover {
        let path = handoff.clone().ok_or("--takeover needs --handoff")?;
        let t = take_over(&path, Duration::from_secs(10))?;
        let groups = t
            .groups
            .iter()
            .map(|(a, l)| (*a, l.iter().filter_map(|x| x.try_clone().ok()).collect()))
            .collect();
        let gw = start_with(snapshot, &profile, Some(groups))?;
        (gw, Some(t))
    } else {
        (start(snapshot, &profile)?, None)
    };
    println!("{}", gw.start_line);
    if let Some(t) = taken {
        // Our workers accept on the inherited sockets: the old process may now drain.
        t.ready()?;
        eprintln!("ringgate: took over the listening sockets; the previous process drains");
    }
    let control = Control::with_discovery(ConfigSource::File(config.into()), raw, &gw, hub);
    run_until_stopped(gw, control, admin_listener, handoff, takeover)
}

/// Binds the admin API's address when the config has one; a busy or invalid address is an
/// error that names it.
pub fn bind_admin(raw: &RawConfig) -> Result<Option<std::net::TcpListener>, String> {
    let Some(cfg) = raw.admin.as_ref() else {
        return Ok(None);
    };
    let addr: SocketAddr = cfg
        .address
        .parse()
        .map_err(|e| format!("admin.address {:?}: {e}", cfg.address))?;
    std::net::TcpListener::bind(addr)
        .map(Some)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                format!("cannot start the admin API: {addr} is already in use by another process")
            }
            _ => format!("cannot start the admin API on {addr}: {e}"),
        })
}
