//! Config text for tests, built from parts: most integration tests write the same frame (a
//! version, one listener on an ephemeral port, one upstream `up`, a few `[[routes]]`) around
//! the few lines they are about, and these helpers write the frame once.

use std::net::SocketAddr;

/// `version = "{version}"` and one listener on `127.0.0.1:0`; `listener` is text that belongs to
/// that listener (more keys, or its `[listeners.tls]` table), empty for none.
pub fn head(version: &str, listener: &str) -> String {
    format!("version = \"{version}\"\n[[listeners]]\naddress = \"127.0.0.1:0\"\n{listener}\n")
}

/// An `[[upstreams]]` entry named `name` with one endpoint.
pub fn upstream(name: &str, endpoint: SocketAddr) -> String {
    format!("[[upstreams]]\nname = \"{name}\"\nendpoints = [\"{endpoint}\"]\n")
}

/// A `[[routes]]` entry `id` for the path prefix `prefix` to the upstream `up`; `extra` is more
/// route keys (or route sub-tables), empty for none.
pub fn route(id: &str, prefix: &str, upstream: &str, extra: &str) -> String {
    format!(
        "[[routes]]\nid = \"{id}\"\npath = {{ prefix = \"{prefix}\" }}\nupstream = \"{upstream}\"\n{extra}\n"
    )
}

/// A whole config: [`head`] (no listener extras), the top-level `sections` (`[admin]`,
/// `[rate_limit]`, `[auth]`... text, empty for none), one upstream `up` at `up`, then `routes`
/// (each from [`route`] or raw `[[routes]]` text).
pub fn one_upstream(version: &str, up: SocketAddr, sections: &str, routes: &[String]) -> String {
    with_listener(version, "", up, sections, routes)
}

/// [`one_upstream`] with text belonging to the listener (its `[listeners.tls]` table...).
pub fn with_listener(
    version: &str,
    listener: &str,
    up: SocketAddr,
    sections: &str,
    routes: &[String],
) -> String {
    let mut s = head(version, listener);
    s.push_str(sections);
    s.push('\n');
    s.push_str(&upstream("up", up));
    for r in routes {
        s.push_str(r);
    }
    s
}

/// A one-route config: everything under `/` (route id `all`) to the upstream `up`, with the
/// listener text `listener` and the route keys `route` (both may be empty).
pub fn catch_all(version: &str, listener: &str, up: SocketAddr, route_keys: &str) -> String {
    with_listener(
        version,
        listener,
        up,
        "",
        &[route("all", "/", "up", route_keys)],
    )
}

/// A `[[rate_limits]]` entry: `key` is TOML (`"client_ip"`, `{ header = "x-key" }`...), `extra`
/// more keys (algorithm, missing_key...), empty for none.
pub fn rate_limit(name: &str, key: &str, rate: f64, burst: u32, extra: &str) -> String {
    format!("[[rate_limits]]\nname = \"{name}\"\nkey = {key}\nrate = {rate}\nburst = {burst}\n{extra}\n")
}
