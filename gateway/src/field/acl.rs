//! Topic ACLs of field clients: who a connection is ([`Identity`]) and whether it may publish
//! on a topic or subscribe to a filter. Pure: the gate (`field::gate`) asks, and counts and
//! logs the refusals.
//!
//! A device may publish only on topics matched by one of its `publish` filters, and subscribe
//! only to filters covered by one of its `subscribe` filters (a requested filter is covered
//! when every topic it can match is matched by the allowed one). A publish topic with a
//! wildcard or a `$` topic is refused to every device. Anonymous clients (loopback only, see
//! `config::anonymous_on`) and the gateway's own clients have no topic restriction, but no
//! client may use a topic or filter whose first character is not ASCII: rumqttd 0.20's router
//! slices such a topic inside its first character and panics, which stops the whole broker
//! (found by `tests/tests/fuzz.rs`).

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::DeviceAclConfig;
use crate::mqtt::filter_matches;

/// Who sent a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A device that logged in with its user name.
    Device(String),
    /// A client without credentials on a loopback listener.
    Anonymous,
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::Device(u) => write!(f, "device `{u}`"),
            Identity::Anonymous => f.write_str("anonymous client"),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Rules {
    publish: Vec<String>,
    subscribe: Vec<String>,
}

/// The ACL of every configured device.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    devices: Arc<HashMap<String, Rules>>,
}

impl Acl {
    pub fn new(devices: &[DeviceAclConfig]) -> Acl {
        let map = devices
            .iter()
            .map(|d| {
                (
                    d.user.clone(),
                    Rules {
                        publish: d.publish.clone(),
                        subscribe: d.subscribe.clone(),
                    },
                )
            })
            .collect();
        Acl {
            devices: Arc::new(map),
        }
    }

    /// Whether `who` may publish on `topic`.
    pub fn may_publish(&self, who: &Identity, topic: &str) -> bool {
        if !rumqttd_safe(topic) || topic.contains(['+', '#', '\0']) {
            return false;
        }
        match who {
            Identity::Anonymous => true,
            Identity::Device(u) => {
                !topic.starts_with('$')
                    && self
                        .devices
                        .get(u)
                        .is_some_and(|r| r.publish.iter().any(|f| filter_matches(f, topic)))
            }
        }
    }

    /// Whether `who` may subscribe to `filter`.
    pub fn may_subscribe(&self, who: &Identity, filter: &str) -> bool {
        if !rumqttd_safe(filter) || crate::config::check_topic_filter(filter).is_err() {
            return false;
        }
        match who {
            Identity::Anonymous => true,
            Identity::Device(u) => self
                .devices
                .get(u)
                .is_some_and(|r| r.subscribe.iter().any(|a| filter_covers(a, filter))),
        }
    }
}

/// Not empty, and the first character ASCII (see the module's comment).
fn rumqttd_safe(topic: &str) -> bool {
    topic.as_bytes().first().is_some_and(u8::is_ascii)
}

/// Whether every topic that `requested` can match is matched by `allowed`.
pub fn filter_covers(allowed: &str, requested: &str) -> bool {
    let mut req = requested.split('/');
    for a in allowed.split('/') {
        match (a, req.next()) {
            ("#", _) => return true,
            // `+` covers one level of anything but a multi-level wildcard
            ("+", Some(r)) if r != "#" => {}
            (a, Some(r)) if a == r && a != "+" => {}
            _ => return false,
        }
    }
    req.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl() -> Acl {
        Acl::new(&[
            DeviceAclConfig {
                user: "gauge-1".into(),
                publish: vec!["hazard/gauge-1/+".into()],
                subscribe: vec![],
            },
            DeviceAclConfig {
                user: "sign-1".into(),
                publish: vec![],
                subscribe: vec!["actuators/sign-1/#".into()],
            },
        ])
    }

    fn dev(u: &str) -> Identity {
        Identity::Device(u.into())
    }

    #[test]
    fn a_device_publishes_only_on_its_own_topics() {
        let a = acl();
        assert!(a.may_publish(&dev("gauge-1"), "hazard/gauge-1/river"));
        assert!(!a.may_publish(&dev("gauge-1"), "hazard/gauge-2/river"));
        assert!(!a.may_publish(&dev("gauge-1"), "citygate/v1/gw-2/peer/outflow"));
        assert!(!a.may_publish(&dev("gauge-1"), "hazard/gauge-1/+"));
        assert!(!a.may_publish(&dev("sign-1"), "actuators/sign-1/text"));
        assert!(!a.may_publish(&dev("nobody"), "hazard/gauge-1/river"));
        assert!(a.may_publish(&Identity::Anonymous, "anything/at/all"));
        assert!(!a.may_publish(&Identity::Anonymous, "a/#"));
        assert!(!a.may_publish(&Identity::Anonymous, "Ѩ/x"));
        assert!(!a.may_subscribe(&Identity::Anonymous, "Ѩ/#"));
        assert!(a.may_publish(&Identity::Anonymous, "x/Ѩ"));
    }

    #[test]
    fn subscriptions_need_a_covering_filter() {
        let a = acl();
        assert!(!a.may_subscribe(&dev("gauge-1"), "hazard/gauge-1/river"));
        assert!(a.may_subscribe(&dev("sign-1"), "actuators/sign-1/#"));
        assert!(a.may_subscribe(&dev("sign-1"), "actuators/sign-1/+/x"));
        assert!(!a.may_subscribe(&dev("sign-1"), "actuators/#"));
        assert!(!a.may_subscribe(&dev("sign-1"), "actuators/+/text"));
        assert!(!a.may_subscribe(&dev("sign-1"), "#"));
        assert!(!a.may_subscribe(&dev("sign-1"), "actuators/sign-1/#/bad"));
    }

    #[test]
    fn covering_is_filter_inclusion() {
        assert!(filter_covers("a/+", "a/b"));
        assert!(filter_covers("a/+", "a/+"));
        assert!(!filter_covers("a/+", "a/#"));
        assert!(!filter_covers("a/b", "a/+"));
        assert!(filter_covers("a/#", "a/+/c/#"));
        assert!(filter_covers("#", "#"));
        assert!(!filter_covers("a/+", "a/b/c"));
        assert!(!filter_covers("a/b/c", "a/b"));
    }
}
