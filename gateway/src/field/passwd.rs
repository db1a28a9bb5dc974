//! Device passwords: the mosquitto password file format, so that one file made with
//! `mosquitto_passwd` serves the embedded gate and an external mosquitto alike.
//!
//! Each line is `user:$7$<iterations>$<base64 salt>$<base64 hash>`: PBKDF2-HMAC-SHA512 of the
//! password with the salt, as mosquitto 2 writes it. Blank lines and `#` comments are skipped.
//! Any other form (plain text, mosquitto's older `$6$` single SHA-512) is an error naming the
//! file and line, never the line's content. Verification runs in constant time
//! (`ring::pbkdf2::verify`), and an unknown user costs the same as a wrong password.
//!
//! [`Reloading`] re-reads the file when it changes (checked at most once a second, at a login),
//! so that a device is revoked by removing its line; a file that no longer parses is logged
//! and the previous one kept.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use ring::pbkdf2;

use base64::prelude::{Engine as _, BASE64_STANDARD};

const ALGORITHM: pbkdf2::Algorithm = pbkdf2::PBKDF2_HMAC_SHA512;
/// Iterations of the entries [`entry`] makes (mosquitto_passwd's default is 101).
pub const ITERATIONS: u32 = 10_000;
/// Most iterations accepted from a file: one login must not take seconds of CPU.
pub const MAX_ITERATIONS: u32 = 1_000_000;

/// A password file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PasswdError {
    #[error("broker.password_file: cannot read `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("broker.password_file: {path}:{line}: {reason}")]
    Line {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

#[derive(Clone)]
struct Entry {
    iterations: NonZeroU32,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

/// The users of a password file and their salted hashes.
#[derive(Clone, Default)]
pub struct Passwords {
    users: HashMap<String, Entry>,
    /// Compared with when the user is unknown, so that timing does not tell users apart.
    dummy: Option<Entry>,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Passwords({} users)", self.users.len())
    }
}

impl Passwords {
    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<Passwords, PasswdError> {
        let text = std::fs::read_to_string(path).map_err(|source| PasswdError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Passwords::parse(&text, path)
    }

    /// Parses the text of a password file; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Passwords, PasswdError> {
        let mut users = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |reason: &str| PasswdError::Line {
                path: path.to_path_buf(),
                line: i + 1,
                reason: reason.to_string(),
            };
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| err("expected `user:$7$...` (made by mosquitto_passwd)"))?;
            if user.is_empty() {
                return Err(err("the user name is empty"));
            }
            let entry = parse_hash(hash).map_err(|r| err(&format!("user `{user}`: {r}")))?;
            if users.insert(user.to_string(), entry).is_some() {
                return Err(err(&format!("user `{user}` is listed twice")));
            }
        }
        let dummy = users.values().next().cloned();
        Ok(Passwords { users, dummy })
    }

    pub fn contains(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether `password` is `user`'s. CPU-bound (PBKDF2): call it off the async threads.
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        match self.users.get(user) {
            Some(e) => check(e, password),
            None => {
                if let Some(d) = &self.dummy {
                    let _ = check(d, password);
                }
                false
            }
        }
    }
}

/// The password file as it is now: loaded at start, re-read when it changes.
#[derive(Debug)]
pub struct Reloading {
    path: Option<PathBuf>,
    state: Mutex<ReloadState>,
}

#[derive(Debug)]
struct ReloadState {
    passwords: Arc<Passwords>,
    /// Modification time and length of the file last read (or last found broken).
    seen: Option<(SystemTime, u64)>,
    checked: Instant,
}

