//! curl as a test client (HTTP/2, TLS, client certificates: a real client's behaviour).

use std::process::Command;

/// Runs `curl -sS --max-time 20 args...`; returns (success, stdout, stderr).
pub fn curl(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `curl -sS -T - -X POST args...` uploading `total` bytes of `byte` from its standard input,
/// written in blocks of `block` bytes (a streamed body of unknown length: chunked on HTTP/1.1);
/// returns what it printed.
pub fn upload(args: &[&str], total: u64, block: usize, byte: u8) -> String {
    use std::io::Write;
    let mut child = Command::new("curl")
        .args(["-sS", "-T", "-", "-X", "POST"])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("curl runs");
    {
        let mut stdin = child.stdin.take().expect("piped stdin");
        let block = vec![byte; block];
        let mut left = total;
        while left > 0 {
            let k = left.min(block.len() as u64) as usize;
            stdin.write_all(&block[..k]).expect("upload block");
            left -= k as u64;
        }
    }
    let out = child.wait_with_output().expect("curl ends");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
