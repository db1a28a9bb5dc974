//! Test certificates made at run time with the `openssl` command line (Debian package
//! `openssl`, which tests/run.sh installs): a CA and leaf certificates it signs, valid for
//! `127.0.0.1` and `localhost`.

use std::path::Path;
use std::process::Command;

/// Runs `openssl args` in `dir`; a failure fails the test with openssl's message.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl (Debian package `openssl`)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA made in `dir` as `<name>.crt` / `<name>.key`.
pub fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

/// A leaf certificate `<name>.crt` / `<name>.key` signed by CA `ca`, for `usage`
/// (`serverAuth` or `clientAuth`).
pub fn make_leaf(dir: &Path, ca: &str, name: &str, usage: &str) {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    let ext = format!("{name}.ext");
    std::fs::write(
        dir.join(&ext),
        format!(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage={usage}\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
        ),
    )
    .expect("write the extensions file");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-extfile",
            &ext,
        ],
    );
}

/// Test keys only: lets a broker that dropped privileges (mosquitto started as root) read them.
pub fn readable_by_all(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let mode = if e.path().is_dir() { 0o755 } else { 0o644 };
        let _ = std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(mode));
    }
}

/// A CA `ca` and a server certificate `server` for 127.0.0.1 in `dir`, and `rogue`, another
/// CA, for refusals.
pub fn server_pki(dir: &Path) {
    make_ca(dir, "ca");
    make_leaf(dir, "ca", "server", "serverAuth");
    make_ca(dir, "rogue");
    readable_by_all(dir);
}
