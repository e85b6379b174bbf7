//! TLS to upstreams: verification against the system's roots or a configured CA, an SNI
//! override, a client certificate for upstream mTLS, and an explicit opt-out of verification
//! (`insecure_skip_verify`, warned about at start).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_rustls::TlsConnector;
use weir_config::{UpstreamProtocol, UpstreamTls};

use crate::pool::TlsTo;

/// Builds the connector for an upstream's TLS settings.
pub(crate) fn connector(
    name: &str,
    cfg: &UpstreamTls,
    protocol: UpstreamProtocol,
) -> Result<TlsTo, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if cfg.insecure_skip_verify {
        tracing::warn!(upstream = %name, "tls.insecure_skip_verify is on: upstream certificates are NOT verified");
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
    } else {
        let mut roots = RootCertStore::empty();
        match &cfg.ca {
            Some(ca) => {
                for cert in weir_config::pem::load_certs(ca)? {
                    roots.add(cert).map_err(|e| format!("tls.ca: {e}"))?;
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs();
                for cert in native.certs {
                    // A few system roots rustls cannot parse are skipped, as browsers do.
                    let _ = roots.add(cert);
                }
                if roots.is_empty() {
                    return Err("no system root certificates found; set tls.ca".to_owned());
                }
            }
        }
        builder.with_root_certificates(roots)
    };
    let mut config = match (&cfg.client_cert, &cfg.client_key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(
                weir_config::pem::load_certs(cert)?,
                weir_config::pem::load_key(key)?,
            )
            .map_err(|e| format!("tls.client_cert: {e}"))?,
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = match protocol {
        UpstreamProtocol::H2 => vec![b"h2".to_vec()],
        _ => vec![b"http/1.1".to_vec()],
    };
    let sni = cfg
        .sni
        .as_deref()
        .map(|s| ServerName::try_from(s.to_owned()).map_err(|e| format!("tls.sni: {e}")))
        .transpose()?;
    Ok(TlsTo {
        connector: TlsConnector::from(Arc::new(config)),
        sni,
    })
}

/// Accepts any certificate but still checks handshake signatures (so the session is at least
/// bound to the key the server presented).
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
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
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
