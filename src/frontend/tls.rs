//! TLS for client connections: vtgate's `--mysql_server_ssl_*` flags.
//!
//! A client that sees CLIENT_SSL in the greeting may answer with a short
//! SSL request and then speak TLS on the same socket; the handshake
//! response and every command after it come encrypted. The frontend asks
//! this module for the server side of that TLS session. The configuration
//! (certificate chain, key, the CA that client certificates must chain to,
//! its revocation list) is read from files at start and again on SIGHUP,
//! as vtgate does, so certificates can be rotated without dropping the
//! clients already connected: each new connection takes the configuration
//! current when it arrives.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::rustls;

/// The files and choices behind the TLS configuration, as the flags name
/// them; kept so that a reload reads the same files again.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// `--mysql_server_ssl_cert`: the server's certificate chain (PEM).
    pub cert: PathBuf,
    /// `--mysql_server_ssl_key`: its private key (PEM).
    pub key: PathBuf,
    /// `--mysql_server_ssl_ca`: when set, every TLS client must present a
    /// certificate that chains to one of these.
    pub ca: Option<PathBuf>,
    /// `--mysql_server_ssl_crl`: client certificates revoked (with `ca`).
    pub crl: Option<PathBuf>,
    /// `--mysql_server_ssl_server_ca`: certificates appended to the
    /// server's chain, for clients that trust only the root.
    pub server_ca: Option<PathBuf>,
    /// `--mysql_server_tls_min_version` (TLSv1.0 … TLSv1.3).
    pub min_version: Option<String>,
}

/// Errors building the TLS configuration: each names the file or flag at
/// fault, since they surface at start or in the log after a SIGHUP.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no PEM object of the kind asked.
    #[error("{}: {msg}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        msg: String,
    },
    /// `--mysql_server_tls_min_version` names no TLS version.
    #[error("--mysql_server_tls_min_version {0}: expected TLSv1.0, TLSv1.1, TLSv1.2 or TLSv1.3")]
    MinVersion(String),
    /// A revocation list without a CA to check client certificates against.
    #[error("--mysql_server_ssl_crl needs --mysql_server_ssl_ca")]
    CrlWithoutCa,
    /// The certificates and key do not make a configuration (a key that is
    /// not the certificate's, a CA that is not a certificate authority).
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// How TLS connections went, for `/debug/vars` and `/metrics`.
#[derive(Debug, Default)]
pub struct TlsStats {
    /// TLS handshakes completed.
    pub accepted: AtomicU64,
    /// TLS handshakes that failed (bad client certificate, no common
    /// version, a client that went away).
    pub failed: AtomicU64,
    /// Clients refused because they did not ask for TLS while
    /// `--mysql_server_require_secure_transport` is on.
    pub refused_plain: AtomicU64,
    /// Configurations reloaded on SIGHUP.
    pub reloads: AtomicU64,
}

/// The server side of client TLS: the current configuration, swapped
/// whole on reload.
pub struct Tls {
    files: TlsFiles,
    config: ArcSwap<rustls::ServerConfig>,
    /// `--mysql_server_require_secure_transport`: TCP clients that do not
    /// ask for TLS are refused (a Unix socket counts as secure, as in MySQL).
    pub require: bool,
    /// Counters.
    pub stats: TlsStats,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("files", &self.files)
            .field("require", &self.require)
            .finish()
    }
}

impl Tls {
    /// Reads the files and builds the configuration; an error names what
    /// to fix, so that the server does not start half-secured.
    pub fn load(files: TlsFiles, require: bool) -> Result<Tls, TlsError> {
        let config = build(&files)?;
        Ok(Tls {
            files,
            config: ArcSwap::from_pointee(config),
            require,
            stats: TlsStats::default(),
        })
    }

    /// Reads the files again (SIGHUP): connections from now on get the new
    /// configuration; on error the old one stays and the error is returned.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = build(&self.files)?;
        self.config.store(Arc::new(config));
        self.stats.reloads.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The common name of the certificate the client presented, if any.
    pub(crate) fn peer_common_name<IO>(
        stream: &tokio_rustls::server::TlsStream<IO>,
    ) -> Option<String> {
        let certs = stream.get_ref().1.peer_certificates()?;
        subject_common_name(certs.first()?.as_ref())
    }

