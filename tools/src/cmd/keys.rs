//! `ringgate keys create`: mint an API key; the secret is printed once, the key file keeps only
//! its salted hash.

use super::CmdResult;
use std::process::ExitCode;

/// Creates a key for `client_id` and prints the secret (stdout) and its key-file entry.
pub fn create(
    client_id: &str,
    tenant: Option<&str>,
    scopes: &[String],
    tier: Option<&str>,
    expires_at: Option<u64>,
) -> CmdResult {
    let (secret, entry) =
        ringgate_policies::auth::generate_key(client_id, tenant, scopes, tier, expires_at)?;
    eprintln!("API key (shown once; the key file keeps only its salted hash):");
    println!("{secret}");
    eprintln!("\nAdd to the api_keys_file:\n");
    println!("{}", entry.to_toml());
    Ok(ExitCode::SUCCESS)
}
