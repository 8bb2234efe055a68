//! How a PostgreSQL connection is secured: libpq's `sslmode` and
//! `sslrootcert` URL parameters, carried out with rustls.
//!
//! | `sslmode`              | TLS                       | server certificate checked          |
//! |------------------------|---------------------------|-------------------------------------|
//! | `disable`              | never                     | –                                   |
//! | `allow`, `prefer` (default) | if the server offers it | no (with `sslrootcert`: chain) |
//! | `require`              | always                    | no (with `sslrootcert`: chain)      |
//! | `verify-ca`            | always                    | chain to `sslrootcert`              |
//! | `verify-full`          | always                    | chain to `sslrootcert`, and host name |
//!
//! As in libpq, `require` with a root certificate verifies the chain, and
//! the verifying modes read `~/.postgresql/root.crt` when the URL names no
//! `sslrootcert`; `sslrootcert=system` uses the system's trusted roots.
//! `allow` is treated as `prefer`: it never connects in clear when TLS is on offer.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// Where to connect and how to secure the connection.
pub(crate) struct PgTarget {
    pub(crate) config: tokio_postgres::Config,
    pub(crate) tls: MakeRustlsConnect,
}

/// The `sslmode` values, as libpq names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "disable" => Self::Disable,
            "allow" | "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(format!(
                    "sslmode={other} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                ));
            }
        })
    }
}

/// What the server's certificate is checked against.
enum Roots {
    /// Not checked: the connection is encrypted but the server unauthenticated.
    None,
    File(PathBuf),
    System,
}

/// Reads the connection settings from a `postgres://` URL, taking out the
/// TLS parameters tokio-postgres does not know (`sslmode=verify-*`,
/// `sslrootcert`).
///
/// # Errors
///
/// A message naming the bad parameter, or the root certificates that could not be read.
pub(crate) fn target(url: &str) -> Result<PgTarget, String> {
    target_with_home(url, std::env::var_os("HOME").map(PathBuf::from))
}

/// [`target`], with libpq's default root certificate looked for under `home`.
fn target_with_home(url: &str, home: Option<PathBuf>) -> Result<PgTarget, String> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut asked_mode = None;
    let mut root_cert = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        // Decoded as tokio-postgres decodes them, so `ssl%6dode` is `sslmode` here too.
        let decode = |text: &str| {
            percent_encoding::percent_decode_str(text)
                .decode_utf8()
                .map(|t| t.into_owned())
                // The text is not repeated: with an unencoded `&` or `=` in a
                // password, a "parameter" can be part of the password.
                .map_err(|_| "a URL parameter is not UTF-8 once percent-decoded".to_owned())
        };
        let (key, value) = (decode(key)?, decode(value)?);
        match key.as_str() {
            "sslmode" => asked_mode = Some(value.parse::<Mode>()?),
            "sslrootcert" => root_cert = Some(value),
            "sslcert" | "sslkey" | "sslpassword" => {
                return Err(format!(
                    "{key}: client certificates are not supported; authenticate with a password"
                ));
            }
            _ => kept.push(pair),
        }
    }
    // As in libpq 16: the system's roots trust any public certificate, so
    // they are only worth anything with the host name checked.
    let mode = match (asked_mode, root_cert.as_deref()) {
        (None | Some(Mode::VerifyFull), Some("system")) => Mode::VerifyFull,
        (Some(_), Some("system")) => {
            return Err(
                "sslrootcert=system needs sslmode=verify-full (the default with it): any public \
                 certificate chains to the system's roots, so only the host name makes it the server's"
                    .into(),
            );
        }
        (mode, _) => mode.unwrap_or(Mode::Prefer),
    };
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let mut config = tokio_postgres::Config::from_str(&url).map_err(|e| {
        // The driver's cause names an unknown parameter; with an unencoded
        // `&` or `=` in a password that name is part of the password, so it
        // is not repeated. Other causes name a known option only.
        let cause = std::error::Error::source(&e).map(ToString::to_string);
        match cause {
            Some(c) if c.contains("unknown option") => format!(
                "{e}: the URL has a parameter PostgreSQL does not know (its name is not shown: a \
                 password with an unencoded `&` or `=` splits into such parameters; percent-encode \
                 the password, or give it as ?password=…)"
            ),
            Some(c) => format!("{e}: {c}"),
            None => e.to_string(),
        }
    })?;
    config.ssl_mode(match mode {
        Mode::Disable => SslMode::Disable,
        Mode::Prefer => SslMode::Prefer,
        Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
    });
    let roots = match (mode, root_cert) {
        (Mode::Disable, _) => Roots::None,
        (_, Some(system)) if system == "system" => Roots::System,
        (_, Some(path)) => Roots::File(PathBuf::from(path)),
        (Mode::Prefer | Mode::Require, None) => Roots::None,
        (Mode::VerifyCa | Mode::VerifyFull, None) => match default_root_cert(home) {
            Some(path) => Roots::File(path),
            None => {
                return Err(format!(
                    "sslmode={} needs the server's CA certificate: add sslrootcert=PATH to the URL \
                     (or sslrootcert=system for the system's trusted roots)",
                    if mode == Mode::VerifyCa {
                        "verify-ca"
                    } else {
                        "verify-full"
                    }
                ));
            }
        },
    };
    let tls = connector(&roots, mode == Mode::VerifyFull)?;
    Ok(PgTarget { config, tls })
}

