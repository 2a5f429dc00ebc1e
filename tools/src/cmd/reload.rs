//! `ringgate reload`: ask a running gateway's admin API to reload its config and say, for a
//! person, what it answered.

use super::CmdResult;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

/// `ringgate reload`: POST /config/reload on the admin API, print the answer.
pub fn reload(admin: SocketAddr, token: Option<&str>) -> CmdResult {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&admin, Duration::from_secs(5))
        .map_err(|e| format!("cannot reach the admin API at {admin}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
    write!(
        s,
        "POST /config/reload HTTP/1.1\r\nhost: {admin}\r\n{auth}content-length: 0\r\nconnection: close\r\n\r\n"
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let status_line = head.lines().next().unwrap_or("");
    if status_line.starts_with("HTTP/1.1 200") {
        print!("{body}");
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("ringgate reload: {}", describe_refusal(status_line, body));
    Ok(ExitCode::FAILURE)
}

/// What a refused reload says, for a person: the status with its reason phrase (as the admin API
/// sent it, or the standard one when it sent none), then the errors of the JSON body one per
/// line (the body as it came when it is not that JSON).
fn describe_refusal(status_line: &str, body: &str) -> String {
    let mut parts = status_line.splitn(3, ' ');
    let _version = parts.next();
    let code = parts.next().unwrap_or("");
    let phrase = match parts.next().map(str::trim) {
        Some(p) if !p.is_empty() && p != "Unknown" => p.to_string(),
        _ => code
            .parse::<u16>()
            .map(|c| ringgate_http::error::reason_phrase(c).to_string())
            .unwrap_or_default(),
    };
    let mut out = format!("{code} {phrase}");
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(v) => {
            if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
                out.push_str(":\n");
                for line in e.lines() {
                    out.push_str("  ");
                    out.push_str(line.trim());
                    out.push('\n');
                }
            }
            if let Some(live) = v.get("live_version").and_then(|x| x.as_str()) {
                out.push_str(&format!("the live config stays: version {live}\n"));
            }
        }
        Err(_) if !body.trim().is_empty() => {
            out.push('\n');
            out.push_str(body.trim_end());
            out.push('\n');
        }
        Err(_) => out.push('\n'),
    }
    out.trim_end().to_string()
}
