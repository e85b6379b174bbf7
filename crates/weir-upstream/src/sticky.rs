//! Sticky sessions: Weir sets a cookie naming the endpoint that served the client, signed with
//! HMAC-SHA256 so a client cannot pick a backend of its choice; later requests carrying a
//! valid cookie go back to that endpoint while it is in service.
//!
//! Cookie value: `<endpoint id, 16 hex>.<first 16 bytes of the MAC, 32 hex>`. The endpoint id
//! is a hash of its address, so cookies survive reloads and reordering.

use std::time::Duration;

use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Issues and checks sticky cookies.
#[derive(Clone)]
pub struct StickyCookies {
    name: String,
    key: Vec<u8>,
    max_age: Option<Duration>,
}

impl std::fmt::Debug for StickyCookies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("StickyCookies")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl StickyCookies {
    /// From config; without a secret, a random 32-byte key made now.
    pub fn new(cfg: &weir_config::Sticky) -> Result<Self, getrandom::Error> {
        let key = match &cfg.secret {
            Some(s) => s.as_bytes().to_vec(),
            None => {
                let mut k = vec![0u8; 32];
                getrandom::fill(&mut k)?;
                k
            }
        };
        Ok(Self {
            name: cfg.cookie.clone(),
            key,
            max_age: (!cfg.max_age.is_zero()).then(|| cfg.max_age.get()),
        })
    }

    fn mac(&self, id: u64) -> [u8; 16] {
        let mut out = [0u8; 16];
        if let Ok(mut mac) = HmacSha256::new_from_slice(&self.key) {
            mac.update(&id.to_be_bytes());
            let full = mac.finalize().into_bytes();
            out.copy_from_slice(&full[..16]);
        }
        out
    }

    /// The endpoint id a valid cookie in `headers` names.
    pub fn endpoint_id(&self, headers: &HeaderMap) -> Option<u64> {
        let value = crate::key::cookie(headers, &self.name)?;
        let (id_hex, mac_hex) = value.split_once('.')?;
        if id_hex.len() != 16 || mac_hex.len() != 32 {
            return None;
        }
        let id = u64::from_str_radix(id_hex, 16).ok()?;
        let mut given = [0u8; 16];
        for (i, b) in given.iter_mut().enumerate() {
            *b = u8::from_str_radix(mac_hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
        }
        let mut mac = HmacSha256::new_from_slice(&self.key).ok()?;
        mac.update(&id.to_be_bytes());
        // Constant-time comparison of the truncated tag.
        mac.verify_truncated_left(&given).ok()?;
        Some(id)
    }

    /// The `Set-Cookie` value naming endpoint `id`.
    pub fn set_cookie(&self, id: u64) -> Option<HeaderValue> {
        let mac: String = self.mac(id).iter().map(|b| format!("{b:02x}")).collect();
        let mut s = format!(
            "{}={id:016x}.{mac}; Path=/; HttpOnly; SameSite=Lax",
            self.name
        );
        if let Some(age) = self.max_age {
            s.push_str(&format!("; Max-Age={}", age.as_secs()));
        }
        HeaderValue::from_str(&s).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cookies(secret: &str) -> StickyCookies {
        StickyCookies::new(&weir_config::Sticky {
            cookie: "weir_sticky".into(),
            secret: Some(secret.into()),
            max_age: weir_config::Duration::default(),
        })
        .expect("key")
    }

    fn request_with(set_cookie: &HeaderValue) -> HeaderMap {
        let pair = set_cookie
            .to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .to_owned();
        let mut h = HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            HeaderValue::from_str(&format!("a=b; {pair}")).expect("ascii"),
        );
        h
    }

    #[test]
    fn round_trips_and_refuses_forgeries() {
        let c = cookies("0123456789abcdef0123");
        let set = c.set_cookie(42).expect("value");
        assert_eq!(c.endpoint_id(&request_with(&set)), Some(42));
        // Another key's cookie, or an edited id, is ignored.
        let other = cookies("fedcba9876543210fedc")
            .set_cookie(42)
            .expect("value");
        assert_eq!(c.endpoint_id(&request_with(&other)), None);
        let forged = HeaderValue::from_str(&set.to_str().unwrap_or("").replacen(
            "000000000000002a",
            "000000000000002b",
            1,
        ))
        .expect("ascii");
        assert_eq!(c.endpoint_id(&request_with(&forged)), None);
    }
}