    /// Runs the server side of a TLS handshake over `io`, counting it.
    pub(crate) async fn accept<IO>(
        &self,
        io: IO,
    ) -> std::io::Result<tokio_rustls::server::TlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config.load_full());
        let done = acceptor.accept(io).await;
        let counter = match &done {
            Ok(_) => &self.stats.accepted,
            Err(_) => &self.stats.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        done
    }
}

static TLS13_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// The protocol versions `--mysql_server_tls_min_version` allows. rustls
/// speaks TLS 1.2 and 1.3 only, so the older minimums vtgate accepts mean
/// TLS 1.2 here (no client that can speak only 1.0 or 1.1 is served).
fn versions(
    min: Option<&str>,
) -> Result<&'static [&'static rustls::SupportedProtocolVersion], TlsError> {
    match min.unwrap_or("") {
        "" | "TLSv1.0" | "TLSv1.1" | "TLSv1.2" => Ok(rustls::ALL_VERSIONS),
        "TLSv1.3" => Ok(TLS13_ONLY),
        other => Err(TlsError::MinVersion(other.to_string())),
    }
}

fn file_error(path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        msg: e.to_string(),
    }
}

/// Every certificate in a PEM file; at least one.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no CERTIFICATE in the file"));
    }
    Ok(certs)
}

fn build(files: &TlsFiles) -> Result<rustls::ServerConfig, TlsError> {
    // ring, not aws-lc-rs: no C toolchain build (FACTS). rustls deprecates
    // it for lacking post-quantum key exchange, which no MySQL client asks
    // for today.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions(files.min_version.as_deref())?)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &files.ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certificates(ca)? {
                roots.add(cert).map_err(|e| file_error(ca, e))?;
            }
            let mut crls = Vec::new();
            if let Some(crl) = &files.crl {
                crls = CertificateRevocationListDer::pem_file_iter(crl)
                    .map_err(|e| file_error(crl, e))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| file_error(crl, e))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .with_crls(crls)
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None if files.crl.is_some() => return Err(TlsError::CrlWithoutCa),
        None => builder.with_no_client_auth(),
    };
    let mut chain = certificates(&files.cert)?;
    if let Some(server_ca) = &files.server_ca {
        chain.extend(certificates(server_ca)?);
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| file_error(&files.key, e))?;
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    // MySQL clients speak no ALPN; nothing to offer. Session tickets and
    // the default resumption cache stay as rustls sets them.
    config.alpn_protocols.clear();
    Ok(config)
}

/// The common name (CN) of a DER certificate's subject, for vtgate's
/// `clientcert` authentication: Certificate → tbsCertificate → (version),
/// serial, signature, issuer, validity, subject → the last CN in it.
/// None for anything that does not read so.
pub fn subject_common_name(der: &[u8]) -> Option<String> {
    let (cert, _) = tlv(der, 0x30)?;
    let (tbs, _) = tlv(cert, 0x30)?;
    let mut rest = tbs;
    // The explicit [0] version, when present.
    if rest.first() == Some(&0xA0) {
        rest = tlv(rest, 0xA0)?.1;
    }
    for tag in [0x02, 0x30, 0x30, 0x30] {
        rest = tlv(rest, tag)?.1; // serial, signature, issuer, validity
    }
    let (mut subject, _) = tlv(rest, 0x30)?;
    let mut cn = None;
    while !subject.is_empty() {
        let (set, after) = tlv(subject, 0x31)?;
        subject = after;
        let mut attrs = set;
        while !attrs.is_empty() {
            let (attr, after) = tlv(attrs, 0x30)?;
            attrs = after;
            let (oid, value) = tlv(attr, 0x06)?;
            // 2.5.4.3, commonName; its value a string of any kind.
            if oid == [0x55, 0x04, 0x03] {
                let (text, _) = any_tlv(value)?;
                cn = Some(String::from_utf8_lossy(text).into_owned());
            }
        }
    }
    cn
}

