//! Security of the uplink connection: TLS with a pinned CA and an optional client certificate
//! (mTLS), and the MQTT user name and password read from the environment.
//!
//! The rustls `ClientConfig` is built with the `ring` provider explicitly and trusts only the
//! CA certificates in `[uplink] ca_file`: no system roots, so a certificate issued by any other
//! authority is refused. Everything is read and checked once at start ([`UplinkSecurity::load`]);
//! a missing file, a PEM without a certificate or key, an unset environment variable or a
//! placeholder credential is a start error naming the file or the variable (never the value).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rumqttc::{MqttOptions, TlsConfiguration, Transport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::config::UplinkConfig;
use crate::secret::{check_not_placeholder, Secret};

/// Why the uplink's TLS settings or credentials cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("uplink.{key}: cannot read `{path}`: {source}")]
    Read {
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("uplink.{key}: `{path}` holds no PEM certificate")]
    NoCertificate { key: &'static str, path: PathBuf },
    #[error("uplink.{key}: `{path}`: {reason}")]
    BadPem {
        key: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("uplink.client_key_file: `{path}` holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { path: PathBuf },
    #[error("uplink.ca_file: `{path}`: certificate {index} is not a usable CA: {reason}")]
    BadCa {
        path: PathBuf,
        index: usize,
        reason: String,
    },
    #[error("uplink TLS: {0}")]
    Tls(String),
    #[error("uplink.{key}: environment variable `{var}` is not set")]
    MissingEnv { key: &'static str, var: String },
    #[error("uplink.{key}: environment variable `{var}` {problem}")]
    Placeholder {
        key: &'static str,
        var: String,
        problem: crate::secret::PlaceholderError,
    },
    #[error("uplink: `{url}` uses TLS (mqtts://) but `ca_file` is not set; citygate trusts only a configured CA")]
    TlsWithoutCa { url: String },
}

/// The user name and password of the uplink, read from the environment.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
}

/// TLS configuration and credentials of the uplink, checked and ready to apply.
#[derive(Clone, Default)]
pub struct UplinkSecurity {
    pub tls: Option<Arc<ClientConfig>>,
    pub credentials: Option<Credentials>,
}

impl std::fmt::Debug for UplinkSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UplinkSecurity")
            .field("tls", &self.tls.is_some())
            .field("credentials", &self.credentials)
            .finish()
    }
}

impl UplinkSecurity {
    /// Reads the files and environment variables `cfg` names. `tls` says whether the uplink URL
    /// is `mqtts://`; `url` is only used in messages.
    pub fn load(
        cfg: &UplinkConfig,
        tls: bool,
        url: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<UplinkSecurity, SecurityError> {
        let tls = if tls {
            let ca = cfg
                .ca_file
                .as_deref()
                .ok_or_else(|| SecurityError::TlsWithoutCa {
                    url: url.to_string(),
                })?;
            let client = match (&cfg.client_cert_file, &cfg.client_key_file) {
                (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
                _ => None,
            };
            Some(Arc::new(client_config(ca, client)?))
        } else {
            None
        };
        let credentials = match (&cfg.username_env, &cfg.password_env) {
            (Some(u), Some(p)) => Some(Credentials {
                username: read_env("username_env", u, false, env)?,
                password: Secret::new(read_env("password_env", p, true, env)?),
            }),
            _ => None,
        };
        Ok(UplinkSecurity { tls, credentials })
    }

    /// Puts the TLS transport and the credentials into `opts`.
    pub fn apply(&self, opts: &mut MqttOptions) {
        if let Some(tls) = &self.tls {
            opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                Arc::clone(tls),
            )));
        }
        if let Some(c) = &self.credentials {
            opts.set_credentials(c.username.clone(), c.password.expose());
        }
    }
}