/// How often a login looks at the file's modification time at most.
pub const RELOAD_CHECK: Duration = Duration::from_secs(1);

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl Reloading {
    /// Loads the file at `path` (none: no user can log in).
    pub fn new(path: Option<&Path>) -> Result<Reloading, PasswdError> {
        let (passwords, seen) = match path {
            Some(p) => (Passwords::load(p)?, stamp(p)),
            None => (Passwords::default(), None),
        };
        Ok(Reloading {
            path: path.map(Path::to_path_buf),
            state: Mutex::new(ReloadState {
                passwords: Arc::new(passwords),
                seen,
                checked: Instant::now(),
            }),
        })
    }

    /// The passwords now. Reads the file when it changed: blocking, call it off the async
    /// threads (with [`Passwords::verify`]).
    pub fn current(&self) -> Arc<Passwords> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(path) = &self.path {
            if s.checked.elapsed() >= RELOAD_CHECK {
                s.checked = Instant::now();
                let now = stamp(path);
                if now.is_some() && now != s.seen {
                    s.seen = now;
                    match Passwords::load(path) {
                        Ok(p) => {
                            tracing::info!(
                                "field gate: {} re-read: {} users",
                                path.display(),
                                p.len()
                            );
                            s.passwords = Arc::new(p);
                        }
                        Err(e) => tracing::error!("{e}; keeping the previous passwords"),
                    }
                }
            }
        }
        Arc::clone(&s.passwords)
    }
}

fn check(e: &Entry, password: &[u8]) -> bool {
    pbkdf2::verify(ALGORITHM, e.iterations, &e.salt, password, &e.hash).is_ok()
}

/// `$7$<iterations>$<salt>$<hash>`.
fn parse_hash(text: &str) -> Result<Entry, String> {
    let parts: Vec<&str> = text.split('$').collect();
    match parts.as_slice() {
        ["", "7", iterations, salt, hash] => {
            let iterations = iterations
                .parse::<u32>()
                .ok()
                .filter(|n| *n <= MAX_ITERATIONS)
                .and_then(NonZeroU32::new)
                .ok_or_else(|| format!("iterations must be 1 to {MAX_ITERATIONS}"))?;
            let salt = BASE64_STANDARD
                .decode(salt)
                .ok()
                .filter(|s| s.len() >= 8)
                .ok_or("the salt is not base64 of at least 8 bytes")?;
            let hash = BASE64_STANDARD
                .decode(hash)
                .ok()
                .filter(|h| h.len() == 64)
                .ok_or("the hash is not base64 of 64 bytes (PBKDF2-SHA512)")?;
            Ok(Entry {
                iterations,
                salt,
                hash,
            })
        }
        ["", "6", ..] => Err(
            "`$6$` (one round of SHA-512) is too weak; make the entry again with mosquitto 2's \
             mosquitto_passwd (`$7$`, PBKDF2)"
                .into(),
        ),
        _ => Err("not a `$7$` PBKDF2 hash (plain-text passwords are not accepted)".into()),
    }
}

/// One password file line for `user` with a fresh 12-byte salt, as mosquitto_passwd writes it.
pub fn entry(user: &str, password: &str, iterations: NonZeroU32) -> std::io::Result<String> {
    let salt = super::random_bytes::<12>()?;
    let mut hash = [0u8; 64];
    pbkdf2::derive(ALGORITHM, iterations, &salt, password.as_bytes(), &mut hash);
    Ok(format!(
        "{user}:$7${iterations}${}${}",
        BASE64_STANDARD.encode(salt),
        BASE64_STANDARD.encode(hash)
    ))
}

/// A device user name: what the password file, mosquitto's ACL file and rumqttd's client ids
/// can all hold.
pub fn valid_user(u: &str) -> bool {
    !u.is_empty()
        && u.len() <= 128
        && u.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'))
}