/// One DER element of tag `tag` at the start of `b`: (its content, what
/// follows it).
fn tlv(b: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    if *b.first()? != tag {
        return None;
    }
    any_tlv(b)
}

/// One DER element of whatever tag: (its content, what follows it).
fn any_tlv(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let first = *b.get(1)?;
    let (len, head) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7F) as usize;
        if n == 0 || n > 4 {
            return None;
        }
        let len = b
            .get(2..2 + n)?
            .iter()
            .fold(0usize, |acc, &x| (acc << 8) | x as usize);
        (len, 2 + n)
    };
    let end = head.checked_add(len)?;
    Some((b.get(head..end)?, &b[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DER element of `tag` around `content`.
    fn der(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if content.len() < 0x80 {
            out.push(content.len() as u8);
        } else {
            out.push(0x82);
            out.extend((content.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(content);
        out
    }

    fn name(cn: &str) -> Vec<u8> {
        let o = der(
            0x30,
            &[der(0x06, &[0x55, 0x04, 0x0A]), der(0x0C, b"Org")].concat(),
        );
        let c = der(
            0x30,
            &[der(0x06, &[0x55, 0x04, 0x03]), der(0x0C, cn.as_bytes())].concat(),
        );
        der(0x30, &[der(0x31, &o), der(0x31, &c)].concat())
    }

    #[test]
    fn a_certificates_subject_common_name_is_read() {
        let tbs = [
            der(0xA0, &der(0x02, &[2])),
            der(0x02, &[1, 2, 3]),
            der(0x30, &der(0x06, &[0x2A])),
            name("the-issuer"),
            der(
                0x30,
                &[der(0x17, b"250101000000Z"), der(0x17, b"260101000000Z")].concat(),
            ),
            name(&"a".repeat(200)),
            der(0x30, &[0; 10]),
        ]
        .concat();
        let cert = der(0x30, &[der(0x30, &tbs), der(0x30, &[0x05, 0x00])].concat());
        assert_eq!(subject_common_name(&cert), Some("a".repeat(200)));
        // Without the version, and truncated.
        let tbs_v1 = [&tbs[5..]].concat();
        let cert = der(0x30, &der(0x30, &tbs_v1));
        assert_eq!(subject_common_name(&cert), Some("a".repeat(200)));
        assert_eq!(subject_common_name(&cert[..40]), None);
        assert_eq!(subject_common_name(b"not a certificate"), None);
    }

    #[test]
    fn minimum_versions_are_vtgates_names() {
        assert_eq!(versions(None).unwrap().len(), 2);
        assert_eq!(versions(Some("TLSv1.0")).unwrap().len(), 2);
        assert_eq!(versions(Some("TLSv1.2")).unwrap().len(), 2);
        let only13 = versions(Some("TLSv1.3")).unwrap();
        assert_eq!(only13.len(), 1);
        assert_eq!(only13[0].version, rustls::ProtocolVersion::TLSv1_3);
        let e = versions(Some("tls1.3")).unwrap_err().to_string();
        assert!(e.contains("TLSv1.3") && e.contains("tls1.3"), "{e}");
    }

    #[test]
    fn missing_and_empty_files_are_named() {
        let dir = std::env::temp_dir().join(format!("sg-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a pem file\n").unwrap();
        let files = TlsFiles {
            cert: empty.clone(),
            key: dir.join("missing.key"),
            ..TlsFiles::default()
        };
        let e = Tls::load(files.clone(), false).unwrap_err().to_string();
        assert!(
            e.contains("empty.pem") && e.contains("no CERTIFICATE"),
            "{e}"
        );
        let e = Tls::load(
            TlsFiles {
                crl: Some(empty.clone()),
                ..files.clone()
            },
            false,
        )
        .unwrap_err();
        assert!(matches!(e, TlsError::CrlWithoutCa), "{e}");
        let e = Tls::load(
            TlsFiles {
                ca: Some(dir.join("no-such-ca.pem")),
                ..files
            },
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("no-such-ca.pem"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
