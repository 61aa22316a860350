//! What the HMAC-SHA256 request signatures of Tencent Cloud (TC3) and
//! Volcengine (SignerV4) share: the canonical header block and the
//! `SignedHeaders` list, both built from headers already lower-cased and
//! sorted by name. Each vendor's module keeps its own rules for the values.

/// `name:value\n` per header, and the names joined by `;`.
pub fn headers_and_signed_names(sorted: &[(String, String)]) -> (String, String) {
    let canonical_headers = sorted
        .iter()
        .map(|(name, value)| format!("{name}:{value}\n"))
        .collect();
    let signed_headers = sorted
        .iter()
        .map(|(name, _)| name.as_str())
        .collect::<Vec<_>>()
        .join(";");
    (canonical_headers, signed_headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_header_is_a_line_and_the_names_are_joined() {
        let sorted = [
            ("content-type".to_owned(), "application/json".to_owned()),
            ("host".to_owned(), "example.com".to_owned()),
        ];
        assert_eq!(
            headers_and_signed_names(&sorted),
            (
                "content-type:application/json\nhost:example.com\n".to_owned(),
                "content-type;host".to_owned()
            )
        );
    }
}