/// The text of a password file with `user`'s line replaced by `line`, or `line` appended.
pub fn with_entry(text: &str, user: &str, line: &str) -> String {
    let mut out = String::new();
    let mut replaced = false;
    for l in text.lines() {
        if l.split_once(':').is_some_and(|(u, _)| u == user) {
            if !replaced {
                out.push_str(line);
                out.push('\n');
                replaced = true;
            }
        } else {
            out.push_str(l);
            out.push('\n');
        }
    }
    if !replaced {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// `citygate passwd FILE USER`: sets `user`'s password in the file at `path` with
/// [`ITERATIONS`] (the file is created readable by its owner only).
pub fn set(path: &Path, user: &str, password: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if !valid_user(user) {
        return Err(format!(
            "user `{}` must be 1 to 128 letters, digits, `_`, `-`, `.` or `@`",
            user.escape_debug()
        ));
    }
    crate::secret::check_not_placeholder(password, true)
        .map_err(|e| format!("the password {e}"))?;
    let old = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let n = NonZeroU32::new(ITERATIONS).unwrap_or(NonZeroU32::MIN);
    let line = entry(user, password, n).map_err(|e| e.to_string())?;
    let text = with_entry(&old, user, &line);
    Passwords::parse(&text, path).map_err(|e| e.to_string())?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made by `mosquitto_passwd -b -c pw dev1 S3cret-pass` (mosquitto 2.0.11).
    const MOSQUITTO: &str = "dev1:$7$101$FWd8vx5noJmMqY+z$VMAOjJpmITovWKz28Bsi3ZeQpof0gIeKaAmaUr+N/5KHo3ucTeE09xdQHiIypMkFKu9vwvCPjdxAoriopru9uA==";

    fn p() -> &'static Path {
        Path::new("devices.passwd")
    }

    #[test]
    fn verifies_an_entry_mosquitto_passwd_made() {
        let pw = Passwords::parse(&format!("# devices\n\n{MOSQUITTO}\n"), p()).unwrap();
        assert!(pw.verify("dev1", b"S3cret-pass"));
        assert!(!pw.verify("dev1", b"S3cret-pasS"));
        assert!(!pw.verify("dev2", b"S3cret-pass"));
        assert_eq!(pw.len(), 1);
    }

    #[test]
    fn verifies_its_own_entries() {
        let n = NonZeroU32::new(1000).unwrap();
        let text = format!(
            "{}\n{}\n",
            entry("a", "pw-of-a-1", n).unwrap(),
            entry("b", "pw-of-b-2", n).unwrap()
        );
        let pw = Passwords::parse(&text, p()).unwrap();
        assert!(pw.verify("a", b"pw-of-a-1"));
        assert!(pw.verify("b", b"pw-of-b-2"));
        assert!(!pw.verify("a", b"pw-of-b-2"));
    }

    #[test]
    fn set_adds_and_replaces_entries_that_verify() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        set(&f, "a", "first-pass-1").unwrap();
        set(&f, "b", "second-pass-2").unwrap();
        set(&f, "a", "third-pass-3").unwrap();
        let pw = Passwords::load(&f).unwrap();
        assert_eq!(pw.len(), 2);
        assert!(pw.verify("a", b"third-pass-3"));
        assert!(!pw.verify("a", b"first-pass-1"));
        assert!(pw.verify("b", b"second-pass-2"));
        assert!(set(&f, "c", "changeme").unwrap_err().contains("password"));
        assert!(set(&f, "c d", "fourth-pass-4").is_err());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&f).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn bad_lines_are_named_by_line_without_their_content() {
        for (text, want) in [
            (
                "dev1:plaintext-secret\n",
                "devices.passwd:1: user `dev1`: not a `$7$`",
            ),
            ("\nnocolon\n", "devices.passwd:2: expected `user:$7$...`"),
            ("d:$6$abc$def\n", "`$6$` (one round of SHA-512) is too weak"),
            ("d:$7$0$FWd8vx5noJmMqY+z$AA==\n", "iterations must be"),
            ("d:$7$10$!!$AA==\n", "the salt is not base64"),
            (
                "d:$7$10$FWd8vx5noJmMqY+z$AAAA\n",
                "the hash is not base64 of 64 bytes",
            ),
            (":$7$1$a$b\n", "the user name is empty"),
        ] {
            let e = Passwords::parse(text, p()).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(
                e.starts_with("broker.password_file: devices.passwd:"),
                "{e}"
            );
            assert!(!e.contains("plaintext-secret"), "{e}");
        }
        let twice = format!("{MOSQUITTO}\n{MOSQUITTO}\n");
        let e = Passwords::parse(&twice, p()).unwrap_err().to_string();
        assert!(e.contains(":2: user `dev1` is listed twice"), "{e}");
    }
}
