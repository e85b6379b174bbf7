//! The access log's template syntax: text with `$name` / `${name}` fields and `$$` for a literal
//! `$`. Parsed here, once, so `weir check` and the running log agree on what is valid.

/// Every field an access-log template may name (the JSON log's keys).
pub const ACCESS_LOG_FIELDS: &[&str] = &[
    "ts",
    "request_id",
    "trace_id",
    "span_id",
    "listener",
    "client_ip",
    "proto",
    "method",
    "host",
    "path",
    "query",
    "status",
    "bytes_in",
    "bytes_out",
    "duration_ms",
    "route",
    "upstream",
    "endpoint",
    "upstream_connect_ms",
    "upstream_first_byte_ms",
    "tries",
    "forward",
    "denied_by",
    "consumer",
    "idempotency",
    "compression",
    "cache",
    "error",
    "completed",
];

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogSegment {
    /// Literal text.
    Text(String),
    /// A field, by name (one of [`ACCESS_LOG_FIELDS`]).
    Field(&'static str),
}

/// Parses a template; an error carries the byte offset of the problem and what it is.
pub fn parse_log_format(template: &str) -> Result<Vec<LogSegment>, (usize, String)> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut rest = template.char_indices().peekable();
    while let Some((at, c)) = rest.next() {
        if c != '$' {
            text.push(c);
            continue;
        }
        let braced = match rest.peek() {
            Some((_, '$')) => {
                rest.next();
                text.push('$');
                continue;
            }
            Some((_, '{')) => {
                rest.next();
                true
            }
            _ => false,
        };
        let mut name = String::new();
        while let Some(&(_, n)) = rest.peek() {
            if n.is_ascii_alphanumeric() || n == '_' {
                name.push(n);
                rest.next();
            } else {
                break;
            }
        }
        if braced && rest.next().map(|(_, c)| c) != Some('}') {
            return Err((at, "`${` without a closing `}`".to_owned()));
        }
        if name.is_empty() {
            return Err((
                at,
                "`$` without a field name (write `$$` for a literal `$`)".to_owned(),
            ));
        }
        let Some(field) = ACCESS_LOG_FIELDS.iter().find(|f| **f == name) else {
            return Err((
                at,
                format!(
                    "unknown field `{name}`; fields: {}",
                    ACCESS_LOG_FIELDS.join(", ")
                ),
            ));
        };
        if !text.is_empty() {
            out.push(LogSegment::Text(std::mem::take(&mut text)));
        }
        out.push(LogSegment::Field(field));
    }
    if !text.is_empty() {
        out.push(LogSegment::Text(text));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_text_and_escapes() {
        let parsed = parse_log_format("$method ${path}?x $$5 [$status]").expect("valid");
        assert_eq!(
            parsed,
            vec![
                LogSegment::Field("method"),
                LogSegment::Text(" ".into()),
                LogSegment::Field("path"),
                LogSegment::Text("?x $5 [".into()),
                LogSegment::Field("status"),
                LogSegment::Text("]".into()),
            ]
        );
    }

    #[test]
    fn errors_point_at_the_dollar() {
        assert_eq!(parse_log_format("ok $nope").map_err(|e| e.0), Err(3));
        assert_eq!(parse_log_format("${path").map_err(|e| e.0), Err(0));
        assert_eq!(parse_log_format("a $ b").map_err(|e| e.0), Err(2));
    }
}
