//! Gateway-issued API keys: the key format, the key file, and checking a presented key.
//!
//! Exists so the gateway can authenticate machine clients without an identity provider, while
//! never holding a usable secret: the key file (and any config) stores only a salted hash.
//!
//! # Key format
//!
//! `rgk_<id>_<secret>`: `id` is 8 random base62 characters, public, used to find the entry;
//! `secret` is 43 random base62 characters (256 bits). Base62 keeps the whole key one "word"
//! for double-click selection, and as `_` is not base62 the split is unambiguous. Presented
//! keys may have an id of 1 to 32 and a secret of 16 to 128 base62 characters.
//!
//! # Key file
//!
//! TOML, one `[[keys]]` table per key:
//!
//! ```toml
//! [[keys]]
//! id = "k3J9aQ2x"
//! hash = "sha256:<salt: 32 hex digits>:<SHA-256(salt || secret): 64 hex digits>"
//! client_id = "billing"
//! tenant = "acme"              # optional
//! scopes = ["orders:read"]     # optional, default none
//! tier = "gold"                # optional
//! expires_at = 2027-01-01T00:00:00Z   # optional: a TOML date-time with offset, the same as
//!                                     # an RFC 3339 string, or Unix seconds (integer)
//! revoked = false              # optional, default false
//! ```
//!
//! The hash covers the secret part only (its ASCII bytes), after a 16-byte random salt.
//! Unknown fields are errors (a misspelt `revoked` must not silently keep a key alive), and
//! [`KeyStore::parse`] reports every problem at once, each with its path.
//!
//! # Verification
//!
//! [`KeyStore::verify`] splits the key, finds the entry by id in a hash map, recomputes the
//! salted SHA-256 (about 200 ns for a 43-byte secret) and compares digests in constant time
//! (`subtle`); an unknown id still costs one hash so timing does not tell ids apart. Only a
//! key whose secret matched is then checked for revocation and expiry. Verifying is cheap
//! enough that no per-core cache is kept. The store is immutable: share it with `Arc` and
//! swap it whole on reload.

use std::collections::HashMap;
use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::identity::{normalize_scopes, AuthFailure, CredentialKind, Identity};

/// What every key starts with.
pub const KEY_PREFIX: &str = "rgk_";
/// Length of a generated key id (base62 characters).
pub const ID_LEN: usize = 8;
/// Length of a generated secret (base62 characters; 43 * log2(62) > 256 bits).
pub const SECRET_LEN: usize = 43;
/// Length of the random salt in bytes.
pub const SALT_LEN: usize = 16;

const MAX_ID_LEN: usize = 32;
const MIN_SECRET_LEN: usize = 16;
const MAX_SECRET_LEN: usize = 128;
const MAX_LABEL_LEN: usize = 256;

/// A salted SHA-256 of a key's secret, as stored in the key file:
/// `sha256:<salt-hex>:<digest-hex>`.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyHash {
    salt: [u8; SALT_LEN],
    digest: [u8; 32],
}

impl KeyHash {
    /// Hashes `secret` (the part after the id) with `salt`.
    pub fn for_secret(salt: [u8; SALT_LEN], secret: &[u8]) -> Self {
        KeyHash {
            salt,
            digest: salted_digest(&salt, secret),
        }
    }

    /// Parses the stored form.
    pub fn parse(text: &str) -> Result<Self, String> {
        const WANT: &str = "expected `sha256:<salt: 32 hex digits>:<hash: 64 hex digits>`";
        let mut parts = text.split(':');
        let (Some("sha256"), Some(salt), Some(digest), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(WANT.into());
        };
        let mut out = KeyHash {
            salt: [0; SALT_LEN],
            digest: [0; 32],
        };
        if !decode_hex(salt, &mut out.salt) || !decode_hex(digest, &mut out.digest) {
            return Err(WANT.into());
        }
        Ok(out)
    }

    /// Whether `secret` hashes to this digest (constant-time comparison).
    pub fn matches(&self, secret: &[u8]) -> bool {
        let computed = salted_digest(&self.salt, secret);
        computed.ct_eq(&self.digest).into()
    }
}

