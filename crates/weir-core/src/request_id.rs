//! Request ids: taken from a well-formed incoming `X-Request-Id`, otherwise generated.

use http::HeaderValue;

/// The longest incoming request id that is accepted as is.
pub const MAX_INCOMING_LEN: usize = 200;

/// A fresh 32-hex-digit random id (128 bits), cheap enough to make for every request.
pub fn generate() -> HeaderValue {
    let mut buf = [0u8; 32];
    for (half, n) in buf
        .chunks_exact_mut(16)
        .zip([fastrand::u64(..), fastrand::u64(..)])
    {
        half.copy_from_slice(&hex16(n));
    }
    HeaderValue::from_bytes(&buf).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// `n` as 16 lowercase hex digits, eight at a time in a `u64` (`generate` went from 467 to
/// 420 instructions with this instead of a table lookup per digit; most of the rest is
/// `HeaderValue`'s check of the 32 bytes and their copy).
fn hex16(n: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&hex8((n >> 32) as u32));
    out[8..].copy_from_slice(&hex8(n as u32));
    out
}

/// `n` as 8 lowercase hex digits: each nibble spread into its own byte (the first digit in
/// the top byte), then `'0'` added to each, and `'a' - '0' - 10` more where the nibble is 10 or
/// above (adding 6 carries into the byte's bit 4 exactly then).
fn hex8(n: u32) -> [u8; 8] {
    let x = u64::from(n);
    let x = (x | (x << 16)) & 0x0000_FFFF_0000_FFFF;
    let x = (x | (x << 8)) & 0x00FF_00FF_00FF_00FF;
    let x = (x | (x << 4)) & 0x0F0F_0F0F_0F0F_0F0F;
    let letters = ((x + 0x0606_0606_0606_0606) & 0x1010_1010_1010_1010) >> 4;
    (x + 0x3030_3030_3030_3030 + letters * u64::from(b'a' - b'0' - 10)).to_be_bytes()
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
    fn hex_digits_match_format() {
        let mut n = 0x0123_4567_89ab_cdefu64;
        for v in [
            0,
            1,
            9,
            10,
            15,
            16,
            u64::MAX,
            0xa0b0_c0d0_e0f0_0f0e,
            0x9999_aaaa_ffff_0000,
        ] {
            assert_eq!(hex16(v), format!("{v:016x}").as_bytes(), "{v:x}");
        }
        for _ in 0..100_000 {
            assert_eq!(hex16(n), format!("{n:016x}").as_bytes(), "{n:x}");
            n = n
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
        }
    }

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
