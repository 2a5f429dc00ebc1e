//! Tests of the chunked-body validator, in a file of their own (they outgrew it).

use super::*;

/// Feeds `input` whole; returns (consumed, done, payload).
fn run(input: &[u8]) -> Result<(usize, bool, Vec<u8>), Kind> {
    run_with(input, ChunkedLimits::default())
}

fn run_with(input: &[u8], limits: ChunkedLimits) -> Result<(usize, bool, Vec<u8>), Kind> {
    let mut dec = ChunkedDecoder::new(limits);
    let mut payload = Vec::new();
    let p = dec
        .feed_with(input, |d| payload.extend_from_slice(d))
        .map_err(|e| e.kind())?;
    assert_eq!(dec.payload_len(), payload.len() as u64);
    assert_eq!(dec.is_done(), p.done);
    Ok((p.consumed, p.done, payload))
}

/// The rule that refused `input`; panics if it was accepted.
fn refused(input: &[u8]) -> Kind {
    match run(input) {
        Err(kind) => kind,
        Ok(r) => panic!("accepted {r:?}: {:?}", String::from_utf8_lossy(input)),
    }
}

/// Whether `input` is a whole, valid body.
fn accepted(input: &[u8]) -> bool {
    matches!(run(input), Ok((n, true, _)) if n == input.len())
}

const BODY: &[u8] = b"5\r\nhello\r\n1a;x=y\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nT: v\r\n\r\n";

#[test]
fn decodes_a_valid_body_and_counts_its_payload() {
    let (consumed, done, payload) = run(BODY).unwrap();
    assert_eq!((consumed, done), (BODY.len(), true));
    assert_eq!(payload, b"helloabcdefghijklmnopqrstuvwxyz");
}

#[test]
fn stops_at_the_end_of_the_body_and_leaves_the_rest() {
    let mut input = BODY.to_vec();
    input.extend_from_slice(b"GET / HTTP/1.1\r\n");
    assert_eq!(run(&input).unwrap().0, BODY.len());
}

#[test]
fn feeding_after_the_end_consumes_nothing() {
    let mut dec = ChunkedDecoder::new(ChunkedLimits::default());
    assert!(dec.feed(BODY).unwrap().done);
    let p = dec.feed(b"more").unwrap();
    assert_eq!(
        p,
        ChunkProgress {
            consumed: 0,
            done: true,
            forward: 0
        }
    );
}

#[test]
fn resumes_at_every_byte_boundary() {
    for split in 0..=BODY.len() {
        let mut dec = ChunkedDecoder::new(ChunkedLimits::default());
        let mut payload = Vec::new();
        let a = dec
            .feed_with(&BODY[..split], |d| payload.extend_from_slice(d))
            .unwrap();
        assert_eq!((a.consumed, a.done), (split, split == BODY.len()));
        let b = dec
            .feed_with(&BODY[split..], |d| payload.extend_from_slice(d))
            .unwrap();
        assert_eq!(
            (a.consumed + b.consumed, b.done),
            (BODY.len(), true),
            "split {split}"
        );
        assert_eq!(payload, b"helloabcdefghijklmnopqrstuvwxyz");
    }
    let mut dec = ChunkedDecoder::new(ChunkedLimits::default());
    let consumed: usize = BODY.iter().map(|b| dec.feed(&[*b]).unwrap().consumed).sum();
    assert_eq!(
        (consumed, dec.is_done(), dec.payload_len()),
        (BODY.len(), true, 31)
    );
}

#[test]
fn empty_body_is_just_the_last_chunk() {
    assert!(accepted(b"0\r\n\r\n"));
    assert!(accepted(b"000\r\n\r\n"));
    assert_eq!(run(b"0\r\n\r\n").unwrap().2, b"");
}

#[test]
fn chunk_size_accepts_upper_and_lower_hex() {
    let mut body = b"aA\r\n".to_vec();
    body.extend_from_slice(&[b'x'; 0xaa]);
    body.extend_from_slice(b"\r\n0\r\n\r\n");
    assert!(accepted(&body));
}

