//! Reading PEM certificate chains and private keys, for validation (`weir check` reports a
//! bad file at its config key) and for the server, which loads them the same way.

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Every certificate in a PEM file, in order.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("`{}` is not a valid PEM file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("`{}` holds no CERTIFICATE block", path.display()));
    }
    Ok(certs)
}

/// The private key in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls_pki_types::pem::Error::Io(io) => format!("cannot read `{}`: {io}", path.display()),
        rustls_pki_types::pem::Error::NoItemsFound => {
            format!("`{}` holds no PRIVATE KEY block", path.display())
        }
        other => format!("`{}` is not a valid PEM key file: {other}", path.display()),
    })
}

pub(crate) fn check_certs(path: &Path) -> Result<(), String> {
    load_certs(path).map(|_| ())
}

pub(crate) fn check_key(path: &Path) -> Result<(), String> {
    load_key(path).map(|_| ())
}
