//! The `ringgate` binary: parse the command line and hand the sub-command to its module in
//! `cmd/` (serve, reload, keys, token, check, demo, proxy).

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

mod cmd;
#[cfg(feature = "count-alloc")]
mod count_alloc;

#[cfg(not(feature = "count-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// With `--features count-alloc`: mimalloc behind an allocation counter (see `count_alloc`).
#[cfg(feature = "count-alloc")]
#[global_allocator]
static GLOBAL: count_alloc::Counting = count_alloc::Counting::new();

#[derive(Parser)]
#[command(
    name = "ringgate",
    version,
    about = "An io_uring, thread-per-core API gateway"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum KeysCmd {
    /// Create an API key: prints the secret once, and the entry for the key file.
    Create {
        /// The client the key belongs to.
        #[arg(long)]
        client_id: String,
        /// Its tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Scopes, comma-separated.
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        /// Rate-limit tier.
        #[arg(long)]
        tier: Option<String>,
        /// Expiry, unix seconds.
        #[arg(long)]
        expires_at: Option<u64>,
    },
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve a config file (or the config held in an etcd key).
    Serve {
        /// The config file (TOML).
        #[arg(
            long,
            required_unless_present = "etcd_endpoints",
            conflicts_with = "etcd_endpoints"
        )]
        config: Option<String>,
        /// Take the config from etcd instead: the cluster's member URLs, comma-separated
        /// (`http://10.0.0.5:2379,...`, `https://` for TLS). The node follows the key: each
        /// change is reloaded (and refused, the live config staying, when it does not validate).
        #[command(flatten)]
        etcd: cmd::serve::EtcdArgs,
        /// A perf profile file, or a preset name (`default`, `low-latency`).
        #[arg(long)]
        profile: Option<String>,
        /// Offer the listening sockets to a successor on this Unix socket (zero-downtime
        /// upgrade): a new process started with `--takeover` on the same path takes them, and
        /// this one drains and exits.
        #[arg(long)]
        handoff: Option<PathBuf>,
        /// Take the listening sockets from the process offering them on `--handoff`.
        #[arg(long, requires = "handoff")]
        takeover: bool,
    },
    /// Ask a running gateway to reload its config (through its admin API).
    Reload {
        /// The admin API address.
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin: SocketAddr,
        /// The admin bearer token, if the gateway has one.
        #[arg(long)]
        token: Option<String>,
    },
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        cmd: KeysCmd,
    },
    /// Mint a signed JWT (for tests and local development).
    Token {
        /// The private key (PEM file: RSA, EC P-256 or Ed25519).
        #[arg(long)]
        key: String,
        /// The algorithm (RS256, PS256, ES256, EdDSA...).
        #[arg(long, default_value = "RS256")]
        alg: String,
        /// The key id to put in the header.
        #[arg(long)]
        kid: Option<String>,
        /// The claims, as a JSON object.
        #[arg(long, default_value = "{}")]
        claims: String,
        /// Set `exp` this far in the future (e.g. 1h), unless the claims have one.
        #[arg(long, default_value = "1h")]
        expires_in: String,
    },
    /// Validate a config (and profile), print a summary, exit non-zero listing every error.
    Check {
        /// The config file (TOML).
        #[arg(long)]
        config: String,
        /// A perf profile file or preset name.
        #[arg(long)]
        profile: Option<String>,
    },
    /// Run the bundled example config against two built-in demo upstreams.
    Demo {
        /// Where the gateway listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// A perf profile file or preset name.
        #[arg(long)]
        profile: Option<String>,
    },
    /// A whole reverse proxy from one line: every request on LISTEN goes to the --to endpoints.
    Proxy {
        /// Where to listen (ip:port).
        #[arg(long)]
        listen: SocketAddr,
        /// Upstream endpoints, comma-separated host:port list (round-robin).
        #[arg(long, value_delimiter = ',', required = true)]
        to: Vec<String>,
        /// A perf profile file or preset name.
        #[arg(long)]
        profile: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ringgate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Dispatches a parsed sub-command to its module.
fn run(cmd: Cmd) -> cmd::CmdResult {
    match cmd {
        Cmd::Serve {
            config,
            etcd,
            profile,
            handoff,
            takeover,
        } => cmd::serve::serve(config, etcd, profile.as_deref(), handoff, takeover),
        Cmd::Reload { admin, token } => cmd::reload::reload(admin, token.as_deref()),
        Cmd::Keys {
            cmd:
                KeysCmd::Create {
                    client_id,
                    tenant,
                    scopes,
                    tier,
                    expires_at,
                },
        } => cmd::keys::create(
            &client_id,
            tenant.as_deref(),
            &scopes,
            tier.as_deref(),
            expires_at,
        ),
        Cmd::Token {
            key,
            alg,
            kid,
            claims,
            expires_in,
        } => cmd::token::mint(&key, &alg, kid.as_deref(), &claims, &expires_in),
        Cmd::Check { config, profile } => cmd::check::check(&config, profile.as_deref()),
        Cmd::Demo { listen, profile } => cmd::demo::demo(listen, profile.as_deref()),
        Cmd::Proxy {
            listen,
            to,
            profile,
        } => cmd::proxy::proxy(listen, to, profile.as_deref()),
    }
}
