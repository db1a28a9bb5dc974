//! The pure command verifier: trusted keys, clock skew, lifetime and the replay window. Time is
//! passed in; nothing here does I/O.

use std::collections::{BTreeSet, HashMap};

use ring::signature::{UnparsedPublicKey, ED25519};
use serde_json::Value;

use super::envelope::{self, signed_bytes, Command, MAX_COMMAND_BYTES};
use crate::config::CommandsConfig;
use base64::prelude::{Engine as _, BASE64_STANDARD};

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    #[error("command is {len} bytes, more than {max}")]
    TooLarge { len: usize, max: usize },
    #[error("command is not a valid envelope: {0}")]
    Malformed(String),
    #[error("command envelope version {0} is not supported (expected 1)")]
    UnsupportedVersion(u64),
    #[error("command is not signed (no `sig`)")]
    Unsigned,
    #[error("command field `{field}` is invalid: expected {rule}")]
    BadField {
        field: &'static str,
        rule: &'static str,
    },
    #[error("command is signed with unknown key `{0}`")]
    UnknownKey(String),
    #[error("command signature does not verify")]
    BadSignature,
    #[error("command is for gateway `{got}`, this is `{expected}`")]
    WrongGateway { expected: String, got: String },
    #[error("command topic names `{topic}` but the envelope names `{envelope}`")]
    TopicMismatch { topic: String, envelope: String },
    #[error("command lifetime {lifetime} s is longer than the allowed {max} s (or expires_at <= issued_at)")]
    BadLifetime { lifetime: i128, max: u64 },
    #[error("command is not valid yet: issued at {issued_at}, now {now}")]
    NotYetValid { issued_at: u64, now: u64 },
    #[error("command expired at {expires_at}, now {now}")]
    Expired { expires_at: u64, now: u64 },
    #[error("command nonce was already used")]
    Replayed,
    #[error("too many unexpired commands remembered ({0}); refusing new ones until some expire")]
    ReplayCacheFull(usize),
    #[error("the gateway is busy; command not queued")]
    Busy,
    #[error("command arrived as a retained message: commands must be published without retain (a retained one would run again at every connect)")]
    Retained,
    #[error("the gateway cannot record the command durably ({0}); not carried out")]
    NotRecorded(String),
}

impl Reason {
    /// A stable machine-readable code, used in results and counters.
    pub const fn code(&self) -> &'static str {
        match self {
            Reason::TooLarge { .. } => "too_large",
            Reason::Malformed(_) => "malformed",
            Reason::UnsupportedVersion(_) => "unsupported_version",
            Reason::Unsigned => "unsigned",
            Reason::BadField { .. } => "bad_field",
            Reason::UnknownKey(_) => "unknown_key",
            Reason::BadSignature => "bad_signature",
            Reason::WrongGateway { .. } => "wrong_gateway",
            Reason::TopicMismatch { .. } => "topic_mismatch",
            Reason::BadLifetime { .. } => "bad_lifetime",
            Reason::NotYetValid { .. } => "not_yet_valid",
            Reason::Expired { .. } => "expired",
            Reason::Replayed => "replayed",
            Reason::ReplayCacheFull(_) => "replay_cache_full",
            Reason::Busy => "busy",
            Reason::Retained => "retained",
            Reason::NotRecorded(_) => "not_recorded",
        }
    }
}

/// A refused command: the reason, and what of it could be read (for the result message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Rejection {
    pub reason: Reason,
    /// The command's nonce, when it has a syntactically valid one.
    pub nonce: Option<String>,
    /// The command's name, when it has a valid one.
    pub name: Option<String>,
}

/// A bad `[commands]` configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifierError {
    #[error("commands.keys[{index}].public_key: not a 32-byte Ed25519 key in standard base64")]
    BadKey { index: usize },
    #[error("commands.keys[{index}].id: `{id}` is used twice or is not 1-64 of A-Z a-z 0-9 _ . -")]
    BadKeyId { index: usize, id: String },
}

