//! Request ids: taken from a well-formed incoming `X-Request-Id`, otherwise generated.

use http::HeaderValue;

/// The longest incoming request id that is accepted as is.
pub const MAX_INCOMING_LEN: usize = 200;

/// A fresh 32-hex-digit random id (128 bits), cheap enough to make for every request.
pub fn generate() -> HeaderValue {
    let mut buf = [0u8; 32];
    crate::trace_context::hex_into(&fastrand::u128(..).to_be_bytes(), &mut buf);
    HeaderValue::from_bytes(&buf).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// The incoming id if it is short and made of safe visible characters, else a new one.
pub fn from_incoming(incoming: Option<&HeaderValue>) -> HeaderValue {
    match incoming {
        Some(v)
            if !v.is_empty()
                && v.len() <= MAX_INCOMING_LEN
                && v.as_bytes()
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(b)) =>
        {
            v.clone()
        }
        _ => generate(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_unique_hex() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.as_bytes().iter().all(u8::is_ascii_hexdigit));
    }

    #[test]
    fn incoming_ids_are_kept_only_when_safe() {
        let ok = HeaderValue::from_static("abc-123");
        assert_eq!(from_incoming(Some(&ok)), ok);
        let bad = HeaderValue::from_static("a b\"c");
        assert_ne!(from_incoming(Some(&bad)), bad);
    }
}
