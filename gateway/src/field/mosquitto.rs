//! `citygate broker-config`: mosquitto's files from `[broker]`, so that an external mosquitto
//! enforces the same field rules as the embedded gate: an ACL file (one `user` block per
//! `[[broker.devices]]` entry, and one for the gateway with every topic) and a configuration
//! fragment that turns anonymous access off and points at the password and ACL files.
//! Pure text; the command writes it where it is told.

use std::path::Path;

use crate::config::DeviceAclConfig;

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