/// libpq's default root certificate file under `home`, if there is one.
fn default_root_cert(home: Option<PathBuf>) -> Option<PathBuf> {
    let path = home?.join(".postgresql/root.crt");
    path.exists().then_some(path)
}

fn connector(roots: &Roots, check_host_name: bool) -> Result<MakeRustlsConnect, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain = match roots {
        Roots::None => None,
        Roots::File(path) => Some(chain_verifier(load_roots(path)?, &provider)?),
        Roots::System => Some(chain_verifier(system_roots()?, &provider)?),
    };
    let verifier: Arc<dyn ServerCertVerifier> = match chain {
        Some(full) if check_host_name => full,
        chain => Arc::new(WithoutHostName {
            chain,
            algorithms: provider.signature_verification_algorithms,
        }),
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

fn chain_verifier(
    roots: RootCertStore,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, String> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
        .build()
        .map_err(|e| format!("TLS set-up: {e}"))
}

fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let shown = path.display();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("sslrootcert {shown}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("sslrootcert {shown}: {e}"))?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!(
            "sslrootcert {shown} holds no usable PEM certificate"
        ));
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        return Err("sslrootcert=system: the system has no trusted root certificates".into());
    }
    Ok(roots)
}

/// The check for the modes that ignore the host name: `verify-ca` (and
/// `require`/`prefer` with a root certificate) checks the chain only; without
/// a root, as in libpq, the certificate is not checked at all and the
/// connection is encrypted but the server unauthenticated. Either way the
/// handshake must be signed by the certificate's key.
#[derive(Debug)]
struct WithoutHostName {
    chain: Option<Arc<WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for WithoutHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        // The name is checked after the chain, so a name error means the chain is good.
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_taken_out_of_the_url() {
        let t = target("postgres://u@db.example/ledger?sslmode=require&connect_timeout=5").unwrap();
        assert_eq!(t.config.get_ssl_mode(), SslMode::Require);
        assert_eq!(
            t.config.get_connect_timeout(),
            Some(&std::time::Duration::from_secs(5))
        );
        assert_eq!(t.config.get_dbname(), Some("ledger"));

        let t = target("postgres://u@db.example/ledger").unwrap();
        assert_eq!(t.config.get_ssl_mode(), SslMode::Prefer);
        let t = target("postgres://u@db.example/ledger?sslmode=disable").unwrap();
        assert_eq!(t.config.get_ssl_mode(), SslMode::Disable);
    }

    #[test]
    fn bad_tls_parameters_are_named() {
        let err = target("postgres://u@h/db?sslmode=sometimes").err().unwrap();
        assert!(err.contains("sslmode=sometimes is not one of"), "{err}");

        let err = target("postgres://u@h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem")
            .err()
            .unwrap();
        assert!(err.contains("sslrootcert /nonexistent/ca.pem"), "{err}");

        let err = target("postgres://u@h/db?sslcert=/tmp/c.pem")
            .err()
            .unwrap();
        assert!(
            err.contains("client certificates are not supported"),
            "{err}"
        );

        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = target(&format!(
            "postgres://u@h/db?sslmode=verify-ca&sslrootcert={}",
            empty.display()
        ))
        .err()
        .unwrap();
        assert!(err.contains("holds no usable PEM certificate"), "{err}");
    }

    #[test]
    fn verifying_modes_need_a_root_certificate() {
        let home = tempfile::tempdir().unwrap();
        for mode in ["verify-ca", "verify-full"] {
            let url = format!("postgres://u@h/db?sslmode={mode}");
            let err = target_with_home(&url, Some(home.path().to_owned()))
                .err()
                .unwrap();
            assert!(err.contains("add sslrootcert=PATH"), "{err}");
        }
        // libpq's default file, when there is one, is used.
        let ca = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/unrelated-ca.pem"
        );
        std::fs::create_dir(home.path().join(".postgresql")).unwrap();
        std::fs::copy(ca, home.path().join(".postgresql/root.crt")).unwrap();
        let url = "postgres://u@h/db?sslmode=verify-full";
        assert!(target_with_home(url, Some(home.path().to_owned())).is_ok());
    }

    #[test]
    fn the_system_roots_go_only_with_the_host_name_checked() {
        let t = target("postgres://u@h/db?sslrootcert=system").unwrap();
        assert_eq!(t.config.get_ssl_mode(), SslMode::Require);
        assert!(target("postgres://u@h/db?sslmode=verify-full&sslrootcert=system").is_ok());
        for mode in ["prefer", "require", "verify-ca", "disable"] {
            let err = target(&format!(
                "postgres://u@h/db?sslmode={mode}&sslrootcert=system"
            ))
            .err()
            .unwrap();
            assert!(
                err.contains("sslrootcert=system needs sslmode=verify-full"),
                "{err}"
            );
        }
    }

    #[test]
    fn parameter_names_are_percent_decoded() {
        let t = target("postgres://u@h/db?ssl%6dode=require").unwrap();
        assert_eq!(t.config.get_ssl_mode(), SslMode::Require);
        let err = target("postgres://u@h/db?ssl%6dode=sometimes")
            .err()
            .unwrap();
        assert!(err.contains("sslmode=sometimes"), "{err}");
    }
}
