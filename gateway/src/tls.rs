//! TLS and credentials of citygate's MQTT connections: the client side of the uplink and of an
//! external local broker (a pinned CA, an optional client certificate for mTLS, the MQTT user
//! name and password read from the environment), and the server side of the field gate's TLS
//! listener ([`server_config`]).
//!
//! Every rustls configuration is built with the `ring` provider explicitly. A client trusts
//! only the CA certificates in its `ca_file`: no system roots, so a certificate issued by any
//! other authority is refused. Everything is read and checked once at start
//! ([`ClientSecurity::load`]); a missing file, a PEM without a certificate or key, an unset
//! environment variable or a placeholder credential is a start error naming the section, the
//! key and the file or the variable (never the value).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rumqttc::{MqttOptions, TlsConfiguration, Transport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::config::{BrokerConfig, UplinkConfig};
use crate::secret::{check_not_placeholder, Secret};

/// Why TLS settings or credentials cannot be used. `section` is `uplink` or `broker`.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("{section}.{key}: cannot read `{path}`: {source}")]
    Read {
        section: &'static str,
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{section}.{key}: `{path}` holds no PEM certificate")]
    NoCertificate {
        section: &'static str,
        key: &'static str,
        path: PathBuf,
    },
    #[error("{section}.{key}: `{path}`: {reason}")]
    BadPem {
        section: &'static str,
        key: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{section}.{key}: `{path}` holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey {
        section: &'static str,
        key: &'static str,
        path: PathBuf,
    },
    #[error("{section}.ca_file: `{path}`: certificate {index} is not a usable CA: {reason}")]
    BadCa {
        section: &'static str,
        path: PathBuf,
        index: usize,
        reason: String,
    },
    #[error("{section} TLS: {reason}")]
    Tls {
        section: &'static str,
        reason: String,
    },
    #[error("{section}.{key}: environment variable `{var}` is not set")]
    MissingEnv {
        section: &'static str,
        key: &'static str,
        var: String,
    },
    #[error("{section}.{key}: environment variable `{var}` {problem}")]
    Placeholder {
        section: &'static str,
        key: &'static str,
        var: String,
        problem: crate::secret::PlaceholderError,
    },
    #[error("{section}: `{url}` uses TLS (mqtts://) but `ca_file` is not set; citygate trusts only a configured CA")]
    TlsWithoutCa { section: &'static str, url: String },
}

/// A user name and password, read from the environment or generated at start.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
}

/// TLS configuration and credentials of one MQTT client, checked and ready to apply.
#[derive(Clone, Default)]
pub struct ClientSecurity {
    pub tls: Option<Arc<ClientConfig>>,
    pub credentials: Option<Credentials>,
}

/// The uplink's security (the name the uplink has always used).
pub type UplinkSecurity = ClientSecurity;

impl std::fmt::Debug for ClientSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSecurity")
            .field("tls", &self.tls.is_some())
            .field("credentials", &self.credentials)
            .finish()
    }
}

/// The client-side TLS files and credential variables of one config section.
#[derive(Debug, Clone, Copy)]
pub struct ClientKeys<'a> {
    pub section: &'static str,
    pub ca_file: Option<&'a Path>,
    pub client_cert_file: Option<&'a Path>,
    pub client_key_file: Option<&'a Path>,
    pub username_env: Option<&'a str>,
    pub password_env: Option<&'a str>,
}

