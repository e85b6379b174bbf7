//! Per-request text without `core::fmt`: IPv4 addresses and small numbers written directly.
//! `Ipv4Addr`'s `Display` (which supports padding) and `format!` showed up at over 2% of a
//! request's CPU in profiles of the access log and forwarding headers.

use std::net::IpAddr;

/// Every two-digit number's digits, `00` to `99`.
const PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// The decimal digits of `n`, written into the end of `buf`, two at a time (half the
/// divisions of one at a time; an access-log line writes a dozen numbers).
pub fn u64_digits(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    while n >= 100 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if n >= 10 {
        let pair = n as usize * 2;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    } else {
        i -= 1;
        buf[i] = b'0' + n as u8;
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
    fn digits_match_display() {
        let mut buf = [0u8; 20];
        let mut n = 1u64;
        let mut values = vec![
            0,
            9,
            10,
            11,
            99,
            100,
            101,
            999,
            1000,
            1001,
            u64::MAX,
            u64::MAX - 1,
        ];
        while let Some(next) = n.checked_mul(7) {
            values.extend([n - 1, n, n + 1]);
            n = next + 3;
        }
        values.extend((0..10_000).map(|i| i * 37));
        for v in values {
            assert_eq!(u64_digits(v, &mut buf), v.to_string().as_bytes(), "{v}");
        }
    }

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
