//! `citygate broker-config`: mosquitto's files from `[broker]`, so that an external mosquitto
//! enforces the same field rules as the embedded gate: an ACL file (one `user` block per
//! `[[broker.devices]]` entry, and one for the gateway with every topic) and a configuration
//! fragment that turns anonymous access off and points at the password and ACL files.
//! Pure text; the command writes it where it is told.

use std::path::{Path, PathBuf};

use crate::config::{BrokerConfig, Config, DeviceAclConfig};

/// The ACL file's name in the output folder.
pub const ACL_FILE: &str = "citygate.acl";
/// The configuration fragment's name in the output folder (`include_dir` it, or paste it).
pub const CONF_FILE: &str = "citygate.conf";

/// Writes [`ACL_FILE`] and [`CONF_FILE`] for the external `[broker]` of `cfg` into `out`.
/// The gateway's user name is read from the variable `[broker] username_env` names.
pub fn write(
    cfg: &Config,
    out: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<PathBuf>, String> {
    let BrokerConfig::External {
        username_env,
        password_file,
        devices,
        ..
    } = &cfg.broker
    else {
        return Err(
            "broker-config: [broker] mode is \"embedded\": the gateway enforces the \
                    field rules itself; broker-config writes them for an external mosquitto"
                .into(),
        );
    };
    let var = username_env.as_deref().ok_or(
        "broker-config: [broker] username_env is not set: the gateway needs its own user on \
         the broker",
    )?;
    let user = env(var).ok_or(format!(
        "broker-config: broker.username_env: environment variable `{var}` is not set"
    ))?;
    let password_file = password_file.as_deref().ok_or(
        "broker-config: [broker] password_file is not set: mosquitto needs the devices' \
         password file",
    )?;
    std::fs::create_dir_all(out).map_err(|e| format!("broker-config: {}: {e}", out.display()))?;
    let acl = out.join(ACL_FILE);
    let conf = out.join(CONF_FILE);
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    for (path, text) in [
        (&acl, acl_file(&user, devices)),
        (&conf, conf_fragment(&abs(password_file), &abs(&acl))),
    ] {
        std::fs::write(path, text)
            .map_err(|e| format!("broker-config: cannot write {}: {e}", path.display()))?;
    }
    Ok(vec![acl, conf])
}

/// The ACL file: `gateway_user` may read and write everything; each device may write its
/// `publish` filters and read its `subscribe` filters, nothing else (mosquitto denies what no
/// line allows).
pub fn acl_file(gateway_user: &str, devices: &[DeviceAclConfig]) -> String {
    let mut s = String::from("# Written by `citygate broker-config` from [broker]; do not edit.\n");
    s.push_str(&format!("\nuser {gateway_user}\ntopic readwrite #\n"));
    for d in devices {
        s.push_str(&format!("\nuser {}\n", d.user));
        for t in &d.publish {
            s.push_str(&format!("topic write {t}\n"));
        }
        for t in &d.subscribe {
            s.push_str(&format!("topic read {t}\n"));
        }
    }
    s
}

/// The mosquitto.conf fragment: no anonymous clients, the password file, the ACL file. The
/// listeners (and their TLS files) stay the operator's.
pub fn conf_fragment(password_file: &Path, acl_file: &Path) -> String {
    format!(
        "# Written by `citygate broker-config` from [broker]; do not edit.\n\
         per_listener_settings false\n\
         allow_anonymous false\n\
         password_file {}\n\
         acl_file {}\n",
        password_file.display(),
        acl_file.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_block_per_device_and_the_gateway_with_everything() {
        let devices = [DeviceAclConfig {
            user: "gauge-1".into(),
            publish: vec!["hazard/gauge-1/river".into()],
            subscribe: vec!["actuators/gauge-1/#".into()],
        }];
        assert_eq!(
            acl_file("gw-1", &devices),
            "# Written by `citygate broker-config` from [broker]; do not edit.\n\n\
             user gw-1\ntopic readwrite #\n\n\
             user gauge-1\ntopic write hazard/gauge-1/river\ntopic read actuators/gauge-1/#\n"
        );
        let c = conf_fragment(Path::new("/etc/pw"), Path::new("/etc/acl"));
        assert!(c.contains("allow_anonymous false\npassword_file /etc/pw\nacl_file /etc/acl\n"));
    }
}
