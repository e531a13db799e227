//! `exposition`: the text helpers, format negotiation, and pages of chunks served as they are
//! or gzipped.

use std::io::Read as _;
use std::sync::Arc;

use volc_rtc_exporter::exposition::*;

fn secs(ms: i64) -> String {
    let mut s = String::new();
    push_millis_as_seconds(&mut s, ms);
    s
}

fn esc(v: &str) -> String {
    let mut s = String::new();
    push_label_value(&mut s, v);
    s
}

#[test]
fn millis_are_exact_and_short() {
    assert_eq!(secs(1_700_000_000_123), "1700000000.123");
    assert_eq!(secs(1_700_000_000_120), "1700000000.12");
    assert_eq!(secs(1_700_000_000_100), "1700000000.1");
    assert_eq!(secs(1_700_000_000_000), "1700000000");
    assert_eq!(secs(1_700_000_000_001), "1700000000.001");
    assert_eq!(secs(1_700_000_000_010), "1700000000.01");
    assert_eq!(secs(0), "0");
    assert_eq!(secs(5), "0.005");
    assert_eq!(secs(-1), "-0.001");
    assert_eq!(secs(-1500), "-1.5");
    assert_eq!(secs(i64::MIN), "-9223372036854775.808");
    assert_eq!(secs(i64::MAX), "9223372036854775.807");
}

#[test]
fn label_values_are_escaped() {
    assert_eq!(esc("plain"), "plain");
    assert_eq!(esc(""), "");
    assert_eq!(esc(r#"a"b"#), r#"a\"b"#);
    assert_eq!(esc(r"a\b"), r"a\\b");
    assert_eq!(esc("a\nb"), r"a\nb");
    assert_eq!(esc("\\n"), r"\\n");
    assert_eq!(esc("}{#, ="), "}{#, =");
    assert_eq!(esc("录制🎥\t"), "录制🎥\t");
    let mut s = String::new();
    push_label(&mut s, "file", "x\"\\\ny");
    assert_eq!(s, r#"file="x\"\\\ny""#);
}

#[test]
fn floats_and_headers() {
    let f = |v: f64| {
        let mut s = String::new();
        push_float(&mut s, v);
        s
    };
    assert_eq!(f(1.0), "1");
    assert_eq!(f(0.025), "0.025");
    assert_eq!(f(f64::INFINITY), "+Inf");
    assert_eq!(f(f64::NEG_INFINITY), "-Inf");
    assert_eq!(f(f64::NAN), "NaN");
    let mut out = Vec::new();
    push_header(&mut out, Format::Text, "x", "a \"q\" b\\c\nd", "gauge");
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "# HELP x a \"q\" b\\\\c\\nd\n# TYPE x gauge\n"
    );
    let mut out = Vec::new();
    push_header(&mut out, Format::OpenMetrics, "x", "a \"q\"", "counter");
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "# HELP x a \\\"q\\\"\n# TYPE x counter\n"
    );
}

#[test]
fn negotiation() {
    let n = |values: &[&str]| Format::negotiate(values.iter().copied());
    assert_eq!(n(&[]), Format::Text);
    assert_eq!(n(&["*/*"]), Format::Text);
    assert_eq!(n(&["text/plain"]), Format::Text);
    // What Prometheus sends.
    assert_eq!(
        n(&["application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"]),
        Format::OpenMetrics
    );
    assert_eq!(n(&["application/openmetrics-text"]), Format::OpenMetrics);
    assert_eq!(
        n(&[
            "text/plain",
            "Application/OpenMetrics-Text; version=\"1.0.0\""
        ]),
        Format::OpenMetrics
    );
    assert_eq!(
        n(&["application/openmetrics-text;q=0.5, text/plain"]),
        Format::Text
    );
    assert_eq!(n(&["application/openmetrics-text;q=0"]), Format::Text);
    assert_eq!(
        n(&["application/openmetrics-text;version=2.0.0"]),
        Format::Text
    );
    assert_eq!(
        n(&["application/openmetrics-text;q=nonsense, */*;q=0.1"]),
        Format::Text
    );
}

/// Chunks of varied text, some empty, some repeated, one larger than the 1 MiB threshold
/// of the threaded path, some kept compressed only.
fn sample_page() -> Page {
    let mut page = Page::new();
    let shared = Arc::new(Chunk::new(b"repeated shared chunk\n".to_vec()));
    page.push_text(b"# HELP a x\n".to_vec());
    page.push(shared.clone());
    page.push_text(Vec::new());
    let big: String = (0..40_000)
        .map(|i| format!("a{{target=\"t{i}\"}} {}\n", i * 7))
        .collect();
    page.push_text(big.into_bytes());
    page.push(shared);
    let cold: String = (0..2_000)
        .map(|i| format!("b{{target=\"t{i}\"}} {}\n", i * 3))
        .collect();
    page.push(Arc::new(Chunk::compressed(cold.as_bytes()).unwrap()));
    page.push(Arc::new(Chunk::compressed(b"").unwrap()));
    page.push_text("录制 🎥\n".as_bytes().to_vec());
    page
}

#[test]
fn gzip_page_is_one_member_that_decodes_to_the_identity_body() {
    for threads in [1, 2] {
        let page = sample_page();
        let mut identity = Vec::new();
        page.write_to(&mut identity).unwrap();
        assert_eq!(identity.len(), page.len());
        assert_eq!(page.identity().collect::<Vec<_>>().concat(), identity);
        let gz = page.gzip(threads).unwrap().concat();
        assert!(gz.len() * 4 < identity.len(), "{} bytes", gz.len());
        // A single-member decoder reads all of it: one member, not several.
        let mut body = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice())
            .read_to_end(&mut body)
            .unwrap();
        assert_eq!(body, identity);
        // Nothing follows the member.
        let mut decoder = flate2::bufread::GzDecoder::new(gz.as_slice());
        std::io::copy(&mut decoder, &mut std::io::sink()).unwrap();
        assert!(decoder.into_inner().is_empty());
        // Served again, nothing is compressed twice: the same bytes come back.
        let again = page.gzip(threads).unwrap().concat();
        assert_eq!(again, gz);
    }
    let empty = Page::new().gzip(1).unwrap().concat();
    let mut body = Vec::new();
    flate2::read::GzDecoder::new(empty.as_slice())
        .read_to_end(&mut body)
        .unwrap();
    assert!(body.is_empty());
}

#[test]
fn identity_frames_share_the_chunks_bytes() {
    let page = sample_page();
    let frames = |page: &Page| page.identity().collect::<Vec<_>>();
    let (a, b) = (frames(&page), frames(&page));
    assert_eq!(a.len(), 6, "the empty chunks are left out");
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        // Text kept is shared; text kept compressed only is inflated for each body.
        assert_eq!(x.as_ptr() == y.as_ptr(), i != 4, "frame {i}");
        assert_eq!(x, y);
    }
}
