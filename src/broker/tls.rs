//! TLS settings shared by the MQTT and NATS clients: the CA bundle (the file named by
//! `tls-ca-file`, else the system's), the optional client certificate, and
//! `tls-insecure` (no verification of the broker's certificate, for test brokers only).

use super::{read_pem, Config};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::path::Path;
use std::sync::Arc;

/// Debian's bundle of the system's trusted CAs (package ca-certificates).
pub const SYSTEM_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The PEM bytes of the CAs that verify the broker: `tls-ca-file`, else the system bundle.
pub fn ca_pem(config: &Config) -> Result<Vec<u8>, String> {
    match &config.credentials.tls_ca_file {
        Some(p) => read_pem(p, "TLS CA file"),
        None => read_pem(Path::new(SYSTEM_CA_FILE), "system CA bundle (set tls-ca-file)"),
    }
}

/// PEM bytes of a client certificate chain and its key.
pub type ClientAuthPem = (Vec<u8>, Vec<u8>);

/// The client certificate chain and key, when both files are set.
pub fn client_auth_pem(config: &Config) -> Result<Option<ClientAuthPem>, String> {
    let c = &config.credentials;
    match (&c.tls_cert_file, &c.tls_key_file) {
        (Some(cert), Some(key)) => Ok(Some((
            read_pem(cert, "TLS client certificate")?,
            read_pem(key, "TLS client key")?,
        ))),
        (None, None) => Ok(None),
        _ => Err("a TLS client certificate needs both tls-cert-file and tls-key-file".into()),
    }
}

/// A rustls configuration that accepts any broker certificate (`tls-insecure`), with the
/// client certificate when one is configured. (*ring*: see `install_crypto_provider`.)
#[allow(deprecated)]
pub fn insecure_client_config(config: &Config) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("could not configure TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)));
    match client_auth_pem(config)? {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(&cert)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("the TLS client certificate is not PEM: {e}"))?;
            let key = PrivateKeyDer::from_pem_slice(&key)
                .map_err(|e| format!("the TLS client key is not a PEM private key: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("the TLS client certificate and key do not fit: {e}"))
        }
        None => Ok(builder.with_no_client_auth()),
    }
}

/// Accepts every server certificate; handshake signatures are still checked, so the
/// connection is encrypted, only the broker's identity is not verified.
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