/// Decodes a configured public key.
pub fn decode_public_key(text: &str) -> Option<[u8; 32]> {
    BASE64_STANDARD.decode(text).ok()?.try_into().ok()
}

/// Verifies commands for one gateway.
#[derive(Debug, Clone)]
pub struct Verifier {
    gateway: String,
    keys: HashMap<String, [u8; 32]>,
    max_skew: u64,
    max_lifetime: u64,
    capacity: usize,
    /// Nonces remembered, with the time after which they may be forgotten.
    seen: HashMap<String, u64>,
    /// The same, ordered by forget time, for pruning.
    by_expiry: BTreeSet<(u64, String)>,
}

impl Verifier {
    /// A verifier for `gateway` from a (validated) `[commands]` section.
    pub fn new(gateway: &str, cfg: &CommandsConfig) -> Result<Verifier, VerifierError> {
        let mut keys = HashMap::new();
        for (index, k) in cfg.keys.iter().enumerate() {
            let pk = decode_public_key(&k.public_key).ok_or(VerifierError::BadKey { index })?;
            if !envelope::valid_key_id(&k.id) || keys.insert(k.id.clone(), pk).is_some() {
                return Err(VerifierError::BadKeyId {
                    index,
                    id: k.id.clone(),
                });
            }
        }
        Ok(Verifier {
            gateway: gateway.to_string(),
            keys,
            max_skew: cfg.max_clock_skew_s,
            max_lifetime: cfg.max_lifetime_s,
            capacity: cfg.replay_capacity,
            seen: HashMap::new(),
            by_expiry: BTreeSet::new(),
        })
    }

    /// Whether any key is trusted (otherwise every command is refused).
    pub fn has_keys(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Nonces currently remembered.
    pub fn remembered(&self) -> usize {
        self.seen.len()
    }

    fn forget_expired(&mut self, now: u64) {
        while let Some(first) = self.by_expiry.first() {
            if first.0 >= now {
                break;
            }
            if let Some((_, nonce)) = self.by_expiry.pop_first() {
                self.seen.remove(&nonce);
            }
        }
    }

    /// Checks one received payload at `now` (seconds since the epoch). On success the nonce is
    /// remembered, so the same bytes are refused as replayed next time.
    pub fn verify(&mut self, bytes: &[u8], now: u64) -> Result<Command, Rejection> {
        let (cmd, forget_after) = self.check(bytes, now)?;
        self.remember(&cmd.nonce, forget_after);
        Ok(cmd)
    }

    /// Remembers a nonce until `forget_after` (seconds since the epoch): a command that passed
    /// every check, or one remembered from before a restart.
    pub fn remember(&mut self, nonce: &str, forget_after: u64) {
        if let Some(old) = self.seen.insert(nonce.to_string(), forget_after) {
            self.by_expiry.remove(&(old, nonce.to_string()));
        }
        self.by_expiry.insert((forget_after, nonce.to_string()));
    }

    /// Every check of [`Verifier::verify`] without remembering the nonce; returns the command
    /// and until when its nonce must be remembered once the caller has carried it out (after
    /// that it is refused as expired anyway).
    pub fn check(&mut self, bytes: &[u8], now: u64) -> Result<(Command, u64), Rejection> {
        let reject = |reason, nonce: Option<String>, name: Option<String>| Rejection {
            reason,
            nonce,
            name,
        };
        if bytes.len() > MAX_COMMAND_BYTES {
            return Err(reject(
                Reason::TooLarge {
                    len: bytes.len(),
                    max: MAX_COMMAND_BYTES,
                },
                None,
                None,
            ));
        }
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| reject(Reason::Malformed(e.to_string()), None, None))?;
        let nonce = envelope::nonce_of(&value);
        let name = value
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| envelope::valid_name(n))
            .map(str::to_owned);
        let fail = |reason| reject(reason, nonce.clone(), name.clone());
        let (cmd, sig) = envelope::parse(value).map_err(fail)?;
        let sig = sig.ok_or_else(|| fail(Reason::Unsigned))?;
        let key = self
            .keys
            .get(&cmd.key_id)
            .ok_or_else(|| fail(Reason::UnknownKey(cmd.key_id.clone())))?;
        UnparsedPublicKey::new(&ED25519, key)
            .verify(&signed_bytes(&cmd), &sig)
            .map_err(|_| fail(Reason::BadSignature))?;
        if cmd.gateway != self.gateway {
            return Err(fail(Reason::WrongGateway {
                expected: self.gateway.clone(),
                got: cmd.gateway.clone(),
            }));
        }
        let lifetime = i128::from(cmd.expires_at) - i128::from(cmd.issued_at);
        if lifetime <= 0 || lifetime > i128::from(self.max_lifetime) {
            return Err(fail(Reason::BadLifetime {
                lifetime,
                max: self.max_lifetime,
            }));
        }
        if cmd.issued_at > now.saturating_add(self.max_skew) {
            return Err(fail(Reason::NotYetValid {
                issued_at: cmd.issued_at,
                now,
            }));
        }
        let forget_after = cmd.expires_at.saturating_add(self.max_skew);
        if now > forget_after {
            return Err(fail(Reason::Expired {
                expires_at: cmd.expires_at,
                now,
            }));
        }
        self.forget_expired(now);
        if self.seen.contains_key(&cmd.nonce) {
            return Err(fail(Reason::Replayed));
        }
        if self.seen.len() >= self.capacity {
            return Err(fail(Reason::ReplayCacheFull(self.capacity)));
        }
        Ok((cmd, forget_after))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CommandKeyConfig;
    use ring::rand::SystemRandom;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    const NOW: u64 = 1_700_000_000;

