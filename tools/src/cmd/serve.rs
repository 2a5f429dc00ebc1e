//! `ringgate serve`: load a config (a file, or an etcd key the node then follows) and a profile,
//! start the gateway (or take the listening sockets over from a running one), then run until
//! stopped.

use super::{load_profile, run::run_until_stopped, CmdResult};
use ringgate::config::discovery::EtcdSettings;
use ringgate::config::{Problems, RawConfig};
use ringgate::contenthash::config_hash;
use ringgate::control::{first_snapshot, ConfigSource, Control};
use ringgate::server::{start, start_with};
use ringgate_core::handoff::take_over;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `--etcd-*`: where the config comes from when it is not a file.
#[derive(clap::Args, Debug, Default)]
pub struct EtcdArgs {
    /// etcd member URLs, comma-separated; the config is the value of `--etcd-key`.
    #[arg(long = "etcd-endpoints", value_delimiter = ',', requires = "etcd_key")]
    pub etcd_endpoints: Vec<String>,
    /// The etcd key holding the config text (TOML).
    #[arg(long = "etcd-key")]
    pub etcd_key: Option<String>,
    /// CA bundle (PEM) trusted for https members (default: the host's roots).
    #[arg(long = "etcd-ca")]
    pub etcd_ca: Option<String>,
    /// Client certificate (PEM) for mutual TLS with etcd.
    #[arg(long = "etcd-cert", requires = "etcd_key_file")]
    pub etcd_cert: Option<String>,
    /// Its private key (PEM).
    #[arg(long = "etcd-key-file", requires = "etcd_cert")]
    pub etcd_key_file: Option<String>,
    /// etcd user name (when the cluster has authentication on).
    #[arg(long = "etcd-user", requires = "etcd_password_file")]
    pub etcd_user: Option<String>,
    /// File holding that user's password.
    #[arg(long = "etcd-password-file", requires = "etcd_user")]
    pub etcd_password_file: Option<String>,
    /// One etcd request's timeout (e.g. `3s`).
    #[arg(long = "etcd-timeout", default_value = "3s")]
    pub etcd_timeout: String,
}

impl EtcdArgs {
    /// The config source these flags name (`None` without `--etcd-endpoints`).
    fn source(self) -> Result<Option<ConfigSource>, String> {
        if self.etcd_endpoints.is_empty() {
            return Ok(None);
        }
        let settings = EtcdSettings {
            endpoints: self.etcd_endpoints,
            username: self.etcd_user,
            password_file: self.etcd_password_file,
            ca: self.etcd_ca,
            cert: self.etcd_cert,
            key: self.etcd_key_file,
            timeout: ringgate_core::duration::parse(&self.etcd_timeout)
                .map_err(|e| format!("--etcd-timeout {:?}: {e}", self.etcd_timeout))?,
        };
        let mut p = Problems::default();
        settings.validate("--etcd", &mut p);
        let p = p.into_vec();
        if !p.is_empty() {
            return Err(p.join("; "));
        }
        let key = self.etcd_key.ok_or("--etcd-endpoints needs --etcd-key")?;
        Ok(Some(ConfigSource::Etcd { settings, key }))
    }
}

/// Serves `config` (or the etcd key `etcd` names); with `takeover`, takes the sockets offered
/// on `handoff` first.
pub fn serve(
    config: Option<String>,
    etcd: EtcdArgs,
    profile: Option<&str>,
    handoff: Option<PathBuf>,
    takeover: bool,
) -> CmdResult {
    let profile = load_profile(profile)?;
    let source = match (etcd.source()?, config) {
        (Some(s), _) => s,
        (None, Some(path)) => ConfigSource::File(path.into()),
        (None, None) => return Err("--config or --etcd-endpoints is needed".into()),
    };
    // From etcd, the revision read is what `/config` reports until the next change.
    let (text, revision) = source.read()?;
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
    let control = Control::with_discovery(source, raw, &gw, hub);
    control.set_source_revision(revision);
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
