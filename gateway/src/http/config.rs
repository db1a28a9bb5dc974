//! `[http]`: the gateway's HTTP server (metrics, health, status page): its schema, defaults
//! and checks, and the bearer token it reads from the environment at start.

use std::net::SocketAddr;

use serde::Deserialize;

use crate::config::is_env_var_name;
use crate::secret::{check_not_placeholder, Secret};

/// `[http]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// `false` switches the HTTP server off.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// Address to listen on. Beyond loopback, `token_env` is required.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Name of the environment variable holding the bearer token every request must carry
    /// (`Authorization: Bearer <token>`). Required when `listen` is not a loopback address.
    #[serde(default)]
    pub token_env: Option<String>,
    /// Seconds the uplink may be down (since start or since it went down) before `/readyz`
    /// reports the gateway not ready.
    #[serde(default = "default_ready_grace_s")]
    pub ready_grace_s: u64,
}

const fn default_enabled() -> bool {
    true
}

/// The default `listen`: `127.0.0.1:9180`.
pub fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9180))
}

const fn default_ready_grace_s() -> u64 {
    30
}

/// Longest `ready_grace_s`: one hour.
pub const MAX_READY_GRACE_S: u64 = 3600;

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            enabled: default_enabled(),
            listen: default_listen(),
            token_env: None,
            ready_grace_s: default_ready_grace_s(),
        }
    }
}

/// Why the HTTP server cannot start with this configuration and environment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error(
        "http.token_env: [http] listen = {listen} is beyond loopback and needs a bearer token: \
         set `token_env` to the name of an environment variable holding it"
    )]
    Required { listen: SocketAddr },
    #[error("http.token_env: environment variable {name} is not set")]
    Unset { name: String },
    #[error("http.token_env: the token in environment variable {name} {reason}")]
    Weak { name: String, reason: String },
}

impl HttpConfig {
    /// Problems of this section as `(key, message)`; empty when usable.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(name) = &self.token_env {
            if !is_env_var_name(name) {
                out.push((
                    "http.token_env".to_string(),
                    "`token_env` must be the NAME of an environment variable (capital letters, \
                     digits and `_`, e.g. `CITYGATE_HTTP_TOKEN`), never the token itself"
                        .to_string(),
                ));
            }
        } else if self.enabled && !self.listen.ip().is_loopback() {
            out.push((
                "http.token_env".to_string(),
                format!(
                    "listening on {} (beyond loopback) needs a bearer token: set `token_env` \
                     to the name of an environment variable holding it",
                    self.listen
                ),
            ));
        }
        if self.ready_grace_s > MAX_READY_GRACE_S {
            out.push((
                "http.ready_grace_s".to_string(),
                format!(
                    "must be at most {MAX_READY_GRACE_S} s, got {}",
                    self.ready_grace_s
                ),
            ));
        }
        out
    }

    /// The bearer token requests must carry, read through `env` (None: no token needed, on
    /// loopback only). Refuses a missing, empty or placeholder token, and a listener beyond
    /// loopback without one.
    pub fn token(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Secret>, TokenError> {
        let Some(name) = &self.token_env else {
            if self.listen.ip().is_loopback() {
                return Ok(None);
            }
            return Err(TokenError::Required {
                listen: self.listen,
            });
        };
        let value = env(name).ok_or_else(|| TokenError::Unset { name: name.clone() })?;
        check_not_placeholder(&value, true).map_err(|e| TokenError::Weak {
            name: name.clone(),
            reason: e.to_string(),
        })?;
        Ok(Some(Secret::new(value.trim())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(listen: &str, token_env: Option<&str>) -> HttpConfig {
        HttpConfig {
            listen: listen.parse().unwrap(),
            token_env: token_env.map(str::to_string),
            ..HttpConfig::default()
        }
    }

    #[test]
    fn loopback_needs_no_token_anything_else_does() {
        assert!(cfg("127.0.0.1:9180", None).problems().is_empty());
        assert!(cfg("[::1]:9180", None).problems().is_empty());
        let p = cfg("0.0.0.0:9180", None).problems();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].0, "http.token_env");
        assert!(p[0].1.contains("0.0.0.0:9180"), "{p:?}");
        let off = HttpConfig {
            enabled: false,
            ..cfg("0.0.0.0:9180", None)
        };
        assert!(off.problems().is_empty());
        assert!(cfg("0.0.0.0:9180", Some("CG_TOKEN")).problems().is_empty());
        let p = cfg("0.0.0.0:9180", Some("s3cret-token-value")).problems();
        assert!(p[0].1.contains("NAME of an environment variable"), "{p:?}");
    }

    #[test]
    fn the_token_comes_from_the_environment_and_must_be_real() {
        let none = |_: &str| None;
        let set = |v: &'static str| move |n: &str| (n == "CG_TOKEN").then(|| v.to_string());
        assert_eq!(cfg("127.0.0.1:1", None).token(&none), Ok(None));
        assert_eq!(
            cfg("10.0.0.5:9180", None).token(&none),
            Err(TokenError::Required {
                listen: "10.0.0.5:9180".parse().unwrap()
            })
        );
        let c = cfg("10.0.0.5:9180", Some("CG_TOKEN"));
        assert_eq!(
            c.token(&none),
            Err(TokenError::Unset {
                name: "CG_TOKEN".into()
            })
        );
        assert!(matches!(
            c.token(&set("changeme")),
            Err(TokenError::Weak { .. })
        ));
        assert!(matches!(
            c.token(&set("short")),
            Err(TokenError::Weak { .. })
        ));
        let t = c.token(&set("a-long-random-token")).unwrap().unwrap();
        assert_eq!(t.expose(), "a-long-random-token");
        let e = c.token(&set("tiny1")).unwrap_err().to_string();
        assert!(e.contains("CG_TOKEN") && !e.contains("tiny1"), "{e}");
    }
}
