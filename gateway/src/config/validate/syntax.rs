//! The syntax of the configuration's small languages: MQTT broker URLs, topic filters,
//! sensor id templates (and their fit to a filter), JSON dot paths, quantity and environment
//! variable names. Pure parsers, shared by the checker and the runtime.

use super::MAX_TOPIC_LEN;

/// Whether `name` is an environment variable name as citygate accepts them for secrets:
/// upper-case letters, digits and `_`, not starting with a digit.
pub fn is_env_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_uppercase() || c == '_')
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// A broker address from `mqtt://host:port` or `mqtts://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttUrl {
    /// `true` for `mqtts://` (TLS).
    pub tls: bool,
    /// Host name or IP address, without the brackets of an IPv6 literal.
    pub host: String,
    pub port: u16,
}

/// Parses `mqtt://host:port` or `mqtts://host:port`. The port is required; a path, query or
/// user name is not allowed (credentials come from the environment, not from the URL).
pub fn parse_mqtt_url(url: &str) -> Result<MqttUrl, String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("mqtt://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("mqtts://") {
        (true, r)
    } else {
        return Err(format!(
            "`{url}` is not an MQTT URL: expected `mqtt://host:port` or `mqtts://host:port`"
        ));
    };
    if rest.contains(['/', '?', '#', '@']) {
        return Err(format!(
            "`{url}`: only `host:port` may follow the scheme (no path, query or user name)"
        ));
    }
    let (host, port) = if let Some(r) = rest.strip_prefix('[') {
        let (host, after) = r
            .split_once(']')
            .ok_or_else(|| format!("`{url}`: IPv6 address without a closing `]`"))?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("`{url}`: `{host}` is not an IPv6 address"));
        }
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| format!("`{url}`: missing `:port`"))?;
        (host, port)
    } else {
        rest.rsplit_once(':')
            .ok_or_else(|| format!("`{url}`: missing `:port`"))?
    };
    if host.is_empty() {
        return Err(format!("`{url}`: missing host"));
    }
    let valid_host_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == ':';
    if !host.chars().all(valid_host_char) {
        return Err(format!("`{url}`: `{host}` is not a valid host name"));
    }
    let port: u16 = match port.parse() {
        Ok(p) if p > 0 => p,
        _ => return Err(format!("`{url}`: port `{port}` is not in 1..=65535")),
    };
    Ok(MqttUrl {
        tls,
        host: host.to_string(),
        port,
    })
}

/// Checks an MQTT topic filter: not empty, `#` only as the whole last level, `+` only as a whole
/// level, no NUL character, at most 65535 bytes.
pub fn check_topic_filter(filter: &str) -> Result<(), String> {
    if filter.is_empty() {
        return Err("topic filter is empty".to_string());
    }
    if filter.len() > MAX_TOPIC_LEN {
        return Err(format!(
            "topic filter is {} bytes long, more than {MAX_TOPIC_LEN}",
            filter.len()
        ));
    }
    if filter.contains('\0') {
        return Err(format!(
            "topic filter `{}` contains a NUL character",
            filter.escape_debug()
        ));
    }
    let levels: Vec<&str> = filter.split('/').collect();
    let last = levels.len() - 1;
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i != last) {
            return Err(format!(
                "`#` must be a whole level and the last one in topic filter `{filter}` \
                 (level {})",
                i + 1
            ));
        }
        if level.contains('+') && *level != "+" {
            return Err(format!(
                "`+` must be a whole level in topic filter `{filter}` (level {} is `{level}`)",
                i + 1
            ));
        }
    }
    Ok(())
}

/// One piece of a sensor id template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    /// Text copied as written.
    Literal(String),
    /// `{N}`: the N-th level (1-based) of the received topic.
    Level(usize),
}

/// Parses a sensor id template such as `{1}/{2}` or `flood-{1}`. `{{` and `}}` stand for
/// literal braces.
pub fn parse_sensor_template(template: &str) -> Result<Vec<TemplatePart>, String> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                literal.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                literal.push('}');
            }
            '{' => {
                let mut digits = String::new();
                let mut closed = false;
                for d in chars.by_ref() {
                    if d == '}' {
                        closed = true;
                        break;
                    }
                    digits.push(d);
                }
                if !closed {
                    return Err(format!(
                        "`{{` without a closing `}}` in sensor template `{template}` \
                         (write `{{{{` for a literal brace)"
                    ));
                }
                let level = match digits.parse::<usize>() {
                    Ok(n) if n >= 1 && digits.chars().all(|c| c.is_ascii_digit()) => n,
                    _ => {
                        return Err(format!(
                            "`{{{digits}}}` in sensor template `{template}` is not a topic level: \
                             expected `{{1}}`, `{{2}}`, ..."
                        ))
                    }
                };
                if !literal.is_empty() {
                    parts.push(TemplatePart::Literal(std::mem::take(&mut literal)));
                }
                parts.push(TemplatePart::Level(level));
            }
            '}' => {
                return Err(format!(
                    "`}}` without an opening `{{` in sensor template `{template}` \
                     (write `}}}}` for a literal brace)"
                ))
            }
            _ => literal.push(c),
        }
    }
    if !literal.is_empty() {
        parts.push(TemplatePart::Literal(literal));
    }
    Ok(parts)
}

/// Checks that every `{N}` of `template` names a single level of `filter`: a `+` or a literal
/// level, not a `#` (which may span several levels) and not beyond the filter's last level.
pub(super) fn check_template_against_filter(template: &str, filter: &str) -> Result<(), String> {
    let levels: Vec<&str> = filter.split('/').collect();
    for part in parse_sensor_template(template)? {
        let TemplatePart::Level(n) = part else {
            continue;
        };
        match levels.get(n - 1) {
            None => {
                return Err(format!(
                    "`{{{n}}}` refers to topic level {n}, but topic filter `{filter}` has only {} \
                     level{}",
                    levels.len(),
                    if levels.len() == 1 { "" } else { "s" }
                ))
            }
            Some(&"#") => {
                return Err(format!(
                    "`{{{n}}}` refers to `#` in topic filter `{filter}`, which may match several \
                     levels; use `+`"
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Checks a JSON dot path such as `data.level`.
pub(super) fn check_dot_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("path is empty".to_string());
    }
    if path.split('.').any(str::is_empty) {
        return Err(format!(
            "`{path}` is not a dot path: expected names separated by single dots, e.g. `data.level`"
        ));
    }
    Ok(())
}

/// Whether `q` is a quantity name: lower-case letters, digits and `_`, starting with a letter.
pub(super) fn is_quantity_name(q: &str) -> bool {
    !q.is_empty()
        && q.starts_with(|c: char| c.is_ascii_lowercase())
        && q.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}
