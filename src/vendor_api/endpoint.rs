//! A target's endpoint: the base URL a vendor module posts to, and the `Host`
//! value it signs. Checked once when the configuration is loaded.

use super::interface::BuildError;

/// Splits an endpoint base URL into the URI to post to and the `Host` value to sign.
pub fn endpoint_uri(endpoint: &str) -> Result<(http::Uri, String), BuildError> {
    let invalid = |reason: &str| BuildError::Endpoint {
        endpoint: endpoint.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: http::Uri = endpoint.parse().map_err(|_| invalid("not a valid URL"))?;
    let scheme = uri.scheme_str().ok_or_else(|| invalid("missing scheme"))?;
    if scheme != "http" && scheme != "https" {
        return Err(invalid("scheme must be http or https"));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| invalid("missing host"))?
        .to_string();
    let path = match uri.path() {
        "" => "/",
        path => path,
    };
    let uri = http::Uri::builder()
        .scheme(scheme)
        .authority(authority.as_str())
        .path_and_query(path)
        .build()
        .map_err(|_| invalid("not a valid URL"))?;
    Ok((uri, authority))
}
