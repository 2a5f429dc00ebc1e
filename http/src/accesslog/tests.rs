use super::*;
use serde_json::Value;
use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Instant;

/// A fresh directory for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("ringgate-accesslog-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Waits for the log thread to make progress (a liveness guard, not a timing assertion).
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn entry<'a>(request_id: &'a [u8], path: &'a [u8]) -> AccessEntry<'a> {
    AccessEntry {
        start_unix_micros: 1_700_000_000_000_000,
        request_id,
        trace_id: b"",
        method: b"GET",
        path,
        route: b"r",
        upstream: Some("127.0.0.1:9000".parse().unwrap()),
        status: 200,
        bytes_in: 100,
        bytes_out: 200,
        total_micros: 1_000,
        upstream_micros: Some(800),
        client_ip: "10.0.0.1".parse().unwrap(),
        identity: b"",
        reason: "",
        detail: "",
        cache: "",
        worker: 0,
    }
}

fn read_lines(path: &Path) -> Vec<Value> {
    let text = fs::read_to_string(path).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect()
}

#[test]
fn lines_are_json_and_round_trip_the_fields() {
    let dir = temp_dir("roundtrip");
    let path = dir.join("access.log");
    let log = AccessLog::start(LogDest::File(path.clone()), 8, 64).unwrap();
    let mut w = log.writer();
    let gateway_made = AccessEntry {
        start_unix_micros: 1_700_000_000_123_456,
        request_id: b"req-\"1\"\\x",
        trace_id: b"",
        method: b"G\x1bET",
        path: b"/a b/\x01\x1f\n\xff\xfe/\xc3\xa9/\xf0\x9f\x98\x80/\xc2\x9b",
        route: b"",
        upstream: None,
        status: 404,
        bytes_in: 123,
        bytes_out: 0,
        total_micros: 1_500,
        upstream_micros: None,
        client_ip: "203.0.113.9".parse().unwrap(),
        identity: b"",
        reason: "no_route",
        detail: "",
        cache: "",
        worker: 3,
    };
    let proxied = AccessEntry {
        start_unix_micros: 951_782_400_000_001,
        request_id: b"abc",
        trace_id: b"4bf92f3577b34da6a3ce929d0e0e4736",
        method: b"POST",
        path: b"/users/42",
        route: b"users",
        upstream: Some("[::1]:8080".parse().unwrap()),
        status: 201,
        bytes_in: u64::MAX,
        bytes_out: 4_096,
        total_micros: 2_000,
        upstream_micros: Some(900),
        client_ip: "2001:db8::1".parse().unwrap(),
        identity: b"team-\"a\"",
        reason: "",
        detail: "",
        cache: "",
        worker: 65_535,
    };
    w.log(&gateway_made);
    w.log(&proxied);
    w.flush();
    log.stop().unwrap();

    let raw = fs::read(&path).unwrap();
    assert!(raw.ends_with(b"\n"));
    // One line per record, and no raw control byte inside one.
    assert_eq!(raw.iter().filter(|&&b| b == b'\n').count(), 2);
    assert!(!raw.iter().any(|&b| (b < 0x20 && b != b'\n') || b == 0x7f));
    assert!(raw.starts_with(b"{\"time\":\"2023-11-14T22:13:20.123456Z\",\"request_id\":"));

    let lines = read_lines(&path);
    let a = lines[0].as_object().unwrap();
    assert_eq!(a["time"], "2023-11-14T22:13:20.123456Z");
    assert_eq!(a["request_id"], "req-\"1\"\\x");
    assert!(!a.contains_key("trace_id"));
    assert_eq!(a["method"], "G\u{1b}ET");
    assert_eq!(
        a["path"],
        "/a b/\u{1}\u{1f}\n\u{ff}\u{fe}/\u{e9}/\u{1f600}/\u{9b}"
    );
    assert_eq!(a["route"], Value::Null);
    assert_eq!(a["upstream"], Value::Null);
    assert_eq!(a["status"], 404);
    assert_eq!(a["bytes_in"], 123);
    assert_eq!(a["bytes_out"], 0);
    assert_eq!(a["duration_us"], 1_500);
    assert_eq!(a["upstream_us"], Value::Null);
    assert_eq!(a["client_ip"], "203.0.113.9");
    assert!(!a.contains_key("identity"));
    assert_eq!(a["reason"], "no_route");
    assert_eq!(a["worker"], 3);
    assert_eq!(a.len(), 14);

    let b = lines[1].as_object().unwrap();
    assert_eq!(b["time"], "2000-02-29T00:00:00.000001Z");
    assert_eq!(b["request_id"], "abc");
    assert_eq!(b["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(b["method"], "POST");
    assert_eq!(b["path"], "/users/42");
    assert_eq!(b["route"], "users");
    assert_eq!(b["upstream"], "[::1]:8080");
    assert_eq!(b["status"], 201);
    assert_eq!(b["bytes_in"], u64::MAX);
    assert_eq!(b["bytes_out"], 4_096);
    assert_eq!(b["duration_us"], 2_000);
    assert_eq!(b["upstream_us"], 900);
    assert_eq!(b["client_ip"], "2001:db8::1");
    assert_eq!(b["identity"], "team-\"a\"");
    assert!(!b.contains_key("reason"));
    assert_eq!(b["worker"], 65_535);
    assert_eq!(b.len(), 15);

    assert_eq!(log.lines_written(), 2);
    assert_eq!(log.dropped_total(), 0);
    assert_eq!(log.io_errors(), 0);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn path_only_strips_query_and_fragment() {
    assert_eq!(path_only(b"/login?api_key=secret"), b"/login");
    assert_eq!(path_only(b"/a/b#frag"), b"/a/b");
    assert_eq!(path_only(b"/a?"), b"/a");
    assert_eq!(path_only(b"?x"), b"");
    assert_eq!(path_only(b"/plain"), b"/plain");
}

#[test]
fn the_log_is_given_the_path_only() {
    let dir = temp_dir("path-only");
    let path = dir.join("access.log");
    let log = AccessLog::start(LogDest::File(path.clone()), 8, 64).unwrap();
    let mut w = log.writer();
    // The caller's job: strip the query before logging.
    w.log(&entry(b"1", path_only(b"/login?api_key=s3cr3t-one")));
    // A caller that forgot: the writer cuts at the first `?` itself.
    w.log(&entry(b"2", b"/token?access_token=s3cr3t-two&x=1"));
    w.log(&entry(b"3", b"/plain/path"));
    w.flush();
    log.stop().unwrap();
    let raw = fs::read_to_string(&path).unwrap();
    assert!(!raw.contains("s3cr3t"), "{raw}");
    assert!(!raw.contains('?'), "{raw}");
    let paths: Vec<Value> = read_lines(&path)
        .iter()
        .map(|l| l["path"].clone())
        .collect();
    assert_eq!(paths, ["/login", "/token", "/plain/path"]);
    fs::remove_dir_all(&dir).unwrap();
}

/// The log thread writes into a FIFO that nobody reads yet, so it blocks once the pipe and its
/// buffer are full; the worker's `log` calls must all return, dropping and counting what the
/// queue cannot hold.
#[test]
fn a_full_queue_drops_and_counts_without_blocking() {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = temp_dir("fifo");
    let fifo = dir.join("pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    // A non-blocking reader lets the log open the FIFO for writing without waiting.
    let placeholder_reader = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let log = AccessLog::start(LogDest::File(fifo.clone()), 2, 64).unwrap();
    // A writer exists now, so a blocking open for reading returns at once.
    let mut reader = fs::File::open(&fifo).unwrap();
    drop(placeholder_reader);

    let mut w = log.writer();
    const PUSHED: u64 = 100_000;
    for i in 0..PUSHED {
        let id = i.to_string();
        w.log(&entry(
            id.as_bytes(),
            b"/some/fairly/ordinary/path/of/a/request",
        ));
    }
    w.flush();
    // Nothing has been read: at most the pipe, the output buffer, the queue and one batch in
    // hand can have taken records, far fewer than 100k.
    assert!(w.dropped() > 0);
    assert!(log.dropped_total() >= w.dropped());

    let reading = std::thread::spawn(move || {
        let mut text = String::new();
        reader.read_to_string(&mut text).unwrap();
        text
    });
    log.stop().unwrap();
    // The log thread has exited and closed its end: the reader sees the end of the stream.
    let text = reading.join().unwrap();
    let lines = text.lines().count() as u64;
    for l in text.lines() {
        let _: Value = serde_json::from_str(l).unwrap();
    }
    assert_eq!(lines, log.lines_written());
    assert_eq!(log.lines_written() + log.dropped_total(), PUSHED);
    assert!(log.lines_written() > 0);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_tiny_queue_accounts_for_every_record() {
    let dir = temp_dir("tiny-queue");
    let path = dir.join("access.log");
    let log = AccessLog::start(LogDest::File(path.clone()), 1, 64).unwrap();
    let mut writers = [log.writer(), log.writer()];
    const PUSHED: u64 = 100_000;
    for i in 0..PUSHED {
        let id = i.to_string();
        writers[(i % 2) as usize].log(&entry(id.as_bytes(), b"/p"));
    }
    for w in &mut writers {
        w.flush();
    }
    log.stop().unwrap();
    let dropped: u64 = writers.iter().map(|w| w.dropped()).sum();
    assert_eq!(log.dropped_total(), dropped);
    assert_eq!(log.lines_written() + log.dropped_total(), PUSHED);
    assert_eq!(read_lines(&path).len() as u64, log.lines_written());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn reopen_moves_new_lines_to_a_new_file() {
    let dir = temp_dir("reopen");
    let path = dir.join("access.log");
    let rotated = dir.join("access.log.1");
    let log = AccessLog::start(LogDest::File(path.clone()), 16, 8).unwrap();
    let mut w = log.writer();
    for i in 0..20 {
        let id = format!("old-{i}");
        w.log(&entry(id.as_bytes(), b"/"));
    }
    w.flush();
    // The old lines must have reached the thread (not necessarily the file) before the rename.
    wait_until("the old lines", || log.lines_written() == 20);
    fs::rename(&path, &rotated).unwrap();
    log.reopen_handle().reopen();
    for i in 0..30 {
        let id = format!("new-{i}");
        w.log(&entry(id.as_bytes(), b"/"));
    }
    w.flush();
    log.stop().unwrap();

    let ids = |p: &Path| -> Vec<String> {
        read_lines(p)
            .iter()
            .map(|l| l["request_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let old = ids(&rotated);
    let new = ids(&path);
    assert_eq!(old, (0..20).map(|i| format!("old-{i}")).collect::<Vec<_>>());
    assert_eq!(new, (0..30).map(|i| format!("new-{i}")).collect::<Vec<_>>());
    assert_eq!(log.io_errors(), 0);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn reopen_without_rotation_keeps_appending() {
    let dir = temp_dir("reopen-same");
    let path = dir.join("access.log");
    let log = AccessLog::start(LogDest::File(path.clone()), 4, 4).unwrap();
    let mut w = log.writer();
    w.log(&entry(b"1", b"/"));
    w.flush();
    log.reopen();
    w.log(&entry(b"2", b"/"));
    w.flush();
    log.stop().unwrap();
    assert_eq!(read_lines(&path).len(), 2);
    fs::remove_dir_all(&dir).unwrap();
}

/// Batches come back for reuse: one writer never has more than the queue, the one batch the
/// thread is writing and its own in existence, however many it sends.
#[test]
fn batches_are_reused() {
    let dir = temp_dir("reuse");
    let path = dir.join("access.log");
    const QUEUE: u64 = 4;
    let log = AccessLog::start(LogDest::File(path.clone()), QUEUE as usize, 8).unwrap();
    let mut w = log.writer();
    assert_eq!(log.batches_allocated(), 1);
    const PUSHED: u64 = 8 * 2_000;
    for i in 0..PUSHED {
        let id = i.to_string();
        w.log(&entry(id.as_bytes(), b"/reuse"));
    }
    w.flush();
    log.stop().unwrap();
    assert!(
        log.batches_allocated() <= 1 + QUEUE + 1,
        "{} batches for {} sends",
        log.batches_allocated(),
        PUSHED / 8
    );
    assert_eq!(log.lines_written() + log.dropped_total(), PUSHED);
    fs::remove_dir_all(&dir).unwrap();
}

/// In lock-step (each batch written before the next is sent) the writer gets its batch back
/// every time: the warm pipeline makes no batch at all.
#[test]
fn a_warm_pipeline_allocates_no_batch() {
    let dir = temp_dir("warm");
    let path = dir.join("access.log");
    let log = AccessLog::start(LogDest::File(path.clone()), 4, 4).unwrap();
    let mut w = log.writer();
    let mut sent = 0;
    let mut round = |w: &mut AccessLogWriter| {
        for _ in 0..4 {
            w.log(&entry(b"id", b"/warm"));
        }
        sent += 4;
        // Written, and the emptied batch back in the spare queue.
        wait_until("the batch", || {
            log.lines_written() == sent && log.spare_rx.len() == 1
        });
    };
    round(&mut w);
    round(&mut w);
    let warm = log.batches_allocated();
    for _ in 0..50 {
        round(&mut w);
    }
    assert_eq!(log.batches_allocated(), warm);
    // The writer's first batch, and the one it took when that first one left.
    assert_eq!(warm, 2);
    drop(w);
    log.stop().unwrap();
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn stop_drains_the_queue() {
    let dir = temp_dir("drain");
    let path = dir.join("access.log");
    // Room for every batch: no send can fail, so every record must be written.
    let log = AccessLog::start(LogDest::File(path.clone()), 256, 16).unwrap();
    let mut w = log.writer();
    for i in 0..3_000u32 {
        let id = i.to_string();
        w.log(&entry(id.as_bytes(), b"/drain"));
    }
    w.flush();
    log.stop().unwrap();
    assert_eq!(log.dropped_total(), 0);
    let lines = read_lines(&path);
    assert_eq!(lines.len(), 3_000);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["request_id"], i.to_string());
    }
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn writers_outlive_stop() {
    let dir = temp_dir("outlive");
    let path = dir.join("access.log");
    let log = AccessLog::start(LogDest::File(path.clone()), 4, 8).unwrap();
    let mut w = log.writer();
    w.log(&entry(b"before", b"/"));
    w.flush();
    log.stop().unwrap();
    // Stopping twice is harmless.
    log.stop().unwrap();
    for _ in 0..100 {
        w.log(&entry(b"after", b"/"));
    }
    w.flush();
    assert_eq!(w.dropped(), 100);
    let mut late = log.writer();
    late.log(&entry(b"late", b"/"));
    late.flush();
    assert_eq!(late.dropped(), 1);
    // Dropped unflushed: its record is counted too.
    w.log(&entry(b"unflushed", b"/"));
    drop(w);
    assert_eq!(log.lines_written(), 1);
    assert_eq!(log.dropped_total(), 102);
    drop(log);
    late.log(&entry(b"orphan", b"/"));
    late.flush();
    assert_eq!(late.dropped(), 2);
    assert_eq!(read_lines(&path).len(), 1);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn dropping_a_writer_flushes_it() {
    let dir = temp_dir("writer-drop");
    let path = dir.join("access.log");
    let log = AccessLog::start(LogDest::File(path.clone()), 4, 64).unwrap();
    let mut w = log.writer();
    for _ in 0..3 {
        w.log(&entry(b"x", b"/"));
    }
    assert_eq!(w.pending(), 3);
    drop(w);
    drop(log);
    assert_eq!(read_lines(&path).len(), 3);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failed_open_is_reported() {
    let dir = temp_dir("no-dir");
    let missing = dir.join("absent").join("access.log");
    assert!(AccessLog::start(LogDest::File(missing), 4, 4).is_err());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn stdout_starts_and_stops() {
    let log = AccessLog::start(LogDest::Stdout, 4, 4).unwrap();
    log.reopen(); // A no-op for stdout.
    log.stop().unwrap();
    assert_eq!(log.lines_written(), 0);
}

#[test]
fn files_are_not_world_readable() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("mode");
    let path = dir.join("access.log");
    let log = AccessLog::start(LogDest::File(path.clone()), 4, 4).unwrap();
    log.stop().unwrap();
    let mode = fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o007, 0, "mode {mode:o}");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ip_and_socket_addresses_print_plainly() {
    let v4: IpAddr = "192.0.2.1".parse().unwrap();
    let sa: SocketAddr = "[2001:db8::2]:443".parse().unwrap();
    let dir = temp_dir("addrs");
    let path = dir.join("access.log");
    let log = AccessLog::start(LogDest::File(path.clone()), 4, 4).unwrap();
    let mut w = log.writer();
    let mut e = entry(b"a", b"/");
    e.client_ip = v4;
    e.upstream = Some(sa);
    w.log(&e);
    w.flush();
    log.stop().unwrap();
    let l = &read_lines(&path)[0];
    assert_eq!(l["client_ip"], "192.0.2.1");
    assert_eq!(l["upstream"], "[2001:db8::2]:443");
    fs::remove_dir_all(&dir).unwrap();
}