impl fmt::Display for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        write_hex(f, &self.salt)?;
        f.write_str(":")?;
        write_hex(f, &self.digest)
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({self})")
    }
}

fn salted_digest(salt: &[u8], secret: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(secret);
    h.finalize().into()
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

/// Decodes exactly `out.len()` bytes of hex (either case).
fn decode_hex(text: &str, out: &mut [u8]) -> bool {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let text = text.as_bytes();
    if text.len() != out.len() * 2 {
        return false;
    }
    for (o, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        match (nibble(pair[0]), nibble(pair[1])) {
            (Some(hi), Some(lo)) => *o = hi << 4 | lo,
            _ => return false,
        }
    }
    true
}

/// One key as written in the key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEntry {
    /// The public lookup id (base62).
    pub id: String,
    /// Salted hash of the secret.
    pub hash: KeyHash,
    /// The client (application) this key belongs to.
    pub client_id: String,
    /// The tenant, if any.
    pub tenant: Option<String>,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Rate-limit / plan tier, if any.
    pub tier: Option<String>,
    /// Expiry in Unix seconds (`None`: never).
    pub expires_at: Option<u64>,
    /// Whether the key was revoked (kept in the file so the id is not reused by mistake).
    pub revoked: bool,
}

impl KeyEntry {
    /// The entry as a `[[keys]]` TOML table (no secret in it), ready to append to a key file.
    /// `expires_at` is written as a UTC date-time.
    pub fn to_toml(&self) -> String {
        let mut out = String::from("[[keys]]\n");
        push_kv(&mut out, "id", &self.id);
        push_kv(&mut out, "hash", &self.hash.to_string());
        push_kv(&mut out, "client_id", &self.client_id);
        if let Some(t) = &self.tenant {
            push_kv(&mut out, "tenant", t);
        }
        out.push_str("scopes = [");
        for (i, s) in self.scopes.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            push_toml_string(&mut out, s);
        }
        out.push_str("]\n");
        if let Some(t) = &self.tier {
            push_kv(&mut out, "tier", t);
        }
        if let Some(at) = self.expires_at {
            out.push_str("expires_at = ");
            out.push_str(&format_utc(at));
            out.push('\n');
        }
        out.push_str(if self.revoked {
            "revoked = true\n"
        } else {
            "revoked = false\n"
        });
        out
    }

    /// Every problem with the entry's values (not prefixed with a path).
    fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.id.is_empty() || self.id.len() > MAX_ID_LEN || !self.id.bytes().all(is_base62) {
            p.push(format!(
                "id: must be 1 to {MAX_ID_LEN} base62 characters (A-Z, a-z, 0-9)"
            ));
        }
        check_label(&mut p, "client_id", Some(&self.client_id));
        check_label(&mut p, "tenant", self.tenant.as_deref());
        check_label(&mut p, "tier", self.tier.as_deref());
        for (i, s) in self.scopes.iter().enumerate() {
            if s.is_empty() || !s.bytes().all(is_scope_char) {
                p.push(format!("scopes[{i}]: {s:?} is not a scope token (visible ASCII, no space, `\"` or `\\`)"));
            }
        }
        p
    }
}

fn check_label(p: &mut Vec<String>, field: &str, value: Option<&str>) {
    if let Some(v) = value {
        if v.is_empty() || v.len() > MAX_LABEL_LEN || v.chars().any(char::is_control) {
            p.push(format!(
                "{field}: must be 1 to {MAX_LABEL_LEN} bytes without control characters"
            ));
        }
    }
}

fn is_base62(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// RFC 6749 scope-token: `%x21 / %x23-5B / %x5D-7E`.
fn is_scope_char(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E)
}

fn push_kv(out: &mut String, key: &str, value: &str) {
    out.push_str(key);
    out.push_str(" = ");
    push_toml_string(out, value);
    out.push('\n');
}

/// A TOML basic string with the escapes TOML requires.
fn push_toml_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Verified API keys by id. Immutable; share with `Arc`.
#[derive(Debug, Default)]
pub struct KeyStore {
    keys: HashMap<Box<str>, StoredKey>,
}