impl<'a> ClientKeys<'a> {
    /// The keys of `[uplink]`.
    pub fn uplink(cfg: &'a UplinkConfig) -> ClientKeys<'a> {
        ClientKeys {
            section: "uplink",
            ca_file: cfg.ca_file.as_deref(),
            client_cert_file: cfg.client_cert_file.as_deref(),
            client_key_file: cfg.client_key_file.as_deref(),
            username_env: cfg.username_env.as_deref(),
            password_env: cfg.password_env.as_deref(),
        }
    }

    /// The keys of an external `[broker]`; none for the embedded one.
    pub fn broker(cfg: &'a BrokerConfig) -> ClientKeys<'a> {
        match cfg {
            BrokerConfig::External {
                ca_file,
                client_cert_file,
                client_key_file,
                username_env,
                password_env,
                ..
            } => ClientKeys {
                section: "broker",
                ca_file: ca_file.as_deref(),
                client_cert_file: client_cert_file.as_deref(),
                client_key_file: client_key_file.as_deref(),
                username_env: username_env.as_deref(),
                password_env: password_env.as_deref(),
            },
            BrokerConfig::Embedded { .. } => ClientKeys {
                section: "broker",
                ca_file: None,
                client_cert_file: None,
                client_key_file: None,
                username_env: None,
                password_env: None,
            },
        }
    }
}

impl ClientSecurity {
    /// Reads the files and environment variables `keys` names. `tls` says whether the URL
    /// is `mqtts://`; `url` is only used in messages.
    pub fn load(
        keys: ClientKeys<'_>,
        tls: bool,
        url: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ClientSecurity, SecurityError> {
        let section = keys.section;
        let tls = if tls {
            let ca = keys.ca_file.ok_or_else(|| SecurityError::TlsWithoutCa {
                section,
                url: url.to_string(),
            })?;
            let client = keys.client_cert_file.zip(keys.client_key_file);
            Some(Arc::new(client_config_in(section, ca, client)?))
        } else {
            None
        };
        let credentials = match keys.username_env.zip(keys.password_env) {
            Some((u, p)) => Some(Credentials {
                username: read_env(section, "username_env", u, false, env)?,
                password: Secret::new(read_env(section, "password_env", p, true, env)?),
            }),
            None => None,
        };
        Ok(ClientSecurity { tls, credentials })
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
    section: &'static str,
    key: &'static str,
    var: &str,
    is_password: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, SecurityError> {
    let value = env(var).ok_or_else(|| SecurityError::MissingEnv {
        section,
        key,
        var: var.to_string(),
    })?;
    check_not_placeholder(&value, is_password).map_err(|problem| SecurityError::Placeholder {
        section,
        key,
        var: var.to_string(),
        problem,
    })?;
    Ok(value)
}

fn read(section: &'static str, key: &'static str, path: &Path) -> Result<Vec<u8>, SecurityError> {
    std::fs::read(path).map_err(|source| SecurityError::Read {
        section,
        key,
        path: path.to_path_buf(),
        source,
    })
}

/// Every certificate in a PEM file.
pub fn load_certs(
    section: &'static str,
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, SecurityError> {
    let pem = read(section, key, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SecurityError::BadPem {
            section,
            key,
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(SecurityError::NoCertificate {
            section,
            key,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The first private key in a PEM file.
pub fn load_key(
    section: &'static str,
    key: &'static str,
    path: &Path,
) -> Result<PrivateKeyDer<'static>, SecurityError> {
    let pem = read(section, key, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => SecurityError::NoKey {
            section,
            key,
            path: path.to_path_buf(),
        },
        // The error of a malformed key never holds key bytes; say only what kind it is.
        other => SecurityError::BadPem {
            section,
            key,
            path: path.to_path_buf(),
            reason: format!("not a readable private key ({other})"),
        },
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls client configuration of the uplink (see [`client_config_in`]).
pub fn client_config(
    ca_file: &Path,
    client: Option<(&Path, &Path)>,
) -> Result<ClientConfig, SecurityError> {
    client_config_in("uplink", ca_file, client)
}

/// A rustls client configuration on the `ring` provider that trusts only the CA certificates
/// in `ca_file`, and presents `client = (cert_file, key_file)` when given.
pub fn client_config_in(
    section: &'static str,
    ca_file: &Path,
    client: Option<(&Path, &Path)>,
) -> Result<ClientConfig, SecurityError> {
    let mut roots = RootCertStore::empty();
    for (index, cert) in load_certs(section, "ca_file", ca_file)?
        .into_iter()
        .enumerate()
    {
        roots.add(cert).map_err(|e| SecurityError::BadCa {
            section,
            path: ca_file.to_path_buf(),
            index,
            reason: e.to_string(),
        })?;
    }
    let tls = |reason: String| SecurityError::Tls { section, reason };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(e.to_string()))?
        .with_root_certificates(roots);
    match client {
        None => Ok(builder.with_no_client_auth()),
        Some((cert_file, key_file)) => {
            let chain = load_certs(section, "client_cert_file", cert_file)?;
            let key = load_key(section, "client_key_file", key_file)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| tls(format!("client certificate and key: {e}")))
        }
    }
}

/// The field gate's rustls server configuration: the certificate chain of `[broker]
/// cert_file` and its key `key_file`; clients authenticate with MQTT credentials.
pub fn server_config(cert_file: &Path, key_file: &Path) -> Result<ServerConfig, SecurityError> {
    let chain = load_certs("broker", "cert_file", cert_file)?;
    let key = load_key("broker", "key_file", key_file)?;
    let tls = |reason: String| SecurityError::Tls {
        section: "broker",
        reason,
    };
    ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| tls(format!("cert_file and key_file: {e}")))
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
        let s = UplinkSecurity::load(ClientKeys::uplink(&c), false, "mqtt://x:1", &env).unwrap();
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
        let e =
            UplinkSecurity::load(ClientKeys::uplink(&c), false, "mqtt://x:1", &env).unwrap_err();
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
            let e = UplinkSecurity::load(ClientKeys::uplink(&c), false, "mqtt://x:1", &env)
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
        let e = UplinkSecurity::load(ClientKeys::uplink(&cfg()), true, "mqtts://x:8883", &|_| {
            None
        })
        .unwrap_err();
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
