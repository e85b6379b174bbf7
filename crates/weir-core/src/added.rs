//! Fields the proxy adds to a request on its way upstream (`X-Forwarded-*`, `Forwarded`,
//! `Via`, `X-Request-Id`), kept beside the request's header map instead of inserted into it.
//!
//! Inserting a field into an `http::HeaderMap` hashes its name and probes the table (~300
//! instructions each for these names); six of them on every request were about 7 % of a small
//! proxied request. An HTTP/1.1 upstream gets them written after the request's own fields as
//! the head is encoded; an HTTP/2 upstream, a mirror's copy, or anything else that needs one
//! map gets them inserted ([`AddedFields::insert_into`]). The caller removes any field of the
//! same name from the map first, so a name is never sent twice.
//!
//! ```
//! use http::{HeaderMap, HeaderName, HeaderValue};
//! use weir_core::added::AddedFields;
//!
//! static VIA: HeaderName = http::header::VIA;
//! let mut added = AddedFields::new();
//! added.push(&VIA, HeaderValue::from_static("1.1 weir"));
//! assert_eq!(added.get("via").map(|v| v.as_bytes()), Some(&b"1.1 weir"[..]));
//! let mut map = HeaderMap::new();
//! added.insert_into(&mut map);
//! assert_eq!(map["via"], "1.1 weir");
//! ```

use http::{HeaderMap, HeaderName, HeaderValue};

/// None: for a request sent as it is.
pub static NO_FIELDS: AddedFields = AddedFields::new();

/// Up to [`AddedFields::CAPACITY`] fields, in the order they were pushed; no allocation.
#[derive(Clone, Debug)]
pub struct AddedFields {
    names: [Option<&'static HeaderName>; Self::CAPACITY],
    values: [HeaderValue; Self::CAPACITY],
    len: usize,
}

impl Default for AddedFields {
    fn default() -> Self {
        Self::new()
    }
}

impl AddedFields {
    /// As many as the proxy adds: `X-Forwarded-For`, `Forwarded`, `X-Forwarded-Proto`,
    /// `X-Forwarded-Host`, `Via`, `X-Request-Id`.
    pub const CAPACITY: usize = 6;

    pub const fn new() -> Self {
        Self {
            names: [None; Self::CAPACITY],
            values: [const { HeaderValue::from_static("") }; Self::CAPACITY],
            len: 0,
        }
    }

    /// Adds a field after those already here. Past the capacity (a bug in the caller) the
    /// field is not dropped: the caller's map keeps it instead (`Err` gives it back).
    pub fn push(
        &mut self,
        name: &'static HeaderName,
        value: HeaderValue,
    ) -> Result<(), (&'static HeaderName, HeaderValue)> {
        if self.len == Self::CAPACITY {
            return Err((name, value));
        }
        self.names[self.len] = Some(name);
        self.values[self.len] = value;
        self.len += 1;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The fields, in the order pushed.
    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        self.names[..self.len]
            .iter()
            .zip(&self.values[..self.len])
            .filter_map(|(n, v)| n.map(|n| (n, v)))
    }

    /// The value of field `name` (in any case), if it is one of these.
    pub fn get(&self, name: &str) -> Option<&HeaderValue> {
        self.iter()
            .find(|(n, _)| n.as_str().eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Puts the fields into `map`, each replacing any of its name there.
    pub fn insert_into(&self, map: &mut HeaderMap) {
        for (name, value) in self.iter() {
            map.insert(name, value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static A: HeaderName = HeaderName::from_static("x-a");
    static B: HeaderName = HeaderName::from_static("x-b");

    #[test]
    fn fields_keep_their_order_and_the_capacity_gives_back_the_overflow() {
        let mut added = AddedFields::new();
        assert!(added.is_empty());
        for i in 0..AddedFields::CAPACITY {
            let name = if i % 2 == 0 { &A } else { &B };
            let value = HeaderValue::from(i as u64);
            assert!(added.push(name, value).is_ok());
        }
        let over = added.push(&A, HeaderValue::from_static("over"));
        assert_eq!(
            over.map_err(|(n, v)| (n.as_str(), v)),
            Err(("x-a", "over".parse().expect("value")))
        );
        let seen: Vec<String> = added
            .iter()
            .map(|(n, v)| format!("{n}={}", v.to_str().unwrap_or("?")))
            .collect();
        assert_eq!(seen, ["x-a=0", "x-b=1", "x-a=2", "x-b=3", "x-a=4", "x-b=5"]);
        assert_eq!(added.get("X-B"), Some(&HeaderValue::from(1u64)));
        assert_eq!(added.get("x-c"), None);
        let mut map = HeaderMap::new();
        map.insert(&A, HeaderValue::from_static("client"));
        added.insert_into(&mut map);
        // Each insert replaces: the last pushed value of a name wins, the client's is gone.
        assert_eq!(map.get_all(&A).iter().count(), 1);
        assert_eq!(map[&A], "4");
    }
}
