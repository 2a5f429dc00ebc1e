//! Unit tests of the request head parser: one test per rule, named for the behaviour.

use super::*;

const LIMITS: HeadLimits = HeadLimits {
    max_head_bytes: 8192,
    max_uri_bytes: 1024,
};

/// Parses a complete head and hands it to `f`; panics if it is incomplete or refused.
fn with_head<R>(buf: &[u8], f: impl FnOnce(RequestHead<'_, '_>) -> R) -> R {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match parse_request_head(buf, &mut headers, &LIMITS) {
        Ok(Some(head)) => f(head),
        other => panic!("{other:?} for {:?}", String::from_utf8_lossy(buf)),
    }
}

fn parse_with(buf: &[u8], limits: HeadLimits) -> Result<Option<usize>, CodecError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    parse_request_head(buf, &mut headers, &limits).map(|h| h.map(|h| h.head_len))
}

/// The rule that refused `buf`; panics if it was accepted.
fn refused(buf: &[u8]) -> Kind {
    match parse_with(buf, LIMITS) {
        Err(e) => e.kind(),
        Ok(r) => panic!("accepted ({r:?}): {:?}", String::from_utf8_lossy(buf)),
    }
}

/// A POST with a Host and these extra header lines.
fn post(extra: &str) -> Vec<u8> {
    format!("POST /upload HTTP/1.1\r\nHost: example.com\r\n{extra}\r\n").into_bytes()
}

fn body(buf: &[u8]) -> BodyKind {
    with_head(buf, |h| h.body)
}

#[test]
fn simple_get_parses_every_field() {
    let buf = b"GET /a/b?x=1 HTTP/1.1\r\nHost: example.com:8080\r\nAccept:  */* \r\n\r\nnext";
    with_head(buf, |h| {
        assert_eq!(h.method, "GET");
        assert_eq!(h.target, "/a/b?x=1");
        assert_eq!(h.path, "/a/b");
        assert_eq!(h.query, Some("x=1"));
        assert_eq!(h.minor_version, 1);
        assert_eq!(h.headers.len(), 2);
        assert_eq!(h.headers[1].name, "Accept");
        assert_eq!(h.headers[1].value, b"*/*");
        assert_eq!(h.head_len, buf.len() - 4);
        assert_eq!(h.body, BodyKind::Empty);
        assert_eq!(h.host, Some(&b"example.com:8080"[..]));
        assert!(h.keep_alive);
        assert!(!h.expect_continue);
        assert!(!h.upgrade);
    });
}

#[test]
fn leading_empty_lines_are_skipped_and_counted_in_head_len() {
    let buf = b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    with_head(buf, |h| {
        assert_eq!(h.method, "GET");
        assert_eq!(h.head_len, buf.len());
    });
}

#[test]
fn every_prefix_of_a_valid_head_is_incomplete() {
    let buf = b"POST /x?y HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n";
    for end in 0..buf.len() {
        assert_eq!(
            parse_with(&buf[..end], LIMITS),
            Ok(None),
            "prefix of {end} bytes"
        );
    }
    assert_eq!(parse_with(buf, LIMITS), Ok(Some(buf.len())));
}

#[test]
fn body_bytes_after_the_head_are_not_scanned() {
    let buf = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\na\nb\r";
    with_head(buf, |h| {
        assert_eq!((h.head_len, h.body), (buf.len() - 4, BodyKind::Length(4)))
    });
}