#[derive(Debug)]
struct StoredKey {
    hash: KeyHash,
    identity: Identity,
    revoked: bool,
}

/// Compared against when the id is unknown, so both paths cost one hash.
const DUMMY_HASH: KeyHash = KeyHash {
    salt: [0; SALT_LEN],
    digest: [0; 32],
};

impl KeyStore {
    /// Parses a key file (see the module doc). On failure returns every problem, each as
    /// `keys[<index>] (id "<id>").<field>: <problem>`.
    pub fn parse(text: &str) -> Result<KeyStore, Vec<String>> {
        KeyStore::from_entries(parse_entries(text)?)
    }

    /// Builds a store from entries (e.g. declared inline in the gateway config). Rejects
    /// invalid values and duplicate ids, reporting all of them.
    pub fn from_entries(entries: Vec<KeyEntry>) -> Result<KeyStore, Vec<String>> {
        let mut problems = Vec::new();
        let mut keys = HashMap::with_capacity(entries.len());
        for (index, entry) in entries.into_iter().enumerate() {
            let path = format!("keys[{index}] (id {:?})", entry.id);
            let entry_problems = entry.problems();
            if !entry_problems.is_empty() {
                problems.extend(entry_problems.into_iter().map(|p| format!("{path}.{p}")));
                continue;
            }
            let mut identity = Identity::new(CredentialKind::ApiKey);
            identity.client_id = Some(entry.client_id.into());
            identity.tenant = entry.tenant.map(Into::into);
            identity.tier = entry.tier.map(Into::into);
            identity.scopes = entry.scopes.into_iter().map(Into::into).collect();
            normalize_scopes(&mut identity.scopes);
            identity.expires_at = entry.expires_at;
            let stored = StoredKey {
                hash: entry.hash,
                identity,
                revoked: entry.revoked,
            };
            if keys.insert(entry.id.into_boxed_str(), stored).is_some() {
                problems.push(format!("{path}.id: duplicate id"));
            }
        }
        if problems.is_empty() {
            Ok(KeyStore { keys })
        } else {
            Err(problems)
        }
    }

    /// Checks a presented key (`rgk_<id>_<secret>`) at `now_unix` (seconds).
    ///
    /// Returns the key's identity, borrowed from the store (no allocation; clone it if it
    /// must outlive the store). Failures: `Malformed` (not the key format), `UnknownKey`,
    /// `BadSecret`, and, only once the secret matched, `Revoked` and `Expired`
    /// (`now_unix >= expires_at`).
    pub fn verify(&self, presented: &[u8], now_unix: u64) -> Result<&Identity, AuthFailure> {
        let (id, secret) = split_key(presented).ok_or(AuthFailure::Malformed)?;
        let Some(key) = self.keys.get(id) else {
            std::hint::black_box(DUMMY_HASH.matches(secret));
            return Err(AuthFailure::UnknownKey);
        };
        if !key.hash.matches(secret) {
            return Err(AuthFailure::BadSecret);
        }
        if key.revoked {
            return Err(AuthFailure::Revoked);
        }
        if key.identity.expires_at.is_some_and(|at| now_unix >= at) {
            return Err(AuthFailure::Expired);
        }
        Ok(&key.identity)
    }

