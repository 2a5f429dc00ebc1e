//! `ringgate token`: mint a signed JWT from a PEM private key (for tests and local development).

use super::CmdResult;
use std::process::ExitCode;

/// Signs `claims` (a JSON object) with the key at `key`, adding `exp` `expires_in` from now
/// unless the claims carry one, and prints the token.
pub fn mint(key: &str, alg: &str, kid: Option<&str>, claims: &str, expires_in: &str) -> CmdResult {
    let pem = std::fs::read(key).map_err(|e| format!("cannot read {key}: {e}"))?;
    let alg: ringgate_policies::auth::Algorithm = alg
        .parse()
        .map_err(|_| format!("unknown algorithm {alg:?}"))?;
    let mut claims: serde_json::Value = serde_json::from_str(claims)?;
    let ttl = ringgate_core::duration::parse(expires_in)?;
    if let Some(obj) = claims.as_object_mut() {
        if !obj.contains_key("exp") {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            obj.insert("exp".into(), (now + ttl.as_secs()).into());
        }
    }
    let t = ringgate_policies::auth::mint(&pem, alg, kid, &claims)?;
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}
