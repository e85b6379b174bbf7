//! Certificates from PEM files: a chain and its key loaded, checked to match, and the names the
//! leaf is for — what the TLS listeners and the ACME manager load alike (a leaf: it imports
//! neither).

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;

/// A chain and its key from PEM files, checked to match, with the leaf's DNS names.
pub(crate) fn load_certified(
    cert: &std::path::Path,
    key: &std::path::Path,
    provider: &CryptoProvider,
) -> Result<(Arc<CertifiedKey>, Vec<String>), String> {
    let chain = weir_config::pem::load_certs(cert)?;
    let key_der = weir_config::pem::load_key(key)?;
    let signing = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| format!("`{}`: {e}", key.display()))?;
    let names = chain
        .first()
        .map(|leaf| dns_names(leaf))
        .unwrap_or_default();
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| {
        format!(
            "`{}` does not match `{}`: {e}",
            key.display(),
            cert.display()
        )
    })?;
    Ok((Arc::new(certified), names))
}

/// The DNS names a certificate is for: its subjectAltName DNS entries, else its common name.
pub(crate) fn dns_names(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let mut names: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_ascii_lowercase),
        );
    }
    names
}