    fn keypair() -> Ed25519KeyPair {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap()
    }

    fn setup(capacity: usize) -> (Verifier, Ed25519KeyPair) {
        let k = keypair();
        let cfg = CommandsConfig {
            keys: vec![CommandKeyConfig {
                id: "platform-1".into(),
                public_key: BASE64_STANDARD.encode(k.public_key().as_ref()),
            }],
            max_clock_skew_s: 30,
            max_lifetime_s: 600,
            replay_capacity: capacity,
        };
        (Verifier::new("gw-1", &cfg).unwrap(), k)
    }

    fn cmd(nonce: &str) -> Command {
        Command {
            gateway: "gw-1".into(),
            name: "plan_override".into(),
            args: serde_json::json!({"plan": 3}).as_object().cloned().unwrap(),
            issued_at: NOW,
            expires_at: NOW + 60,
            nonce: nonce.into(),
            key_id: "platform-1".into(),
        }
    }

    fn bytes(v: &Value) -> Vec<u8> {
        serde_json::to_vec(v).unwrap()
    }

    fn reason(v: &mut Verifier, payload: &[u8], now: u64) -> Reason {
        v.verify(payload, now).unwrap_err().reason
    }

    const N1: &str = "nonce-0000000001";

    #[test]
    fn a_signed_command_is_accepted_once() {
        let (mut v, k) = setup(100);
        let p = bytes(&cmd(N1).sign(&k));
        assert_eq!(v.verify(&p, NOW + 5), Ok(cmd(N1)));
        let r = v.verify(&p, NOW + 6).unwrap_err();
        assert_eq!(r.reason, Reason::Replayed);
        assert_eq!(r.nonce.as_deref(), Some(N1));
        assert_eq!(r.name.as_deref(), Some("plan_override"));
    }

    #[test]
    fn unsigned() {
        let (mut v, _) = setup(100);
        assert_eq!(
            reason(&mut v, &bytes(&cmd(N1).unsigned()), NOW),
            Reason::Unsigned
        );
    }

