//! `http::accepts_gzip`: `Accept-Encoding` negotiation.

use hyper::header::{HeaderValue, ACCEPT_ENCODING};
use hyper::HeaderMap;
use volc_rtc_exporter::http::accepts_gzip;

fn accept(values: &[&str]) -> bool {
    let mut headers = HeaderMap::new();
    for value in values {
        headers.append(ACCEPT_ENCODING, HeaderValue::from_str(value).unwrap());
    }
    accepts_gzip(&headers)
}

#[test]
fn gzip_negotiation() {
    assert!(!accept(&[]));
    assert!(accept(&["gzip"]));
    assert!(accept(&["GZIP"]));
    assert!(accept(&["deflate, gzip;q=1.0, *;q=0.5"]));
    assert!(accept(&["br", "x-gzip"]));
    assert!(accept(&["*"]));
    assert!(accept(&["gzip;q=0.001"]));
    assert!(!accept(&["identity"]));
    assert!(!accept(&["gzip;q=0"]));
    assert!(!accept(&["gzip; q=0.0"]));
    assert!(!accept(&["*;q=0.5, gzip;q=0"]));
    assert!(!accept(&["*;q=0"]));
    assert!(!accept(&["gzip;q=nonsense"]));
    assert!(!accept(&["br, deflate"]));
}