    /// Number of keys (revoked ones included).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the store has no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Splits `rgk_<id>_<secret>` into the id and the secret bytes, checking the alphabet and
/// lengths.
pub fn split_key(presented: &[u8]) -> Option<(&str, &[u8])> {
    let rest = presented.strip_prefix(KEY_PREFIX.as_bytes())?;
    let sep = rest.iter().position(|&b| b == b'_')?;
    let (id, secret) = (&rest[..sep], &rest[sep + 1..]);
    let id_ok = !id.is_empty() && id.len() <= MAX_ID_LEN && id.iter().copied().all(is_base62);
    let secret_ok = (MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&secret.len())
        && secret.iter().copied().all(is_base62);
    if !id_ok || !secret_ok {
        return None;
    }
    // All ASCII, so this cannot fail; no unwrap on the request path all the same.
    let id = std::str::from_utf8(id).ok()?;
    Some((id, secret))
}

/// Why a key could not be generated.
#[derive(thiserror::Error, Debug)]
pub enum KeyGenError {
    /// The operating system's random source failed.
    #[error("OS random source failed: {0}")]
    Random(String),
    /// A field value is not acceptable (each problem listed).
    #[error("invalid key fields: {}", .0.join("; "))]
    Invalid(Vec<String>),
}

/// Creates a new key from the OS random source: returns the full secret key string (show it
/// once; it is not stored anywhere) and the entry to put in the key file.
pub fn generate_key<S: AsRef<str>>(
    client_id: &str,
    tenant: Option<&str>,
    scopes: &[S],
    tier: Option<&str>,
    expires_at: Option<u64>,
) -> Result<(String, KeyEntry), KeyGenError> {
    let id = random_base62(ID_LEN)?;
    let secret = random_base62(SECRET_LEN)?;
    let mut salt = [0u8; SALT_LEN];
    getrandom::fill(&mut salt).map_err(|e| KeyGenError::Random(e.to_string()))?;
    let entry = KeyEntry {
        hash: KeyHash::for_secret(salt, secret.as_bytes()),
        id,
        client_id: client_id.to_owned(),
        tenant: tenant.map(str::to_owned),
        scopes: scopes.iter().map(|s| s.as_ref().to_owned()).collect(),
        tier: tier.map(str::to_owned),
        expires_at,
        revoked: false,
    };
    let problems = entry.problems();
    if !problems.is_empty() {
        return Err(KeyGenError::Invalid(problems));
    }
    Ok((format!("{KEY_PREFIX}{}_{secret}", entry.id), entry))
}

/// `len` uniformly random base62 characters (rejection sampling: bytes >= 248 are redrawn so
/// `% 62` has no bias).
fn random_base62(len: usize) -> Result<String, KeyGenError> {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        getrandom::fill(&mut buf).map_err(|e| KeyGenError::Random(e.to_string()))?;
        for &b in &buf {
            if b < 248 && out.len() < len {
                out.push(char::from(ALPHABET[usize::from(b % 62)]));
            }
        }
    }
    Ok(out)
}

/// Reads the `[[keys]]` tables of a key file without checking values beyond their types;
/// [`KeyStore::from_entries`] checks the rest.
pub fn parse_entries(text: &str) -> Result<Vec<KeyEntry>, Vec<String>> {
    let doc: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| vec![e.to_string()])?;
    let mut problems = Vec::new();
    for name in doc.keys() {
        if name != "keys" {
            problems.push(format!(
                "{name}: unknown top-level field (only `[[keys]]` tables)"
            ));
        }
    }
    let tables = match doc.get("keys") {
        None => Vec::new(),
        Some(toml::Value::Array(items)) => items.iter().collect(),
        Some(_) => {
            problems.push("keys: must be an array of tables (`[[keys]]`)".into());
            Vec::new()
        }
    };
    let mut entries = Vec::with_capacity(tables.len());
    for (index, item) in tables.into_iter().enumerate() {
        let Some(table) = item.as_table() else {
            problems.push(format!("keys[{index}]: must be a table"));
            continue;
        };
        let id_label = table.get("id").and_then(toml::Value::as_str).unwrap_or("?");
        let path = format!("keys[{index}] (id {id_label:?})");
        let mut p = Vec::new();
        let entry = read_entry(table, &mut p);
        problems.extend(p.into_iter().map(|msg| format!("{path}.{msg}")));
        if let Some(entry) = entry {
            entries.push(entry);
        }
    }
    if problems.is_empty() {
        Ok(entries)
    } else {
        Err(problems)
    }
}