    #[test]
    fn bad_signature() {
        let (mut v, k) = setup(100);
        // Changing any signed field after signing breaks the signature.
        let mut e = cmd(N1).sign(&k);
        e["args"]["plan"] = serde_json::json!(4);
        assert_eq!(reason(&mut v, &bytes(&e), NOW), Reason::BadSignature);
        let mut e = cmd(N1).sign(&k);
        e["expires_at"] = serde_json::json!(NOW + 61);
        assert_eq!(reason(&mut v, &bytes(&e), NOW), Reason::BadSignature);
        // Signed by another key under the trusted key id.
        let e = cmd(N1).sign(&keypair());
        assert_eq!(reason(&mut v, &bytes(&e), NOW), Reason::BadSignature);
        // Not base64, or the wrong length.
        let mut e = cmd(N1).sign(&k);
        e["sig"] = serde_json::json!("!!!");
        assert!(matches!(
            reason(&mut v, &bytes(&e), NOW),
            Reason::BadField { field: "sig", .. }
        ));
        e["sig"] = serde_json::json!("AAAA");
        assert_eq!(reason(&mut v, &bytes(&e), NOW), Reason::BadSignature);
        // Nothing was remembered: the genuine command is still accepted.
        assert!(v.verify(&bytes(&cmd(N1).sign(&k)), NOW).is_ok());
    }

    /// Base64 is strict (the `base64` crate's standard engine): padding required, no
    /// whitespace, no non-zero trailing bits, so a signature or key has one text form.
    #[test]
    fn only_the_canonical_base64_form_is_accepted() {
        let (mut v, k) = setup(100);
        let key = BASE64_STANDARD.encode(k.public_key().as_ref());
        assert!(decode_public_key(&key).is_some());
        // 32 bytes: 43 characters carry 258 bits, the last 2 must be zero.
        let last = key.as_bytes()[42];
        let mut bits_set = key.clone();
        bits_set.replace_range(42..43, &char::from(last + 1).to_string());
        for bad in [
            bits_set.as_str(),
            key.trim_end_matches('='),
            &format!("{key}="),
            &format!(" {key}"),
            &format!("{}\n{}", &key[..20], &key[20..]),
            &format!("-{}", &key[1..]),
        ] {
            assert_eq!(decode_public_key(bad), None, "{bad:?}");
        }
        let e = cmd(N1).sign(&k);
        let sig = e["sig"].as_str().unwrap().to_string();
        for bad in [sig.trim_end_matches('=').to_string(), format!("{sig}\n")] {
            let mut e = e.clone();
            e["sig"] = serde_json::json!(bad);
            assert!(matches!(
                reason(&mut v, &bytes(&e), NOW),
                Reason::BadField { field: "sig", .. }
            ));
        }
        assert!(v.verify(&bytes(&e), NOW).is_ok());
    }

    #[test]
    fn expired_and_not_yet_valid() {
        let (mut v, k) = setup(100);
        let p = bytes(&cmd(N1).sign(&k));
        // Expires at NOW+60, skew 30: accepted up to NOW+90.
        assert_eq!(
            reason(&mut v, &p, NOW + 91),
            Reason::Expired {
                expires_at: NOW + 60,
                now: NOW + 91
            }
        );
        // Issued at NOW: refused before NOW-30.
        assert_eq!(
            reason(&mut v, &p, NOW - 31),
            Reason::NotYetValid {
                issued_at: NOW,
                now: NOW - 31
            }
        );
        assert!(v.verify(&p, NOW - 30).is_ok());
        let p2 = bytes(&cmd("nonce-0000000002").sign(&k));
        assert!(v.verify(&p2, NOW + 90).is_ok());
    }

