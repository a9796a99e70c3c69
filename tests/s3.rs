//! S3 regions given bad input: wrong credentials, a missing bucket, a server
//! that ignores conditional puts, a server whose clock is off. Each gets one
//! clear line from the CLI; nothing unsafe is saved; no secret is printed.

mod common;

use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{TEST_KEYS, add_s3_region, assert_one_error_line, lifeboat, run, stderr, stdout};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// `region add` of an S3 region on `endpoint` with the test keys.
fn add_s3(data: &std::path::Path, name: &str, bucket: &str, endpoint: &str) -> Output {
    add_s3_region(lifeboat(data), name, bucket, endpoint, TEST_KEYS, &[])
}

fn regions_file(data: &std::path::Path) -> String {
    std::fs::read_to_string(data.join("regions.ron")).unwrap_or_default()
}

#[test]
fn wrong_credentials_are_refused_without_printing_the_secret() {
    if !common::s3_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = "sEcReT-must-not-leak-9f8e7d";
    let mut cmd = lifeboat(dir.path());
    cmd.env("WRONG_KEY", "lifeboat-nobody")
        .env("WRONG_SECRET", secret);
    let endpoint = std::env::var("LIFEBOAT_S3_A").expect("endpoint");
    let keys = ["WRONG_KEY", "WRONG_SECRET"];
    let out = add_s3_region(cmd, "west", "lifeboat-test", &endpoint, keys, &[]);
    assert_one_error_line(
        &out,
        1,
        &["region `west`", "access denied", "InvalidAccessKeyId"],
    );
    assert!(!stderr(&out).contains(secret) && !stdout(&out).contains(secret));
    assert!(!regions_file(dir.path()).contains("west"), "not saved");
}

#[test]
fn a_missing_bucket_says_to_create_it() {
    if !common::s3_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let endpoint = std::env::var("LIFEBOAT_S3_MOTO").expect("endpoint");
    let out = add_s3(dir.path(), "west", "no-such-bucket-here", &endpoint);
    assert_one_error_line(
        &out,
        1,
        &["region `west`", "the bucket does not exist", "create it"],
    );
    assert!(!regions_file(dir.path()).contains("west"), "not saved");
}

/// A proxy in front of an S3 server that drops `If-None-Match` and
/// `If-Match` from every request: a server that speaks S3 but ignores
/// conditional puts, as some do. One request per connection.
async fn ignoring_conditions(upstream: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(forward_one(client, upstream));
        }
    });
    addr
}