fn read_entry(table: &toml::Table, p: &mut Vec<String>) -> Option<KeyEntry> {
    const FIELDS: [&str; 8] = [
        "id",
        "hash",
        "client_id",
        "tenant",
        "scopes",
        "tier",
        "expires_at",
        "revoked",
    ];
    for name in table.keys() {
        if !FIELDS.contains(&name.as_str()) {
            p.push(format!(
                "{name}: unknown field (expected one of {})",
                FIELDS.join(", ")
            ));
        }
    }
    let id = req_string(table, "id", p);
    let hash = req_string(table, "hash", p).and_then(|h| match KeyHash::parse(&h) {
        Ok(hash) => Some(hash),
        Err(e) => {
            p.push(format!("hash: {e}"));
            None
        }
    });
    let client_id = req_string(table, "client_id", p);
    let tenant = opt_string(table, "tenant", p);
    let tier = opt_string(table, "tier", p);
    let scopes = match table.get("scopes") {
        None => Vec::new(),
        Some(toml::Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, v) in items.iter().enumerate() {
                match v.as_str() {
                    Some(s) => out.push(s.to_owned()),
                    None => p.push(format!("scopes[{i}]: must be a string")),
                }
            }
            out
        }
        Some(_) => {
            p.push("scopes: must be an array of strings".into());
            Vec::new()
        }
    };
    let expires_at = match table.get("expires_at") {
        None => None,
        Some(v) => match expiry(v) {
            Ok(at) => Some(at),
            Err(e) => {
                p.push(format!("expires_at: {e}"));
                None
            }
        },
    };
    let revoked = match table.get("revoked") {
        None => false,
        Some(toml::Value::Boolean(b)) => *b,
        Some(_) => {
            p.push("revoked: must be true or false".into());
            false
        }
    };
    Some(KeyEntry {
        id: id?,
        hash: hash?,
        client_id: client_id?,
        tenant,
        scopes,
        tier,
        expires_at,
        revoked,
    })
}

fn req_string(table: &toml::Table, name: &str, p: &mut Vec<String>) -> Option<String> {
    match table.get(name) {
        Some(toml::Value::String(s)) => Some(s.clone()),
        Some(_) => {
            p.push(format!("{name}: must be a string"));
            None
        }
        None => {
            p.push(format!("{name}: missing"));
            None
        }
    }
}

fn opt_string(table: &toml::Table, name: &str, p: &mut Vec<String>) -> Option<String> {
    match table.get(name) {
        None => None,
        Some(toml::Value::String(s)) => Some(s.clone()),
        Some(_) => {
            p.push(format!("{name}: must be a string"));
            None
        }
    }
}

/// `expires_at`: Unix seconds, a TOML offset date-time, or an RFC 3339 string.
fn expiry(v: &toml::Value) -> Result<u64, String> {
    const WANT: &str =
        "must be Unix seconds or an RFC 3339 date-time with offset (2027-01-01T00:00:00Z)";
    match v {
        toml::Value::Integer(i) => u64::try_from(*i).map_err(|_| WANT.to_owned()),
        toml::Value::Datetime(dt) => datetime_to_unix(dt).ok_or_else(|| WANT.to_owned()),
        toml::Value::String(s) => s
            .parse::<toml::value::Datetime>()
            .ok()
            .and_then(|dt| datetime_to_unix(&dt))
            .ok_or_else(|| WANT.to_owned()),
        _ => Err(WANT.to_owned()),
    }
}