fn read_env(
    key: &'static str,
    var: &str,
    is_password: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, SecurityError> {
    let value = env(var).ok_or_else(|| SecurityError::MissingEnv {
        key,
        var: var.to_string(),
    })?;
    check_not_placeholder(&value, is_password).map_err(|problem| SecurityError::Placeholder {
        key,
        var: var.to_string(),
        problem,
    })?;
    Ok(value)
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, SecurityError> {
    std::fs::read(path).map_err(|source| SecurityError::Read {
        key,
        path: path.to_path_buf(),
        source,
    })
}

/// Every certificate in a PEM file.
pub fn load_certs(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, SecurityError> {
    let pem = read(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SecurityError::BadPem {
            key,
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(SecurityError::NoCertificate {
            key,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The first private key in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, SecurityError> {
    let pem = read("client_key_file", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => SecurityError::NoKey {
            path: path.to_path_buf(),
        },
        // The error of a malformed key never holds key bytes; say only what kind it is.
        other => SecurityError::BadPem {
            key: "client_key_file",
            path: path.to_path_buf(),
            reason: format!("not a readable private key ({other})"),
        },
    })
}

/// A rustls client configuration on the `ring` provider that trusts only the CA certificates
/// in `ca_file`, and presents `client = (cert_file, key_file)` when given.
pub fn client_config(
    ca_file: &Path,
    client: Option<(&Path, &Path)>,
) -> Result<ClientConfig, SecurityError> {
    let mut roots = RootCertStore::empty();
    for (index, cert) in load_certs("ca_file", ca_file)?.into_iter().enumerate() {
        roots.add(cert).map_err(|e| SecurityError::BadCa {
            path: ca_file.to_path_buf(),
            index,
            reason: e.to_string(),
        })?;
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| SecurityError::Tls(e.to_string()))?
            .with_root_certificates(roots);
    match client {
        None => Ok(builder.with_no_client_auth()),
        Some((cert_file, key_file)) => {
            let chain = load_certs("client_cert_file", cert_file)?;
            let key = load_key(key_file)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| SecurityError::Tls(format!("client certificate and key: {e}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> UplinkConfig {
        UplinkConfig::default()
    }

    #[test]
    fn credentials_come_from_the_environment() {
        let mut c = cfg();
        c.username_env = Some("CG_USER".into());
        c.password_env = Some("CG_PASS".into());
        let env = |n: &str| match n {
            "CG_USER" => Some("gw-0417".to_string()),
            "CG_PASS" => Some("k9#Lr2!vQp-long".to_string()),
            _ => None,
        };
        let s = UplinkSecurity::load(&c, false, "mqtt://x:1", &env).unwrap();
        let creds = s.credentials.clone().unwrap();
        assert_eq!(creds.username, "gw-0417");
        assert_eq!(creds.password.expose(), "k9#Lr2!vQp-long");
        assert!(!format!("{s:?}").contains("k9#Lr2"));
    }

    #[test]
    fn a_missing_variable_is_named() {
        let mut c = cfg();
        c.username_env = Some("CG_USER".into());
        c.password_env = Some("CG_PASS".into());
        let env = |n: &str| (n == "CG_USER").then(|| "gw-0417".to_string());
        let e = UplinkSecurity::load(&c, false, "mqtt://x:1", &env).unwrap_err();
        assert_eq!(
            e.to_string(),
            "uplink.password_env: environment variable `CG_PASS` is not set"
        );
    }

    #[test]
    fn placeholder_credentials_are_refused_without_printing_them() {
        let mut c = cfg();
        c.username_env = Some("CG_USER".into());
        c.password_env = Some("CG_PASS".into());
        for (user, pass) in [
            ("gw", "changeme"),
            ("gw", "<password>"),
            ("gw", ""),
            ("admin", "k9#Lr2!vQp-long"),
        ] {
            let env = |n: &str| match n {
                "CG_USER" => Some(user.to_string()),
                _ => Some(pass.to_string()),
            };
            let e = UplinkSecurity::load(&c, false, "mqtt://x:1", &env)
                .unwrap_err()
                .to_string();
            assert!(e.contains("environment variable `CG_"), "{e}");
            if pass.len() > 3 {
                assert!(!e.contains(pass) || pass == "changeme", "{e}");
            }
        }
    }

    #[test]
    fn tls_needs_a_ca() {
        let e = UplinkSecurity::load(&cfg(), true, "mqtts://x:8883", &|_| None).unwrap_err();
        assert!(e.to_string().contains("ca_file"), "{e}");
    }

    #[test]
    fn unreadable_and_empty_pem_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let e = client_config(&missing, None).unwrap_err().to_string();
        assert!(e.starts_with("uplink.ca_file: cannot read"), "{e}");
        assert!(e.contains("nope.pem"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = client_config(&empty, None).unwrap_err().to_string();
        assert!(e.contains("holds no PEM certificate"), "{e}");
    }
}
