//! Query strings and name rules.

use super::status::ApiError;

/// The longest query string taken apart (selectors are short).
const MAX_QUERY_BYTES: usize = 8 * 1024;

/// `a=b&c=d` into decoded pairs.
pub(crate) fn parse(query: &str) -> Result<Vec<(String, String)>, ApiError> {
    if query.len() > MAX_QUERY_BYTES {
        return Err(ApiError::bad_request(format!("query string longer than {MAX_QUERY_BYTES} bytes")));
    }
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

pub(crate) fn get<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn decode(s: &str) -> Result<String, ApiError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
                let Some(b) = hex else { return Err(ApiError::bad_request(format!("query: bad percent-encoding in {s:?}"))) };
                out.push(b);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| ApiError::bad_request(format!("query: {s:?} is not UTF-8 once decoded")))
}

/// A DNS-1123 subdomain (object names): why it is not, if it is not.
pub(crate) fn dns_subdomain_error(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("Required value".into());
    }
    if name.len() > 253 {
        return Some("must be no more than 253 characters".into());
    }
    let ok_chars = name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    let ends_ok = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !ok_chars || !ends_ok(name.as_bytes().first()) || !ends_ok(name.as_bytes().last()) {
        return Some(format!(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (got {name:?})"
        ));
    }
    None
}

/// A DNS-1123 label (namespaces): why it is not, if it is not.
pub(crate) fn dns_label_error(name: &str) -> Option<String> {
    if name.len() > 63 {
        return Some("must be no more than 63 characters".into());
    }
    if name.contains('.') {
        return Some(format!("a lowercase RFC 1123 label must not contain '.' (got {name:?})"));
    }
    dns_subdomain_error(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_selectors_and_names() {
        let q = parse("fieldSelector=involvedObject.name%3Diris%2Cx%3Dy&a").unwrap();
        assert_eq!(get(&q, "fieldSelector"), Some("involvedObject.name=iris,x=y"));
        assert_eq!(get(&q, "a"), Some(""));
        assert!(parse("a=%zz").is_err());
        assert!(dns_subdomain_error("iris-1.v2").is_none());
        assert!(dns_subdomain_error("Iris").is_some());
        assert!(dns_label_error("a.b").is_some());
    }
}