/// A full date-time with offset, at or after 1970, as Unix seconds (fractions dropped).
fn datetime_to_unix(dt: &toml::value::Datetime) -> Option<u64> {
    let (date, time, offset) = (dt.date?, dt.time?, dt.offset?);
    let offset_minutes: i64 = match offset {
        toml::value::Offset::Z => 0,
        toml::value::Offset::Custom { minutes } => i64::from(minutes),
    };
    let days = ringgate_model::calendar::days_from_civil(
        i64::from(date.year),
        i64::from(date.month),
        i64::from(date.day),
    );
    let secs = days * 86_400
        + i64::from(time.hour) * 3_600
        + i64::from(time.minute) * 60
        + i64::from(time.second)
        - offset_minutes * 60;
    u64::try_from(secs).ok()
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_utc(unix: u64) -> String {
    let secs = i64::try_from(unix).unwrap_or(i64::MAX / 2);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = ringgate_model::calendar::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn store_of(entries: &[KeyEntry]) -> KeyStore {
        let text: String = entries
            .iter()
            .map(KeyEntry::to_toml)
            .collect::<Vec<_>>()
            .join("\n");
        KeyStore::parse(&text).unwrap()
    }

    #[test]
    fn generate_verify_revoke_expire() {
        let (secret, entry) = generate_key(
            "billing",
            Some("acme"),
            &["write", "read"],
            Some("gold"),
            None,
        )
        .unwrap();
        assert!(secret.starts_with("rgk_"));
        assert_eq!(secret.len(), 4 + ID_LEN + 1 + SECRET_LEN);
        assert!(
            !entry.to_toml().contains(&secret[4 + ID_LEN + 1..]),
            "the file never holds the secret"
        );

        let store = store_of(std::slice::from_ref(&entry));
        let id = store.verify(secret.as_bytes(), NOW).unwrap();
        assert_eq!(id.kind, CredentialKind::ApiKey);
        assert_eq!(id.client_id.as_deref(), Some("billing"));
        assert_eq!(id.tenant.as_deref(), Some("acme"));
        assert_eq!(id.tier.as_deref(), Some("gold"));
        assert_eq!(&*id.scopes, &["read".into(), "write".into()] as &[Box<str>]);

        // Wrong secret, differing in the last character only (constant-time compare path).
        let mut wrong = secret.clone().into_bytes();
        let last = wrong.len() - 1;
        wrong[last] = if wrong[last] == b'a' { b'b' } else { b'a' };
        assert_eq!(store.verify(&wrong, NOW), Err(AuthFailure::BadSecret));

        // Unknown id.
        let other = format!("rgk_ZZZZZZZZ_{}", &secret[4 + ID_LEN + 1..]);
        assert_eq!(
            store.verify(other.as_bytes(), NOW),
            Err(AuthFailure::UnknownKey)
        );

        // Revoked.
        let revoked = store_of(&[KeyEntry {
            revoked: true,
            ..entry.clone()
        }]);
        assert_eq!(
            revoked.verify(secret.as_bytes(), NOW),
            Err(AuthFailure::Revoked)
        );
        // ... but a wrong secret on a revoked key says nothing about revocation.
        assert_eq!(revoked.verify(&wrong, NOW), Err(AuthFailure::BadSecret));

        // Expired at exactly expires_at.
        let expiring = store_of(&[KeyEntry {
            expires_at: Some(NOW),
            ..entry
        }]);
        assert!(expiring.verify(secret.as_bytes(), NOW - 1).is_ok());
        assert_eq!(
            expiring.verify(secret.as_bytes(), NOW),
            Err(AuthFailure::Expired)
        );
    }

    #[test]
    fn generated_keys_differ() {
        let (a, ea) = generate_key::<&str>("c", None, &[], None, None).unwrap();
        let (b, eb) = generate_key::<&str>("c", None, &[], None, None).unwrap();
        assert_ne!(a, b);
        assert_ne!(ea.id, eb.id);
        assert_ne!(ea.hash, eb.hash);
        assert!(generate_key("", None, &["ok"], None, None).is_err());
        assert!(generate_key("c", None, &["bad scope"], None, None).is_err());
    }

    #[test]
    fn malformed_presented_keys() {
        let store = KeyStore::default();
        for bad in [
            &b""[..],
            b"rgk_",
            b"rgk_abc",
            b"rgk_abc_",
            b"rgk__0123456789abcdef",
            b"xyz_abc_0123456789abcdef",
            b"rgk_ab-c_0123456789abcdef",
            b"rgk_abc_0123456789abcde",    // 15: too short
            b"rgk_abc_0123456789abcdef_g", // '_' in the secret
            b"rgk_abc_0123456789abcdef\xff",
        ] {
            assert_eq!(
                store.verify(bad, NOW),
                Err(AuthFailure::Malformed),
                "{bad:?}"
            );
        }
        assert_eq!(
            split_key(b"rgk_abc_0123456789abcdef"),
            Some(("abc", &b"0123456789abcdef"[..]))
        );
    }

    #[test]
    fn key_file_round_trip_and_datetimes() {
        let entry = KeyEntry {
            id: "abc".into(),
            hash: KeyHash::for_secret([7; SALT_LEN], b"0123456789abcdef"),
            client_id: "we \"quote\" \\ and\ttab".into(),
            tenant: None,
            scopes: vec!["a:b".into()],
            tier: None,
            expires_at: Some(1_798_761_600),
            revoked: false,
        };
        let text = entry.to_toml();
        assert!(text.contains("expires_at = 2027-01-01T00:00:00Z"), "{text}");
        assert_eq!(parse_entries(&text).unwrap(), vec![entry]);

        for (value, want) in [
            ("1798761600", 1_798_761_600),
            ("2027-01-01T00:00:00Z", 1_798_761_600),
            ("2027-01-01T01:30:00+01:30", 1_798_761_600),
            ("\"2027-01-01T00:00:00.5Z\"", 1_798_761_600),
            ("1970-01-01T00:00:00Z", 0),
            ("2000-02-29T12:00:00Z", 951_825_600),
        ] {
            let text = format!(
                "[[keys]]\nid=\"a\"\nhash=\"sha256:{}:{}\"\nclient_id=\"c\"\nexpires_at={value}\n",
                "0".repeat(32),
                "0".repeat(64)
            );
            let entries = parse_entries(&text).unwrap();
            assert_eq!(entries[0].expires_at, Some(want), "{value}");
        }
        for unix in [0, 951_825_600, 1_798_761_600, 4_102_444_799] {
            let text = format_utc(unix);
            let dt: toml::value::Datetime = text.parse().unwrap();
            assert_eq!(datetime_to_unix(&dt), Some(unix), "{text}");
        }
    }

    #[test]
    fn key_file_reports_every_problem_with_its_path() {
        let zeros = format!("sha256:{}:{}", "0".repeat(32), "0".repeat(64));
        let text = format!(
            r#"
extra = 1
[[keys]]
id = "good"
hash = "{zeros}"
client_id = "c"

[[keys]]
id = "bad1"
hash = "md5:00"
client_id = 5
revokd = true
expires_at = 2027-01-01

[[keys]]
id = "good"
hash = "{zeros}"
client_id = "c"
scopes = ["has space"]
"#
        );
        let problems = KeyStore::parse(&text).unwrap_err();
        let joined = problems.join("\n");
        for want in [
            "extra: unknown top-level field",
            "keys[1] (id \"bad1\").hash:",
            "keys[1] (id \"bad1\").client_id: must be a string",
            "keys[1] (id \"bad1\").revokd: unknown field",
            "keys[1] (id \"bad1\").expires_at:",
        ] {
            assert!(joined.contains(want), "missing {want:?} in:\n{joined}");
        }
        // Value checks and duplicates come from from_entries, once the types are right.
        let text = text.replace("extra = 1\n", "");
        let fixed = text
            .replace("hash = \"md5:00\"", &format!("hash = \"{zeros}\""))
            .replace("client_id = 5", "client_id = \"c\"")
            .replace("revokd = true\n", "")
            .replace("expires_at = 2027-01-01\n", "");
        let problems = KeyStore::parse(&fixed).unwrap_err().join("\n");
        assert!(
            problems.contains("keys[2] (id \"good\").scopes[0]:"),
            "{problems}"
        );
        let fixed = fixed.replace("scopes = [\"has space\"]", "");
        let problems = KeyStore::parse(&fixed).unwrap_err().join("\n");
        assert!(
            problems.contains("keys[2] (id \"good\").id: duplicate id"),
            "{problems}"
        );
        assert!(KeyStore::parse("not toml [").is_err());
        assert!(KeyStore::parse("").unwrap().is_empty());
    }

    #[test]
    fn hash_text_form() {
        let h = KeyHash::for_secret([0xab; SALT_LEN], b"secretsecretsecret");
        assert_eq!(KeyHash::parse(&h.to_string()).unwrap(), h);
        assert!(h.matches(b"secretsecretsecret"));
        assert!(!h.matches(b"secretsecretsecreT"));
        for bad in [
            "",
            "sha256:00:00",
            "sha1:x:y",
            &format!("sha256:{}:{}:", "0".repeat(32), "0".repeat(64)),
        ] {
            assert!(KeyHash::parse(bad).is_err(), "{bad}");
        }
        assert!(KeyHash::parse(&format!("sha256:{}:{}", "G".repeat(32), "0".repeat(64))).is_err());
    }
}