#[test]
fn bare_lf_line_endings_are_rejected() {
    assert_eq!(refused(b"GET / HTTP/1.1\nHost: a\r\n\r\n"), Kind::BareLf);
    assert_eq!(refused(b"GET / HTTP/1.1\r\nHost: a\n\r\n"), Kind::BareLf);
    assert_eq!(refused(b"GET / HTTP/1.1\r\nHost: a\r\n\n"), Kind::BareLf);
    assert_eq!(refused(b"GET / HTTP/1.1\nHost: a\n\n"), Kind::BareLf);
    assert_eq!(
        refused(b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"),
        Kind::BareLf
    );
}

#[test]
fn bare_lf_is_rejected_before_the_head_is_complete() {
    assert_eq!(refused(b"GET / HTTP/1.1\r\nHost: a\nX-"), Kind::BareLf);
}

#[test]
fn bare_cr_anywhere_in_the_head_is_rejected() {
    assert_eq!(refused(b"GET / HTTP/1.1\rHost: a\r\n\r\n"), Kind::BareCr);
    assert_eq!(
        refused(b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n"),
        Kind::BareCr
    );
    assert_eq!(
        refused(b"GET /a\rb HTTP/1.1\r\nHost: a\r\n\r\n"),
        Kind::BareCr
    );
    assert_eq!(refused(b"GET / HTTP/1.1\r\nX: a\rb"), Kind::BareCr);
}

#[test]
fn nul_in_header_value_is_rejected() {
    assert_eq!(refused(&post("X: a\0b\r\n")), Kind::HeaderValue);
}

#[test]
fn ctl_other_than_htab_in_header_value_is_rejected() {
    for ctl in [0x01u8, 0x08, 0x0b, 0x0c, 0x1b, 0x1f, 0x7f] {
        let mut buf = post("X: a");
        buf.truncate(buf.len() - 2);
        buf.extend_from_slice(&[ctl, b'b', b'\r', b'\n', b'\r', b'\n']);
        assert_eq!(refused(&buf), Kind::HeaderValue, "ctl {ctl:#x}");
    }
}

#[test]
fn htab_and_obs_text_in_header_value_are_accepted() {
    let buf = b"GET / HTTP/1.1\r\nHost: a\r\nX: a\tb\xffc\r\n\r\n";
    with_head(buf, |h| assert_eq!(h.headers[1].value, b"a\tb\xffc"));
}

#[test]
fn whitespace_between_header_name_and_colon_is_rejected() {
    assert_eq!(refused(&post("Content-Length : 3\r\n")), Kind::HeaderName);
    assert_eq!(refused(&post("Content-Length\t: 3\r\n")), Kind::HeaderName);
    assert_eq!(
        refused(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"),
        Kind::HeaderName
    );
}

#[test]
fn obs_fold_is_rejected() {
    assert_eq!(refused(&post("X: a\r\n b\r\n")), Kind::ObsFold);
    assert_eq!(refused(&post("X: a\r\n\tb\r\n")), Kind::ObsFold);
}

#[test]
fn whitespace_before_the_first_header_is_rejected() {
    assert_eq!(
        refused(b"GET / HTTP/1.1\r\n Host: a\r\n\r\n"),
        Kind::ObsFold
    );
}

#[test]
fn invalid_header_names_are_rejected() {
    assert_eq!(refused(&post(": v\r\n")), Kind::HeaderName);
    assert_eq!(refused(&post("X\"y: v\r\n")), Kind::HeaderName);
    assert_eq!(refused(&post("X(y): v\r\n")), Kind::HeaderName);
    assert_eq!(refused(&post("Xy v\r\n")), Kind::HeaderName);
}

#[test]
fn malformed_request_lines_are_rejected() {
    assert_eq!(refused(b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), Kind::Token);
    assert_eq!(
        refused(b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"),
        Kind::MalformedVersion
    );
    assert_eq!(refused(b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n"), Kind::Token);
    assert_eq!(
        refused(b"GET /\x00 HTTP/1.1\r\nHost: a\r\n\r\n"),
        Kind::Token
    );
    assert_eq!(
        refused(b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n"),
        Kind::NewLine
    );
    assert_eq!(refused(b"GET /\r\nHost: a\r\n\r\n"), Kind::Token);
}

#[test]
fn more_than_max_headers_is_431() {
    let extra: String = (0..MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
    let e = parse_with(&post(&extra), LIMITS).unwrap_err();
    assert_eq!(
        (e.status(), e.code()),
        (431, "request_header_fields_too_large")
    );
    // Host plus 99 more is exactly MAX_HEADERS.
    let extra: String = (1..MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
    with_head(&post(&extra), |h| assert_eq!(h.headers.len(), MAX_HEADERS));
}

#[test]
fn a_larger_header_array_is_used_only_up_to_max_headers() {
    let extra: String = (0..MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
    let buf = post(&extra);
    let mut headers = [httparse::EMPTY_HEADER; 2 * MAX_HEADERS];
    let e = parse_request_head(&buf, &mut headers, &LIMITS).unwrap_err();
    assert_eq!(e.status(), 431);
}

#[test]
fn too_many_headers_is_detected_while_incomplete() {
    let extra: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
    let mut buf = post(&extra);
    buf.truncate(buf.len() - 2);
    assert_eq!(refused(&buf), Kind::TooManyHeaders);
}

#[test]
fn content_length_frames_the_body() {
    assert_eq!(body(&post("Content-Length: 42\r\n")), BodyKind::Length(42));
    assert_eq!(body(&post("content-length: 007\r\n")), BodyKind::Length(7));
    assert_eq!(
        body(&post("Content-Length: 18446744073709551615\r\n")),
        BodyKind::Length(u64::MAX)
    );
}

#[test]
fn content_length_zero_and_no_framing_are_empty() {
    assert_eq!(body(&post("Content-Length: 0\r\n")), BodyKind::Empty);
    assert_eq!(body(&post("")), BodyKind::Empty);
}

#[test]
fn content_length_that_is_not_digits_is_rejected() {
    for v in ["+5", "-5", "5a", "0x5", "1 2", "5.0", "", "five", "\u{663}"] {
        assert_eq!(
            refused(&post(&format!("Content-Length: {v}\r\n"))),
            Kind::InvalidContentLength,
            "{v:?}"
        );
    }
}

#[test]
fn content_length_overflowing_u64_is_rejected() {
    assert_eq!(
        refused(&post("Content-Length: 18446744073709551616\r\n")),
        Kind::ContentLengthOverflow
    );
    assert_eq!(
        refused(&post("Content-Length: 99999999999999999999999\r\n")),
        Kind::ContentLengthOverflow
    );
}

#[test]
fn identical_duplicate_content_lengths_are_accepted() {
    assert_eq!(
        body(&post("Content-Length: 5\r\nContent-Length: 5\r\n")),
        BodyKind::Length(5)
    );
    assert_eq!(
        body(&post("Content-Length: 5, 5 ,5\r\n")),
        BodyKind::Length(5)
    );
}

#[test]
fn differing_duplicate_content_lengths_are_rejected() {
    for extra in [
        "Content-Length: 5\r\nContent-Length: 6\r\n",
        "Content-Length: 5, 6\r\n",
        "Content-Length: 5\r\nContent-Length: 05\r\n",
        "Content-Length: 0\r\nContent-Length: 5\r\n",
    ] {
        assert_eq!(
            refused(&post(extra)),
            Kind::ConflictingContentLength,
            "{extra:?}"
        );
    }
}

#[test]
fn content_length_list_with_empty_element_is_rejected() {
    assert_eq!(
        refused(&post("Content-Length: 5,\r\n")),
        Kind::InvalidContentLength
    );
    assert_eq!(
        refused(&post("Content-Length: ,5\r\n")),
        Kind::InvalidContentLength
    );
}

#[test]
fn content_length_with_transfer_encoding_is_rejected() {
    for extra in [
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        "Transfer-Encoding: gzip\r\nContent-Length: 0\r\n",
    ] {
        assert_eq!(
            refused(&post(extra)),
            Kind::ContentLengthWithTransferEncoding,
            "{extra:?}"
        );
    }
}

#[test]
fn transfer_encoding_in_http10_request_is_rejected() {
    let buf = b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(refused(buf), Kind::TransferEncodingHttp10);
}

#[test]
fn chunked_transfer_encoding_is_chunked() {
    for v in ["chunked", "Chunked", "CHUNKED", "  chunked\t"] {
        assert_eq!(
            body(&post(&format!("Transfer-Encoding: {v}\r\n"))),
            BodyKind::Chunked,
            "{v:?}"
        );
    }
}

#[test]
fn final_transfer_coding_other_than_chunked_is_rejected() {
    for v in ["gzip", "identity", "chunked, gzip", "chunkedx"] {
        let kind = refused(&post(&format!("Transfer-Encoding: {v}\r\n")));
        assert_eq!(kind, Kind::ChunkedNotFinal, "{v:?}");
    }
}

#[test]
fn codings_before_chunked_are_not_implemented() {
    for extra in [
        "Transfer-Encoding: gzip, chunked\r\n",
        "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: x-custom;p=1, chunked\r\n",
    ] {
        let e = parse_with(&post(extra), LIMITS).unwrap_err();
        assert_eq!(
            (e.status(), e.code()),
            (501, "not_implemented"),
            "{extra:?}"
        );
        assert_eq!(e.kind(), Kind::UnsupportedTransferCoding);
    }
}

#[test]
fn chunked_twice_is_rejected() {
    assert_eq!(
        refused(&post("Transfer-Encoding: chunked, chunked\r\n")),
        Kind::ChunkedTwice
    );
    assert_eq!(
        refused(&post(
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"
        )),
        Kind::ChunkedTwice
    );
    assert_eq!(
        refused(&post("Transfer-Encoding: chunked, gzip, chunked\r\n")),
        Kind::ChunkedTwice
    );
}

#[test]
fn empty_transfer_encoding_is_rejected() {
    for v in ["", "chunked,", ", chunked", "gzip,,chunked"] {
        let kind = refused(&post(&format!("Transfer-Encoding: {v}\r\n")));
        assert_eq!(kind, Kind::EmptyTransferCoding, "{v:?}");
    }
}

#[test]
fn transfer_coding_that_is_not_a_token_is_rejected() {
    for v in ["chun ked", "chunked;q=1", "\"chunked\"", "chunked/1"] {
        let kind = refused(&post(&format!("Transfer-Encoding: {v}\r\n")));
        assert_eq!(kind, Kind::InvalidTransferCoding, "{v:?}");
    }
}

#[test]
fn http11_request_without_host_is_rejected() {
    assert_eq!(
        refused(b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n"),
        Kind::MissingHost
    );
}

#[test]
fn http10_request_without_host_is_accepted() {
    with_head(b"GET / HTTP/1.0\r\n\r\n", |h| {
        assert_eq!((h.minor_version, h.host), (0, None));
    });
}

#[test]
fn more_than_one_host_header_is_rejected() {
    assert_eq!(refused(&post("Host: example.com\r\n")), Kind::DuplicateHost);
    assert_eq!(
        refused(&post("host: other.example\r\n")),
        Kind::DuplicateHost
    );
    assert_eq!(
        refused(b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n"),
        Kind::DuplicateHost
    );
}

#[test]
fn host_that_is_not_an_authority_is_rejected() {
    for v in [
        "",
        "a b",
        "user@host",
        "host/path",
        "host?x",
        "host:",
        "host:65536",
        "host:123456",
        "host:8a",
        ":80",
        "[::1",
        "[::1]x",
        "[zz::1]",
        "[]",
        "[1.2.3.4]",
        "a,b",
        "a;b",
        "%41",
        "host:80:80",
        "h\u{e9}",
    ] {
        let buf = format!("GET / HTTP/1.1\r\nHost: {v}\r\n\r\n");
        assert_eq!(refused(buf.as_bytes()), Kind::InvalidHost, "{v:?}");
    }
}

#[test]
fn host_that_is_an_authority_is_accepted() {
    for v in [
        "example.com",
        "EXAMPLE.com:8080",
        "127.0.0.1",
        "127.0.0.1:80",
        "[::1]",
        "[::1]:443",
        "[::ffff:1.2.3.4]:1",
        "a_b-c~d",
        "h:65535",
        "h:0",
    ] {
        let buf = format!("GET / HTTP/1.1\r\nHost: {v}\r\n\r\n");
        with_head(buf.as_bytes(), |h| assert_eq!(h.host, Some(v.as_bytes())));
    }
}

#[test]
fn origin_form_target_splits_path_and_query() {
    let cases = [
        ("/", "/", None),
        ("/a/b", "/a/b", None),
        ("/a?x=1&y?z", "/a", Some("x=1&y?z")),
        ("/?", "/", Some("")),
        ("//double", "//double", None),
    ];
    for (target, path, query) in cases {
        let buf = format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n");
        with_head(buf.as_bytes(), |h| {
            assert_eq!((h.target, h.path, h.query), (target, path, query));
        });
    }
}

#[test]
fn absolute_form_target_overrides_the_host_header() {
    let buf = b"GET http://Upstream.example:8080/p/q?x=1 HTTP/1.1\r\nHost: other\r\n\r\n";
    with_head(buf, |h| {
        assert_eq!(h.target, "http://Upstream.example:8080/p/q?x=1");
        assert_eq!(h.path, "/p/q");
        assert_eq!(h.query, Some("x=1"));
        assert_eq!(h.host, Some(&b"Upstream.example:8080"[..]));
    });
}

#[test]
fn absolute_form_scheme_is_case_insensitive_and_empty_path_is_slash() {
    let cases = [
        ("HTTPS://h", "/", None),
        ("hTTp://h?x", "/", Some("x")),
        ("https://[::1]:8443/a", "/a", None),
    ];
    for (target, path, query) in cases {
        let buf = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
        with_head(buf.as_bytes(), |h| {
            assert_eq!((h.path, h.query), (path, query))
        });
    }
}

#[test]
fn absolute_form_still_needs_a_valid_host_header() {
    assert_eq!(
        refused(b"GET http://h/ HTTP/1.1\r\n\r\n"),
        Kind::MissingHost
    );
    assert_eq!(
        refused(b"GET http://h/ HTTP/1.1\r\nHost: a b\r\n\r\n"),
        Kind::InvalidHost
    );
    with_head(b"GET http://h/ HTTP/1.0\r\n\r\n", |h| {
        assert_eq!(h.host, Some(&b"h"[..]))
    });
}

#[test]
fn absolute_form_with_invalid_authority_is_rejected() {
    for target in [
        "http://u@h/",
        "http:///p",
        "http://",
        "http://h:99999/",
        "http://a,b/",
    ] {
        let buf = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(refused(buf.as_bytes()), Kind::TargetAuthority, "{target}");
    }
}

#[test]
fn asterisk_target_is_accepted_only_with_options() {
    with_head(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", |h| {
        assert_eq!((h.target, h.path, h.query), ("*", "*", None));
    });
    assert_eq!(
        refused(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n"),
        Kind::AsteriskNotOptions
    );
}

#[test]
fn connect_is_not_implemented() {
    let e = parse_with(
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        LIMITS,
    )
    .unwrap_err();
    assert_eq!(
        (e.status(), e.code(), e.kind()),
        (501, "not_implemented", Kind::ConnectNotSupported)
    );
}

#[test]
fn authority_form_and_other_targets_are_rejected() {
    for target in [
        "example.com:80",
        "ftp://h/",
        "a/b",
        "http:/h",
        "**",
        "mailto:x",
    ] {
        let buf = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(refused(buf.as_bytes()), Kind::InvalidTarget, "{target}");
    }
}

#[test]
fn fragment_or_non_ascii_in_target_is_rejected() {
    assert_eq!(
        refused(b"GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n"),
        Kind::TargetByte
    );
    assert_eq!(
        refused("GET /\u{e9} HTTP/1.1\r\nHost: a\r\n\r\n".as_bytes()),
        Kind::TargetByte
    );
    assert_eq!(
        refused(b"GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n"),
        Kind::Token
    );
}

#[test]
fn target_longer_than_max_uri_bytes_is_414() {
    let limits = HeadLimits {
        max_head_bytes: 8192,
        max_uri_bytes: 10,
    };
    let ok = b"GET /123456789 HTTP/1.1\r\nHost: a\r\n\r\n";
    assert!(parse_with(ok, limits).unwrap().is_some());
    let e = parse_with(b"GET /1234567890 HTTP/1.1\r\nHost: a\r\n\r\n", limits).unwrap_err();
    assert_eq!(
        (e.status(), e.code(), e.kind()),
        (414, "uri_too_long", Kind::UriTooLong)
    );
}

#[test]
fn long_target_is_414_while_the_head_is_incomplete() {
    let limits = HeadLimits {
        max_head_bytes: 8192,
        max_uri_bytes: 10,
    };
    assert_eq!(parse_with(b"GET /123456789", limits), Ok(None));
    let e = parse_with(b"GET /1234567890", limits).unwrap_err();
    assert_eq!(e.kind(), Kind::UriTooLong);
    let e = parse_with(b"GET /1234567890 HTTP/1.1\r\nHost: a\r\n", limits).unwrap_err();
    assert_eq!(e.kind(), Kind::UriTooLong);
}

#[test]
fn request_line_without_end_within_max_uri_plus_32_is_414() {
    let limits = HeadLimits {
        max_head_bytes: 8192,
        max_uri_bytes: 10,
    };
    let method = "M".repeat(42);
    assert_eq!(parse_with(method.as_bytes(), limits), Ok(None));
    let method = "M".repeat(43);
    let e = parse_with(method.as_bytes(), limits).unwrap_err();
    assert_eq!((e.status(), e.kind()), (414, Kind::RequestLineTooLong));
}

#[test]
fn incomplete_head_at_max_head_bytes_is_431() {
    let limits = HeadLimits {
        max_head_bytes: 64,
        max_uri_bytes: 1024,
    };
    let mut buf = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
    buf.resize(63, b'v');
    assert_eq!(parse_with(&buf, limits), Ok(None));
    buf.push(b'v');
    let e = parse_with(&buf, limits).unwrap_err();
    assert_eq!(
        (e.status(), e.code()),
        (431, "request_header_fields_too_large")
    );
    assert_eq!(e.kind(), Kind::HeadTooLarge);
}

#[test]
fn complete_head_longer_than_max_head_bytes_is_431() {
    let buf = b"GET / HTTP/1.1\r\nHost: a\r\nX: vvvvvvvvvv\r\n\r\nbody";
    let head = buf.len() - 4;
    let limits = |max_head_bytes| HeadLimits {
        max_head_bytes,
        max_uri_bytes: 1024,
    };
    assert_eq!(parse_with(buf, limits(head)), Ok(Some(head)));
    assert_eq!(
        parse_with(buf, limits(head - 1)).unwrap_err().kind(),
        Kind::HeadTooLarge
    );
}

#[test]
fn http2_preface_is_505() {
    let e = parse_with(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", LIMITS).unwrap_err();
    assert_eq!((e.status(), e.code()), (505, "http_version_not_supported"));
}

#[test]
fn other_well_formed_versions_are_505_and_malformed_ones_400() {
    for line in ["GET / HTTP/1.2", "GET / HTTP/2.0", "GET / HTTP/0.9"] {
        let buf = format!("{line}\r\nHost: a\r\n\r\n");
        assert_eq!(refused(buf.as_bytes()), Kind::VersionNotSupported, "{line}");
    }
    assert_eq!(refused(b"GET / HTTP/2"), Kind::VersionNotSupported);
    for line in [
        "GET / http/1.1",
        "GET / HTTX/1.1",
        "GET / HTTP/11",
        "GET / HTTP/1.1.1",
        "GET / HTTP/3",
    ] {
        let buf = format!("{line}\r\nHost: a\r\n\r\n");
        let e = parse_with(buf.as_bytes(), LIMITS).unwrap_err();
        assert_eq!(e.status(), 400, "{line}");
    }
}

#[test]
fn keep_alive_follows_version_and_connection() {
    let ka = |buf: &str| with_head(buf.as_bytes(), |h| h.keep_alive);
    assert!(ka("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    assert!(!ka(
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    ));
    assert!(!ka(
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Close\r\n\r\n"
    ));
    assert!(!ka(
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: x\r\nConnection: close\r\n\r\n"
    ));
    assert!(!ka("GET / HTTP/1.0\r\n\r\n"));
    assert!(ka("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
    assert!(!ka(
        "GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n"
    ));
    assert!(ka(
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n"
    ));
}

#[test]
fn expect_100_continue_is_detected_case_insensitively() {
    let ec = |extra: &str| with_head(&post(extra), |h| h.expect_continue);
    assert!(ec("Expect: 100-continue\r\n"));
    assert!(ec("expect: 100-Continue\r\n"));
    assert!(!ec("Expect: 100-continue-not\r\n"));
    assert!(!ec(""));
}

#[test]
fn upgrade_needs_the_connection_option_and_the_upgrade_header() {
    let up = |extra: &str| with_head(&post(extra), |h| h.upgrade);
    assert!(up("Connection: Upgrade\r\nUpgrade: websocket\r\n"));
    assert!(up("Upgrade: h2c\r\nConnection: keep-alive, upgrade\r\n"));
    assert!(!up("Upgrade: websocket\r\n"));
    assert!(!up("Connection: upgrade\r\n"));
}
