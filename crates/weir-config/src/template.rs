//! Header-value templates of `headers` policies: text with `$name` / `${name}` variables and
//! `$$` for a literal `$`. Parsed once when the config loads.

/// A variable a template may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Var {
    /// The client address (after trusted proxies).
    ClientIp,
    /// The request id.
    RequestId,
    /// The matched route's name.
    Route,
    /// The consumer an identity policy recognised (empty when none).
    Consumer,
    /// The request's host.
    Host,
    /// The request method.
    Method,
    /// The request path.
    Path,
    /// A claim of the verified JWT (`${claim.sub}`).
    Claim(String),
}

/// A piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Literal text.
    Text(String),
    /// A variable.
    Var(Var),
}

const NAMES: &str = "client_ip, request_id, route, consumer, host, method, path, claim.NAME";

/// Parses a template; the error carries the byte offset and a message.
pub fn parse_template(s: &str) -> Result<Vec<Part>, (usize, String)> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            let next = s[i..].find('$').map_or(s.len(), |n| i + n);
            text.push_str(&s[i..next]);
            i = next;
            continue;
        }
        let start = i;
        i += 1;
        let name = match bytes.get(i) {
            Some(b'$') => {
                text.push('$');
                i += 1;
                continue;
            }
            Some(b'{') => {
                let end = s[i..]
                    .find('}')
                    .ok_or_else(|| (start, "`${` without a closing `}`".to_owned()))?;
                let name = &s[i + 1..i + end];
                i += end + 1;
                name
            }
            _ => {
                let len = s[i..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                    .unwrap_or(s.len() - i);
                let name = &s[i..i + len];
                i += len;
                name
            }
        };
        let var = match name {
            "client_ip" => Var::ClientIp,
            "request_id" => Var::RequestId,
            "route" => Var::Route,
            "consumer" => Var::Consumer,
            "host" => Var::Host,
            "method" => Var::Method,
            "path" => Var::Path,
            _ => match name.strip_prefix("claim.") {
                Some(c) if !c.is_empty() => Var::Claim(c.to_owned()),
                _ => return Err((start, format!("unknown variable `${name}`; known: {NAMES}"))),
            },
        };
        if !text.is_empty() {
            parts.push(Part::Text(std::mem::take(&mut text)));
        }
        parts.push(Part::Var(var));
    }
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        assert_eq!(
            parse_template("ip=$client_ip; sub=${claim.sub} $$").expect("valid"),
            vec![
                Part::Text("ip=".into()),
                Part::Var(Var::ClientIp),
                Part::Text("; sub=".into()),
                Part::Var(Var::Claim("sub".into())),
                Part::Text(" $".into()),
            ]
        );
        assert_eq!(parse_template("$nope").map_err(|e| e.0), Err(0));
        assert!(parse_template("a ${route").is_err());
    }
}
