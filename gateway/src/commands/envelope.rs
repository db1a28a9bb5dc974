//! The command envelope: parsing with strict field rules, the canonical signed bytes, and
//! signing (for the platform side and tests).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::verify::Reason;
use base64::prelude::{Engine as _, BASE64_STANDARD};

/// Version of the command envelope.
pub const ENVELOPE_VERSION: u64 = 1;
/// Largest command accepted, in bytes.
pub const MAX_COMMAND_BYTES: usize = 16 * 1024;
/// First line of the signed bytes.
pub const DOMAIN: &str = "citygate-command-v1";

/// A verified command, handed to the rest of the gateway (and kept in the journal until it is
/// carried out).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub gateway: String,
    pub name: String,
    pub args: Map<String, Value>,
    pub issued_at: u64,
    pub expires_at: u64,
    pub nonce: String,
    pub key_id: String,
}

/// The envelope as it arrives, before any check beyond JSON types.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Wire {
    pub v: u64,
    pub gateway: String,
    pub name: String,
    #[serde(default)]
    pub args: Map<String, Value>,
    pub issued_at: u64,
    pub expires_at: u64,
    pub nonce: String,
    pub key_id: String,
    #[serde(default)]
    pub sig: Option<String>,
}

fn chars_ok(s: &str, min: usize, max: usize, ok: impl Fn(char) -> bool) -> bool {
    (min..=max).contains(&s.len()) && s.chars().all(ok)
}

/// `[a-z0-9_]{1,64}`.
pub fn valid_name(s: &str) -> bool {
    chars_ok(s, 1, 64, |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'
    })
}

/// `[A-Za-z0-9_-]{16,64}`.
pub fn valid_nonce(s: &str) -> bool {
    chars_ok(s, 16, 64, |c| {
        c.is_ascii_alphanumeric() || c == '_' || c == '-'
    })
}

/// `[A-Za-z0-9_.-]{1,64}`.
pub fn valid_key_id(s: &str) -> bool {
    chars_ok(s, 1, 64, |c| {
        c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-'
    })
}

/// The nonce of a payload that may be malformed, when it has a syntactically valid one (for
/// reporting a rejection on `cmd_result/<nonce>`).
pub(crate) fn nonce_of(v: &Value) -> Option<String> {
    v.get("nonce")
        .and_then(Value::as_str)
        .filter(|n| valid_nonce(n))
        .map(str::to_owned)
}

/// Parses and checks the syntax of an envelope; returns the command and its signature bytes.
pub(crate) fn parse(value: Value) -> Result<(Command, Option<Vec<u8>>), Reason> {
    let w: Wire = serde_json::from_value(value).map_err(|e| Reason::Malformed(e.to_string()))?;
    if w.v != ENVELOPE_VERSION {
        return Err(Reason::UnsupportedVersion(w.v));
    }
    let bad = |field: &'static str, rule: &'static str| Reason::BadField { field, rule };
    if citygate_protocols::topic::validate_gateway(&w.gateway).is_err() {
        return Err(bad("gateway", "1-64 of A-Z a-z 0-9 _ -"));
    }
    if !valid_name(&w.name) {
        return Err(bad("name", "1-64 of a-z 0-9 _"));
    }
    if !valid_nonce(&w.nonce) {
        return Err(bad("nonce", "16-64 of A-Z a-z 0-9 _ -"));
    }
    if !valid_key_id(&w.key_id) {
        return Err(bad("key_id", "1-64 of A-Z a-z 0-9 _ . -"));
    }
    let sig = match &w.sig {
        None => None,
        Some(s) => Some(
            BASE64_STANDARD
                .decode(s)
                .map_err(|_| bad("sig", "standard base64 with padding"))?,
        ),
    };
    Ok((
        Command {
            gateway: w.gateway,
            name: w.name,
            args: w.args,
            issued_at: w.issued_at,
            expires_at: w.expires_at,
            nonce: w.nonce,
            key_id: w.key_id,
        },
        sig,
    ))
}

fn canonical_json(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                if let Some(x) = m.get(k) {
                    canonical_json(x, out);
                }
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The bytes the signature covers (see the module documentation of `commands`).
pub fn signed_bytes(c: &Command) -> Vec<u8> {
    let mut s = format!(
        "{DOMAIN}\n{}\n{}\n{}\n{}\n{}\n{}\n",
        c.gateway, c.name, c.issued_at, c.expires_at, c.nonce, c.key_id
    );
    canonical_json(&Value::Object(c.args.clone()), &mut s);
    s.into_bytes()
}

impl Command {
    /// The envelope of this command signed with `key` (what the platform publishes).
    pub fn sign(&self, key: &ring::signature::Ed25519KeyPair) -> Value {
        let sig = key.sign(&signed_bytes(self));
        let mut v = self.unsigned();
        if let Value::Object(m) = &mut v {
            m.insert(
                "sig".into(),
                Value::String(BASE64_STANDARD.encode(sig.as_ref())),
            );
        }
        v
    }

    /// The envelope without `sig`.
    pub fn unsigned(&self) -> Value {
        serde_json::json!({
            "v": ENVELOPE_VERSION,
            "gateway": self.gateway,
            "name": self.name,
            "args": self.args,
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
            "nonce": self.nonce,
            "key_id": self.key_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_bytes_vector() {
        let args =
            serde_json::json!({"z": "é\n\"q\"", "a": [1, -2, 2.5], "m": {"b": true, "a": null}});
        let c = Command {
            gateway: "gw-1".into(),
            name: "plan_override".into(),
            args: args.as_object().cloned().unwrap_or_default(),
            issued_at: 1_700_000_000,
            expires_at: 1_700_000_060,
            nonce: "0123456789abcdef".into(),
            key_id: "platform-1".into(),
        };
        assert_eq!(
            String::from_utf8(signed_bytes(&c)).unwrap(),
            "citygate-command-v1\ngw-1\nplan_override\n1700000000\n1700000060\n\
             0123456789abcdef\nplatform-1\n\
             {\"a\":[1,-2,2.5],\"m\":{\"a\":null,\"b\":true},\"z\":\"é\\n\\\"q\\\"\"}"
        );
    }

    #[test]
    fn field_rules() {
        assert!(valid_name("plan_override"));
        assert!(!valid_name("Plan"));
        assert!(!valid_name(""));
        assert!(!valid_name(&"a".repeat(65)));
        assert!(valid_nonce("3f9c2a1e-6b7d-4c38-9a0e-5d1b2c3d4e5f"));
        assert!(!valid_nonce("short"));
        assert!(!valid_nonce("0123456789abcdef/"));
        assert!(valid_key_id("platform-1.v2"));
        assert!(!valid_key_id("a b"));
    }
}