    #[test]
    fn lifetime_is_bounded() {
        let (mut v, k) = setup(100);
        let mut c = cmd(N1);
        c.expires_at = NOW + 601;
        assert!(matches!(
            reason(&mut v, &bytes(&c.sign(&k)), NOW),
            Reason::BadLifetime { .. }
        ));
        c.expires_at = NOW;
        assert!(matches!(
            reason(&mut v, &bytes(&c.sign(&k)), NOW),
            Reason::BadLifetime { .. }
        ));
    }

    #[test]
    fn wrong_gateway() {
        let (mut v, k) = setup(100);
        let mut c = cmd(N1);
        c.gateway = "gw-2".into();
        assert_eq!(
            reason(&mut v, &bytes(&c.sign(&k)), NOW),
            Reason::WrongGateway {
                expected: "gw-1".into(),
                got: "gw-2".into()
            }
        );
    }

    #[test]
    fn unknown_key() {
        let (mut v, k) = setup(100);
        let mut c = cmd(N1);
        c.key_id = "platform-9".into();
        assert_eq!(
            reason(&mut v, &bytes(&c.sign(&k)), NOW),
            Reason::UnknownKey("platform-9".into())
        );
    }

    #[test]
    fn malformed_and_oversized() {
        let (mut v, k) = setup(100);
        assert!(matches!(
            reason(&mut v, b"not json", NOW),
            Reason::Malformed(_)
        ));
        assert!(matches!(
            reason(&mut v, b"[1,2]", NOW),
            Reason::Malformed(_)
        ));
        let mut e = cmd(N1).sign(&k);
        e["extra"] = serde_json::json!(1);
        assert!(
            matches!(reason(&mut v, &bytes(&e), NOW), Reason::Malformed(m) if m.contains("extra"))
        );
        let mut e = cmd(N1).sign(&k);
        e["v"] = serde_json::json!(2);
        assert_eq!(
            reason(&mut v, &bytes(&e), NOW),
            Reason::UnsupportedVersion(2)
        );
        let mut e = cmd(N1).sign(&k);
        e["nonce"] = serde_json::json!("short");
        let r = v.verify(&bytes(&e), NOW).unwrap_err();
        assert!(matches!(r.reason, Reason::BadField { field: "nonce", .. }));
        assert_eq!(r.nonce, None);
        let big = vec![b' '; MAX_COMMAND_BYTES + 1];
        assert!(matches!(reason(&mut v, &big, NOW), Reason::TooLarge { .. }));
    }

    #[test]
    fn replay_memory_is_bounded_and_forgets_expired_nonces() {
        let (mut v, k) = setup(2);
        let n = |i: u32| format!("nonce-{i:010}");
        assert!(v.verify(&bytes(&cmd(&n(1)).sign(&k)), NOW).is_ok());
        let mut later = cmd(&n(2));
        later.expires_at = NOW + 300;
        assert!(v.verify(&bytes(&later.sign(&k)), NOW).is_ok());
        assert_eq!(
            reason(&mut v, &bytes(&cmd(&n(3)).sign(&k)), NOW),
            Reason::ReplayCacheFull(2)
        );
        // n(1) may be forgotten after NOW+60+30; a command issued then is accepted.
        let mut c = cmd(&n(3));
        c.issued_at = NOW + 91;
        c.expires_at = NOW + 150;
        assert!(v.verify(&bytes(&c.sign(&k)), NOW + 91).is_ok());
        assert_eq!(v.remembered(), 2);
        // The forgotten command is refused as expired, never accepted again.
        assert!(matches!(
            reason(&mut v, &bytes(&cmd(&n(1)).sign(&k)), NOW + 91),
            Reason::Expired { .. }
        ));
    }

    #[test]
    fn bad_keys_are_config_errors() {
        let mut cfg = CommandsConfig::default();
        cfg.keys.push(CommandKeyConfig {
            id: "a".into(),
            public_key: "AAAA".into(),
        });
        assert_eq!(
            Verifier::new("gw", &cfg).unwrap_err(),
            VerifierError::BadKey { index: 0 }
        );
    }
}