#[test]
fn chunk_size_of_16_hex_digits_is_accepted_and_17_rejected() {
    let mut dec = ChunkedDecoder::new(ChunkedLimits::default());
    let p = dec.feed(b"FFFFFFFFFFFFFFFF\r\nabc").unwrap();
    assert_eq!((p.consumed, p.done, dec.payload_len()), (21, false, 3));
    assert_eq!(
        refused(b"00000000000000001\r\nx\r\n0\r\n\r\n"),
        Kind::ChunkSizeTooLong
    );
    assert_eq!(refused(b"10000000000000000\r\n"), Kind::ChunkSizeTooLong);
}

#[test]
fn chunk_size_that_is_not_hex_digits_is_rejected() {
    for input in [
        &b"0x5\r\n"[..],
        b"+5\r\n",
        b"-5\r\n",
        b" 5\r\n",
        b"\r\n",
        b"g\r\n",
        b";a\r\n",
    ] {
        assert_eq!(
            refused(input),
            Kind::ChunkSize,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn whitespace_after_chunk_size_without_extension_is_rejected() {
    assert_eq!(
        refused(b"5 \r\nhello\r\n0\r\n\r\n"),
        Kind::ChunkSizeTrailingSpace
    );
    assert_eq!(refused(b"5\t\r\n"), Kind::ChunkSizeTrailingSpace);
    assert_eq!(refused(b"5 5\r\n"), Kind::ChunkExtension);
}

#[test]
fn valid_chunk_extensions_are_accepted() {
    for ext in [
        "5;a",
        "5 ; a",
        "5;a=b",
        "5 ;\ta = b",
        "5;a;b=c;d",
        "5;a=\"\"",
        "5;a=\"q \\\" x;=\"",
        "5;a=\"x\" ;b",
        "5;a=b ;c",
    ] {
        let body = format!("{ext}\r\nhello\r\n0;last=1\r\n\r\n");
        assert!(accepted(body.as_bytes()), "{ext:?}");
    }
}

#[test]
fn invalid_chunk_extensions_are_rejected() {
    for ext in [
        "5;",
        "5;=b",
        "5;a=",
        "5;a =",
        "5;a b",
        "5;a=b c",
        "5;a=\"x\"y",
        "5;a=\"\x01\"",
        "5;a=b,c",
        "5;a@b",
        "5;a=\"x",
        "5;a=\"x\\\x01\"",
        "5;a ",
    ] {
        let body = format!("{ext}\r\nhello\r\n0\r\n\r\n");
        assert_eq!(refused(body.as_bytes()), Kind::ChunkExtension, "{ext:?}");
    }
}

#[test]
fn size_line_longer_than_max_line_bytes_is_rejected() {
    let limits = ChunkedLimits {
        max_line_bytes: 8,
        ..ChunkedLimits::default()
    };
    assert!(run_with(b"5;abc\r\nhello\r\n0\r\n\r\n", limits).is_ok());
    assert!(run_with(b"5;abcd\r\nhello\r\n0\r\n\r\n", limits).is_ok());
    assert_eq!(
        run_with(b"5;abcde\r\nhello\r\n0\r\n\r\n", limits),
        Err(Kind::ChunkLineTooLong)
    );
    // The bound is per line: many short lines are fine.
    let many = "1;abc\r\nx\r\n".repeat(100) + "0\r\n\r\n";
    assert!(run_with(many.as_bytes(), limits).is_ok());
}

#[test]
fn size_line_not_ended_by_crlf_is_rejected() {
    assert_eq!(refused(b"5\nhello\r\n0\r\n\r\n"), Kind::ChunkLineEnding);
    assert_eq!(refused(b"5\r\rhello\r\n"), Kind::ChunkLineEnding);
    assert_eq!(refused(b"5;a\nhello\r\n"), Kind::ChunkLineEnding);
    assert_eq!(refused(b"5;a=b\nhello\r\n"), Kind::ChunkLineEnding);
    assert_eq!(refused(b"0\n\r\n"), Kind::ChunkLineEnding);
}

#[test]
fn chunk_data_not_followed_by_crlf_is_rejected() {
    assert_eq!(refused(b"5\r\nhelloX\r\n0\r\n\r\n"), Kind::ChunkDataEnding);
    assert_eq!(refused(b"5\r\nhello\n0\r\n\r\n"), Kind::ChunkDataEnding);
    assert_eq!(refused(b"5\r\nhello\r\r\n"), Kind::ChunkDataEnding);
    assert_eq!(refused(b"5\r\nhello0\r\n\r\n"), Kind::ChunkDataEnding);
}

#[test]
fn valid_trailer_fields_are_accepted() {
    assert!(accepted(b"0\r\nX-Sum: abc\r\nEmpty:\r\nT:\tv w \r\n\r\n"));
    assert!(accepted(b"0\r\nX: \xff\xfe\r\n\r\n"));
}

#[test]
fn kept_trailers_are_listed_as_fields() {
    let mut d = ChunkedDecoder::keeping_trailers(ChunkedLimits::default());
    let input = b"3\r\nabc\r\n0\r\ngrpc-status: 0\r\ngrpc-message: ok then\r\n\r\n";
    // Fed a byte at a time: the section is kept across calls.
    for b in input.iter() {
        d.feed(std::slice::from_ref(b)).expect("valid");
    }
    assert!(d.is_done());
    let fields: Vec<(&[u8], &[u8])> = d.trailer_fields().collect();
    assert_eq!(
        fields,
        vec![
            (&b"grpc-status"[..], &b"0"[..]),
            (&b"grpc-message"[..], &b"ok then"[..])
        ]
    );
    let mut plain = ChunkedDecoder::new(ChunkedLimits::default());
    plain.feed(input).expect("valid");
    assert_eq!(plain.trailer_fields().count(), 0);
}

#[test]
fn invalid_trailer_fields_are_rejected() {
    for (input, kind) in [
        (&b"0\r\n X: y\r\n\r\n"[..], Kind::TrailerField),
        (b"0\r\nX : y\r\n\r\n", Kind::TrailerField),
        (b"0\r\n: y\r\n\r\n", Kind::TrailerField),
        (b"0\r\nX\r\n\r\n", Kind::TrailerField),
        (b"0\r\nX: a\x00b\r\n\r\n", Kind::TrailerField),
        (b"0\r\nX: a\x7fb\r\n\r\n", Kind::TrailerField),
        (b"0\r\nX: y\n\r\n", Kind::TrailerLineEnding),
        (b"0\r\nX: y\r\r\n", Kind::TrailerLineEnding),
        (b"0\r\n\n", Kind::TrailerLineEnding),
        (b"0\r\n\rX", Kind::TrailerLineEnding),
    ] {
        assert_eq!(refused(input), kind, "{:?}", String::from_utf8_lossy(input));
    }
}

#[test]
fn trailer_section_larger_than_max_trailer_bytes_is_rejected() {
    let limits = ChunkedLimits {
        max_trailer_bytes: 10,
        ..ChunkedLimits::default()
    };
    // "X: 12345\r\n" + "\r\n" is 12 bytes.
    assert!(run_with(b"0\r\nX: 123\r\n\r\n", limits).is_ok());
    assert_eq!(
        run_with(b"0\r\nX: 12345\r\n\r\n", limits),
        Err(Kind::TrailerTooLarge)
    );
}

#[test]
fn an_error_is_sticky() {
    let mut dec = ChunkedDecoder::new(ChunkedLimits::default());
    let e = dec.feed(b"5\nhello").unwrap_err();
    assert_eq!((e.status(), e.code()), (400, "bad_request"));
    assert_eq!(dec.feed(b"0\r\n\r\n"), Err(e));
    assert!(!dec.is_done());
}

#[test]
fn payload_slices_point_into_the_input_and_skip_the_framing() {
    let mut dec = ChunkedDecoder::new(ChunkedLimits::default());
    let mut pieces = Vec::new();
    dec.feed_with(b"3\r\nabc\r\n2\r\nde", |d| pieces.push(d.to_vec()))
        .unwrap();
    dec.feed_with(b"\r\n0\r\n\r\n", |d| pieces.push(d.to_vec()))
        .unwrap();
    assert_eq!(pieces, [b"abc".to_vec(), b"de".to_vec()]);
    assert_eq!(dec.payload_len(), 5);
}