async fn forward_one(mut client: TcpStream, upstream: SocketAddr) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(at) = find(&buf, b"\r\n\r\n") {
            break at;
        }
        let mut chunk = [0u8; 8192];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut body = buf[head_end + 4..].to_vec();
    let length = header(&head, "content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    while body.len() < length {
        let mut chunk = [0u8; 65536];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let request = rewrite_head(&head, &["if-none-match", "if-match", "connection"]);
    let mut server = TcpStream::connect(upstream).await?;
    server.write_all(request.as_bytes()).await?;
    server.write_all(&body).await?;
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), server.read_to_end(&mut reply))
        .await
        .map_err(|_| std::io::Error::other("upstream did not close"))??;
    let reply_end = find(&reply, b"\r\n\r\n").unwrap_or(reply.len());
    let reply_head = String::from_utf8_lossy(&reply[..reply_end]).into_owned();
    client
        .write_all(rewrite_head(&reply_head, &["connection"]).as_bytes())
        .await?;
    client
        .write_all(reply.get(reply_end + 4..).unwrap_or_default())
        .await?;
    client.shutdown().await
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// The head without the `drop` headers, with `Connection: close`, ended.
fn rewrite_head(head: &str, drop: &[&str]) -> String {
    let mut lines = head.split("\r\n");
    let mut out = format!("{}\r\n", lines.next().unwrap_or_default());
    for line in lines {
        let key = line.split(':').next().unwrap_or_default().trim();
        if !drop.iter().any(|d| key.eq_ignore_ascii_case(d)) {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_ignores_conditional_puts_is_refused() {
    if !common::s3_available() {
        return;
    }
    let moto: url::Url = std::env::var("LIFEBOAT_S3_MOTO")
        .expect("endpoint")
        .parse()
        .expect("url");
    let upstream = SocketAddr::new("127.0.0.1".parse().expect("ip"), moto.port().expect("port"));
    let proxy = ignoring_conditions(upstream).await;
    let endpoint = format!("http://{proxy}");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_path_buf();
    let out =
        tokio::task::spawn_blocking(move || add_s3(&data, "west", "lifeboat-test", &endpoint))
            .await
            .expect("join");
    assert_one_error_line(
        &out,
        1,
        &["region `west`", "ignores conditional puts", "SlateDB needs"],
    );
    assert!(!regions_file(dir.path()).contains("west"), "not saved");

    // Saved without the check, it is still refused before replication
    // starts, and `region check` marks it FAILED.
    let data = dir.path().to_path_buf();
    let endpoint = format!("http://{proxy}");
    let (check, replicate) = tokio::task::spawn_blocking(move || {
        let added = add_s3_region(
            lifeboat(&data),
            "west",
            "lifeboat-test",
            &endpoint,
            TEST_KEYS,
            &["--no-check"],
        );
        assert!(added.status.success(), "{}", stderr(&added));
        let created = run(
            lifeboat(&data),
            &["db", "create", "orders", "--region", "us-east-1"],
        );
        assert!(created.status.success(), "{}", stderr(&created));
        (
            run(lifeboat(&data), &["region", "check", "west"]),
            run(
                lifeboat(&data),
                &["replicate", "--from", "us-east-1", "--to", "west", "--once"],
            ),
        )
    })
    .await
    .expect("join");
    assert_eq!(check.status.code(), Some(1), "{}", stdout(&check));
    assert!(
        stdout(&check).contains("FAILED") && stdout(&check).contains("conditional puts"),
        "{}{}",
        stdout(&check),
        stderr(&check)
    );
    assert_one_error_line(
        &replicate,
        1,
        &["region `west`", "ignores conditional puts"],
    );
}

/// A moto server whose clock runs `offset` ahead (libfaketime), on a free port.
struct SkewedServer {
    child: Child,
    endpoint: String,
}

impl Drop for SkewedServer {
    fn drop(&mut self) {
        // `faketime` runs moto as its child: end the whole process group,
        // or moto outlives the test.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn skewed_moto(offset: &str) -> Option<SkewedServer> {
    let moto = std::env::var("LIFEBOAT_MOTO").expect("moto");
    if Command::new("faketime").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs faketime: scripts/test installs it"
        );
        eprintln!("note: clock skew test skipped; install faketime");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = Command::new("faketime")
        .process_group(0)
        .args([
            "-f",
            offset,
            &moto,
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("faketime moto starts");
    let server = SkewedServer {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    // Wait for it, then make the bucket (moto does not check signatures).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            let put = format!(
                "PUT /lifeboat-test HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let mut reply = String::new();
            if conn.write_all(put.as_bytes()).is_ok()
                && conn.read_to_string(&mut reply).is_ok()
                && reply.starts_with("HTTP/1.1 200")
            {
                return Some(server);
            }
        }
        assert!(Instant::now() < deadline, "skewed moto did not start");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_region_whose_clock_is_off_gets_a_warning() {
    if !common::s3_available() {
        return;
    }
    let Some(server) = skewed_moto("+30s") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let out = add_s3(dir.path(), "skewed", "lifeboat-test", &server.endpoint);
    assert!(out.status.success(), "{}", stderr(&out));
    let warning = stderr(&out);
    assert!(
        warning.starts_with("warning: region `skewed`: its clock is")
            && warning.contains("s ahead of this machine's")
            && warning.contains("NTP"),
        "{warning}"
    );
    let check = run(lifeboat(dir.path()), &["region", "check", "--json"]);
    assert!(check.status.success(), "{}", stderr(&check));
    let rows: serde_json::Value = serde_json::from_str(&stdout(&check)).expect("json");
    let skew = rows
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["region"] == "skewed"))
        .and_then(|r| r["clock_skew_ms"].as_i64())
        .expect("skew reported");
    assert!((27_000..=31_000).contains(&skew), "{skew}");
    // The local regions agree with this machine: only `skewed` is named.
    assert_eq!(stderr(&check).lines().count(), 1, "{}", stderr(&check));
}
