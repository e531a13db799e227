//! `http::Body`: the streamed body of an answer.

use bytes::Bytes;
use volc_rtc_exporter::http::Body;

#[test]
fn small_pieces_are_joined_and_large_ones_sent_as_they_are() {
    use http_body_util::BodyExt as _;
    let big = Bytes::from(vec![b'b'; 100_000]);
    let mut frames = vec![Bytes::new(), Bytes::from_static(b"# HELP x\n")];
    frames.extend((0..100).map(|i| Bytes::from(vec![b'0' + (i % 10) as u8; 1_000])));
    frames.push(big.clone());
    frames.push(Bytes::from_static(b"tail\n"));
    let expected = frames.concat();
    let body = Body::new(frames);
    assert_eq!(
        hyper::body::Body::size_hint(&body).exact(),
        Some(expected.len() as u64)
    );
    let sent: Vec<Bytes> = collect_frames(body);
    assert_eq!(sent.concat(), expected);
    let sizes: Vec<usize> = sent.iter().map(Bytes::len).collect();
    // 9 + 100 × 1,000 bytes in two joined frames, the large piece as it is (the same
    // buffer, not a copy), then the tail.
    assert_eq!(sizes, [9 + 65_000, 35_000, 100_000, 5]);
    assert_eq!(sent[2].as_ptr(), big.as_ptr());

    fn collect_frames(body: Body) -> Vec<Bytes> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut body = body;
            let mut out = Vec::new();
            while let Some(frame) = body.frame().await {
                out.push(frame.unwrap().into_data().unwrap());
            }
            out
        })
    }
}
