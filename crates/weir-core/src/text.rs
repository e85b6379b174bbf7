//! Per-request text without `core::fmt`: IPv4 addresses and small numbers written directly.
//! `Ipv4Addr`'s `Display` (which supports padding) and `format!` showed up at over 2% of a
//! request's CPU in profiles of the access log and forwarding headers.

use std::net::IpAddr;

/// The decimal digits of `n`, written into the end of `buf`.
pub fn u64_digits(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Appends `n` in decimal.
pub fn push_u64(out: &mut String, n: u64) {
    let mut buf = [0u8; 20];
    for &b in u64_digits(n, &mut buf) {
        out.push(char::from(b));
    }
}

/// Appends `n` in decimal, zero-padded to `width` digits.
pub fn push_padded(out: &mut String, n: u64, width: usize) {
    let mut buf = [0u8; 20];
    let digits = u64_digits(n, &mut buf);
    for _ in digits.len()..width {
        out.push('0');
    }
    for &b in digits {
        out.push(char::from(b));
    }
}

/// Appends an address as `Display` writes it (IPv4 fast; IPv6 through `Display`).
pub fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_u64(out, u64::from(octet));
            }
        }
        IpAddr::V6(v6) => {
            use std::fmt::Write;
            let _ = write!(out, "{v6}");
        }
    }
}

/// An address as text.
pub fn ip_string(ip: IpAddr) -> String {
    let mut s = String::with_capacity(15);
    push_ip(&mut s, ip);
    s
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) of a Unix time.
pub fn civil_second(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_display() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "255.255.255.255",
            "10.20.3.199",
            "::1",
            "fe80::1:2",
        ] {
            let ip: IpAddr = ip.parse().expect("ip");
            assert_eq!(ip_string(ip), ip.to_string());
        }
        let mut s = String::new();
        push_u64(&mut s, u64::MAX);
        assert_eq!(s, u64::MAX.to_string());
        let mut s = String::new();
        push_padded(&mut s, 7, 3);
        push_padded(&mut s, 1234, 2);
        assert_eq!(s, "0071234");
    }
}
