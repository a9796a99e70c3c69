//! Cloud regions (S3, Azure, GCS) given bad input: wrong credentials, a
//! missing bucket or container, a server that ignores conditional puts, a
//! server whose clock is off; and the credential habits of each cloud (AWS
//! profiles and session tokens, Azure keys, SAS tokens and AZURE_*
//! variables, GCS credentials files). Each bad input gets one clear line
//! from the CLI; nothing unsafe is saved; no secret is printed or saved.

mod common;

use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{TEST_KEYS, add_s3_region, assert_one_error_line, env, lifeboat, run, stderr, stdout};
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
    proxy(upstream, &["if-none-match", "if-match"], None).await
}

/// The heads of the requests a proxy passed on.
type Seen = Arc<Mutex<Vec<String>>>;

/// A proxy in front of `upstream` that drops the `drop` headers from every
/// request and keeps each request's head in `seen`.
async fn proxy(
    upstream: SocketAddr,
    drop: &'static [&'static str],
    seen: Option<Seen>,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(forward_one(client, upstream, drop, seen.clone()));
        }
    });
    addr
}

async fn forward_one(
    mut client: TcpStream,
    upstream: SocketAddr,
    drop: &'static [&'static str],
    seen: Option<Seen>,
) -> std::io::Result<()> {
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
    if let Some(seen) = &seen {
        seen.lock().expect("seen").push(head.clone());
    }
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
    let mut dropped = drop.to_vec();
    dropped.push("connection");
    let request = rewrite_head(&head, &dropped);
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

/// The loopback address of an endpoint URL.
fn socket_of(endpoint: &str) -> SocketAddr {
    let url: url::Url = endpoint.parse().expect("url");
    SocketAddr::new("127.0.0.1".parse().expect("ip"), url.port().expect("port"))
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
    let upstream = socket_of(&std::env::var("LIFEBOAT_S3_MOTO").expect("endpoint"));
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

/// `lifeboat` with none of the clouds' credential variables of this
/// machine, and a home of its own (no ~/.aws, no gcloud login): each test
/// sets only what it means to.
fn bare(data: &std::path::Path) -> Command {
    let mut cmd = lifeboat(data);
    for (var, _) in std::env::vars_os() {
        let var = var.to_string_lossy().into_owned();
        if var.starts_with("AWS_") || var.starts_with("AZURE_") || var.starts_with("GOOGLE_") {
            cmd.env_remove(var);
        }
    }
    cmd.env_remove("SERVICE_ACCOUNT").env_remove("MSI_ENDPOINT");
    let home = data.join("empty-home");
    std::fs::create_dir_all(&home).expect("home");
    cmd.env("HOME", home);
    cmd
}

/// `region add NAME WHERE/NAME-RANDOM --endpoint ENDPOINT` and `extra`,
/// `at` being a scheme and a bucket or container (`az://lifeboat-test`).
fn add_cloud(mut cmd: Command, at: &str, name: &str, endpoint: &str, extra: &[&str]) -> Output {
    let url = format!("{at}/{name}-{:08x}", fastrand::u32(..));
    cmd.args(["region", "add", name, &url, "--endpoint", endpoint]);
    cmd.args(extra);
    cmd.output().expect("lifeboat runs")
}

/// `region add NAME az://CONTAINER/PREFIX --endpoint AZURITE` and `extra`.
fn add_azure(cmd: Command, name: &str, container: &str, extra: &[&str]) -> Output {
    let at = format!("az://{container}");
    add_cloud(cmd, &at, name, &env("LIFEBOAT_AZURITE"), extra)
}

/// The regions file holds where each secret comes from, never a secret.
fn assert_no_secret_saved(data: &std::path::Path, secrets: &[&str]) {
    let saved = regions_file(data);
    for secret in secrets {
        assert!(!saved.contains(secret), "a secret was saved: {saved}");
    }
}

#[test]
fn an_azure_region_takes_an_account_key_a_sas_token_or_the_azure_variables() {
    if !common::azure_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (account, key, sas) = (
        env("LIFEBOAT_AZURE_ACCOUNT"),
        env("LIFEBOAT_AZURE_KEY"),
        env("LIFEBOAT_AZURE_SAS"),
    );
    let container = env("LIFEBOAT_AZURE_CONTAINER");
    // The account key, named by variable.
    let mut cmd = bare(dir.path());
    cmd.env("MY_AZURE_KEY", &key);
    let keyed = add_azure(
        cmd,
        "keyed",
        &container,
        &["--account", &account, "--account-key-env", "MY_AZURE_KEY"],
    );
    assert!(keyed.status.success(), "{}", stderr(&keyed));
    // A SAS token, named by variable.
    let mut cmd = bare(dir.path());
    cmd.env("MY_AZURE_SAS", &sas);
    let signed = add_azure(
        cmd,
        "signed",
        &container,
        &["--account", &account, "--sas-token-env", "MY_AZURE_SAS"],
    );
    assert!(signed.status.success(), "{}", stderr(&signed));
    // The AZURE_* variables alone: the account and its key, or a SAS.
    let mut cmd = bare(dir.path());
    cmd.env("AZURE_STORAGE_ACCOUNT_NAME", &account)
        .env("AZURE_STORAGE_ACCOUNT_KEY", &key);
    let from_env = add_azure(cmd, "from-env", &container, &[]);
    assert!(from_env.status.success(), "{}", stderr(&from_env));
    let mut cmd = bare(dir.path());
    cmd.env("AZURE_STORAGE_ACCOUNT_NAME", &account)
        .env("AZURE_STORAGE_SAS_KEY", &sas);
    let sas_env = add_azure(cmd, "sas-env", &container, &[]);
    assert!(sas_env.status.success(), "{}", stderr(&sas_env));
    // The region's SAS token wins over a wrong key in the environment.
    let mut cmd = bare(dir.path());
    cmd.env("MY_AZURE_SAS", &sas)
        .env("AZURE_STORAGE_ACCOUNT_KEY", "d3Jvbmcta2V5LXdyb25nLWtleQ==");
    let over_env = add_azure(
        cmd,
        "over-env",
        &container,
        &["--account", &account, "--sas-token-env", "MY_AZURE_SAS"],
    );
    assert!(over_env.status.success(), "{}", stderr(&over_env));
    assert_no_secret_saved(dir.path(), &[&key, &sas]);
    let saved = regions_file(dir.path());
    assert!(
        saved.contains("account_key_env: Some(\"MY_AZURE_KEY\")")
            && saved.contains("sas_token_env: Some(\"MY_AZURE_SAS\")"),
        "{saved}"
    );
    // A database lives there: each region is a real store.
    let mut cmd = bare(dir.path());
    cmd.env("MY_AZURE_SAS", &sas).env("MY_AZURE_KEY", &key);
    let out = cmd
        .args(["db", "create", "orders", "--region", "signed"])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_bad_input_gets_one_line_each() {
    if !common::azure_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (account, key) = (env("LIFEBOAT_AZURE_ACCOUNT"), env("LIFEBOAT_AZURE_KEY"));
    let container = env("LIFEBOAT_AZURE_CONTAINER");
    let data = dir.path().to_path_buf();
    let wrong_key = "c2VjcmV0LWtleS10aGF0LW11c3Qtbm90LWxlYWstOWY4ZQ==";
    // The same token with its signature altered: refused by the server,
    // and its URL (which holds the token) never printed.
    let tampered_sas = env("LIFEBOAT_AZURE_SAS").replace("sig=", "sig=AAAA");
    let signature = tampered_sas
        .split('&')
        .find_map(|pair| pair.strip_prefix("sig="))
        .expect("a signature")
        .to_string();
    // What, the variables set, the container, the flags, the words said.
    type Case<'a> = (
        &'a str,
        Vec<(&'a str, String)>,
        String,
        Vec<&'a str>,
        Vec<&'a str>,
    );
    let cases: Vec<Case> = vec![
        (
            "wrong key",
            vec![("K", wrong_key.to_string())],
            container.clone(),
            vec!["--account", &account, "--account-key-env", "K"],
            vec!["access denied", "credentials"],
        ),
        (
            "missing container",
            vec![("K", key.clone())],
            "no-such-container".to_string(),
            vec!["--account", &account, "--account-key-env", "K"],
            vec!["the container does not exist", "create it"],
        ),
        (
            "a key that is not one",
            vec![("K", "not a key!".to_string())],
            container.clone(),
            vec!["--account", &account, "--account-key-env", "K"],
            vec!["`K` does not hold an account key", "Access keys"],
        ),
        (
            "the variable unset",
            vec![],
            container.clone(),
            vec!["--account", &account, "--account-key-env", "UNSET_KEY_VAR"],
            vec!["`UNSET_KEY_VAR`", "is not set"],
        ),
        (
            "no account",
            vec![("K", key.clone())],
            container.clone(),
            vec!["--account-key-env", "K"],
            vec!["no Azure storage account", "--account"],
        ),
        (
            "a SAS token that is wrong",
            vec![("S", tampered_sas.clone())],
            container.clone(),
            vec!["--account", &account, "--sas-token-env", "S"],
            vec!["access denied"],
        ),
        (
            "a SAS token without a signature",
            vec![("S", "sv=2024-01-01&sp=rwdl".to_string())],
            container.clone(),
            vec!["--account", &account, "--sas-token-env", "S"],
            vec!["does not hold a SAS token", "sig="],
        ),
        (
            "both a key and a token",
            vec![("K", key.clone()), ("S", key.clone())],
            container.clone(),
            vec![
                "--account",
                &account,
                "--account-key-env",
                "K",
                "--sas-token-env",
                "S",
            ],
            vec!["--account-key-env or --sas-token-env, not both"],
        ),
        (
            "a container name Azure refuses",
            vec![],
            "Bad_Container".to_string(),
            vec!["--account", &account],
            vec!["not an Azure container name", "lowercase"],
        ),
        (
            "an S3 option",
            vec![],
            container.clone(),
            vec!["--account", &account, "--s3-region", "eu-west-1"],
            vec![
                "--s3-region applies to s3:// regions only",
                "an Azure container",
            ],
        ),
    ];
    for (what, vars, container, flags, words) in cases {
        let mut cmd = bare(&data);
        for (var, value) in &vars {
            cmd.env(var, value);
        }
        let out = add_azure(cmd, "west", &container, &flags);
        let mut expect = vec!["region `west`"];
        expect.extend(words);
        println!("{what}: {}", stderr(&out).trim());
        let refused_by_server = [
            "wrong key",
            "missing container",
            "a SAS token that is wrong",
        ];
        assert_one_error_line(
            &out,
            if refused_by_server.contains(&what) {
                1
            } else {
                2
            },
            &expect,
        );
        let printed = format!("{}{}", stderr(&out), stdout(&out));
        assert!(
            !printed.contains(wrong_key) && !printed.contains(&signature),
            "{what}: a secret was printed: {printed}"
        );
        assert!(!regions_file(&data).contains("west"), "{what}: not saved");
    }

    // Azurite behind a proxy that drops If-None-Match and If-Match: a SAS
    // token signs the URL, not the headers, so what reaches the server is
    // a well-signed put that ignores conditions.
    let proxy = ignoring_conditions(socket_of(&env("LIFEBOAT_AZURITE"))).await;
    let endpoint = format!("http://{proxy}/{account}");
    let sas = env("LIFEBOAT_AZURE_SAS");
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = bare(&data);
        cmd.env("S", &sas);
        let at = format!("az://{container}");
        let flags = ["--account", &account, "--sas-token-env", "S"];
        add_cloud(cmd, &at, "west", &endpoint, &flags)
    })
    .await
    .expect("join");
    assert_one_error_line(
        &out,
        1,
        &["region `west`", "ignores conditional puts", "Azurite"],
    );
    assert!(!regions_file(dir.path()).contains("west"), "not saved");
}

/// `region add NAME gs://BUCKET/PREFIX --endpoint` the GCS emulator (or
/// `endpoint`), and `extra`.
fn add_gcs(cmd: Command, name: &str, bucket: &str, endpoint: &str, extra: &[&str]) -> Output {
    add_cloud(cmd, &format!("gs://{bucket}"), name, endpoint, extra)
}

/// The only GCS emulator in the registries here ignores preconditions
/// (and gives a written object no version): it is refused with the same
/// line as an S3 server that ignores them, whether its credentials file is
/// named by the region or found through GOOGLE_APPLICATION_CREDENTIALS.
#[test]
fn a_gcs_server_that_ignores_preconditions_is_refused_and_bad_input_gets_one_line() {
    if !common::gcs_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (endpoint, bucket) = (env("LIFEBOAT_GCS"), env("LIFEBOAT_GCS_BUCKET"));
    let credentials = env("LIFEBOAT_GCS_CREDENTIALS");
    let mut cmd = bare(dir.path());
    cmd.env("MY_GCS_FILE", &credentials);
    let named = add_gcs(
        cmd,
        "west",
        &bucket,
        &endpoint,
        &["--credentials-env", "MY_GCS_FILE"],
    );
    assert_one_error_line(
        &named,
        1,
        &[
            "region `west`",
            "ignores conditional puts",
            "Google Cloud Storage",
        ],
    );
    let mut cmd = bare(dir.path());
    cmd.env("GOOGLE_APPLICATION_CREDENTIALS", &credentials);
    let chained = add_gcs(cmd, "west", &bucket, &endpoint, &[]);
    assert_one_error_line(&chained, 1, &["region `west`", "ignores conditional puts"]);
    assert!(!regions_file(dir.path()).contains("west"), "not saved");

    let not_json = dir.path().join("key.txt");
    std::fs::write(&not_json, "not json").expect("write");
    let wrong_type = dir.path().join("wrong.json");
    std::fs::write(&wrong_type, r#"{"type": "external_account"}"#).expect("write");
    let cases = [
        (
            "missing bucket",
            "nosuchbucket",
            credentials.clone(),
            vec!["the bucket does not exist", "create it"],
        ),
        (
            "no such file",
            bucket.as_str(),
            "/nonexistent/key.json".to_string(),
            vec!["(named by GOOGLE_APPLICATION_CREDENTIALS) cannot be opened"],
        ),
        (
            "not JSON",
            bucket.as_str(),
            not_json.display().to_string(),
            vec!["is not a JSON credentials file"],
        ),
        (
            "a type lifeboat does not take",
            bucket.as_str(),
            wrong_type.display().to_string(),
            vec!["`external_account`", "service-account key"],
        ),
    ];
    for (what, bucket, file, words) in cases {
        let mut cmd = bare(dir.path());
        cmd.env("GOOGLE_APPLICATION_CREDENTIALS", &file);
        let out = add_gcs(cmd, "west", bucket, &endpoint, &[]);
        println!("{what}: {}", stderr(&out).trim());
        let mut expect = vec!["region `west`"];
        expect.extend(words);
        assert_one_error_line(&out, if what == "missing bucket" { 1 } else { 2 }, &expect);
    }
    let out = add_gcs(
        bare(dir.path()),
        "west",
        &bucket,
        &endpoint,
        &["--account", "x"],
    );
    assert_one_error_line(
        &out,
        2,
        &["--account applies to az:// regions only", "a GCS bucket"],
    );
}

/// A service-account key found through GOOGLE_APPLICATION_CREDENTIALS, or
/// named by the region over another in the environment, signs the
/// requests: each carries a bearer token issued by the key's account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_account_key_signs_the_requests_to_gcs() {
    if !common::gcs_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pem = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("openssl runs");
    assert!(pem.status.success(), "openssl: {}", stderr(&pem));
    let key = serde_json::json!({
        "type": "service_account",
        "client_email": "lifeboat-test@example-project.iam.gserviceaccount.com",
        "private_key_id": "k1",
        "private_key": String::from_utf8_lossy(&pem.stdout),
    });
    let key_file = dir.path().join("key.json");
    std::fs::write(&key_file, key.to_string()).expect("write");
    let seen: Seen = Arc::default();
    let proxy = proxy(
        socket_of(&env("LIFEBOAT_GCS")),
        &[],
        Some(Arc::clone(&seen)),
    )
    .await;
    let data = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = bare(&data);
        cmd.env("GOOGLE_APPLICATION_CREDENTIALS", &key_file);
        let chained = add_gcs(
            cmd,
            "west",
            &env("LIFEBOAT_GCS_BUCKET"),
            &format!("http://{proxy}"),
            &[],
        );
        assert_one_error_line(&chained, 1, &["ignores conditional puts"]);
        // The key the region names wins over a service account in the
        // environment (the emulator's, which sends no token at all).
        let mut cmd = bare(&data);
        cmd.env("MY_GCS_KEY", &key_file)
            .env("GOOGLE_SERVICE_ACCOUNT", env("LIFEBOAT_GCS_CREDENTIALS"));
        add_gcs(
            cmd,
            "west",
            &env("LIFEBOAT_GCS_BUCKET"),
            &format!("http://{proxy}"),
            &["--credentials-env", "MY_GCS_KEY"],
        )
    })
    .await
    .expect("join");
    // The emulator is refused all the same; what it was sent is the point.
    assert_one_error_line(&out, 1, &["ignores conditional puts"]);
    let heads = seen.lock().expect("seen").clone();
    assert!(!heads.is_empty(), "nothing reached the server");
    for head in &heads {
        let bearer = header(head, "authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_else(|| panic!("no bearer token: {head}"));
        let claims = bearer.split('.').nth(1).expect("a JWT");
        use base64::Engine as _;
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .expect("base64");
        let claims: serde_json::Value = serde_json::from_slice(&claims).expect("claims");
        assert_eq!(
            claims["iss"], "lifeboat-test@example-project.iam.gserviceaccount.com",
            "{claims}"
        );
    }
}

/// The S3 test server's keys in an AWS credentials file, as profiles.
fn aws_files(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let (key, secret) = (env("LIFEBOAT_S3_KEY"), env("LIFEBOAT_S3_SECRET"));
    let path = dir.join("credentials");
    std::fs::write(
        &path,
        format!(
            "[default]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n\n[lifeboat]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\nregion = us-east-1\n\n{extra}"
        ),
    )
    .expect("write");
    path
}

/// `region add NAME s3://lifeboat-test/PREFIX --endpoint` the first S3
/// server (or `endpoint`), and `extra`.
fn add_s3_bare(cmd: Command, name: &str, endpoint: &str, extra: &[&str]) -> Output {
    add_cloud(cmd, "s3://lifeboat-test", name, endpoint, extra)
}

#[test]
fn s3_keys_come_from_a_profile_as_aws_users_keep_them() {
    if !common::s3_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let endpoint = env("LIFEBOAT_S3_A");
    let secret = env("LIFEBOAT_S3_SECRET");
    let files = aws_files(
        dir.path(),
        "[assumed]\nrole_arn = arn:aws:iam::123456789012:role/dr\nsource_profile = default\n\n[keyless]\nregion = eu-west-1\n",
    );
    let profiles = |cmd: &mut Command| {
        cmd.env("AWS_SHARED_CREDENTIALS_FILE", &files)
            .env("AWS_CONFIG_FILE", dir.path().join("no-config"));
    };
    // Named in the region, by AWS_PROFILE, and the default profile.
    let mut cmd = bare(dir.path());
    profiles(&mut cmd);
    let named = add_s3_bare(cmd, "named", &endpoint, &["--profile", "lifeboat"]);
    assert!(named.status.success(), "{}", stderr(&named));
    let mut cmd = bare(dir.path());
    profiles(&mut cmd);
    cmd.env("AWS_PROFILE", "lifeboat");
    let by_env = add_s3_bare(cmd, "by-env", &endpoint, &[]);
    assert!(by_env.status.success(), "{}", stderr(&by_env));
    // A profile the region names wins over wrong keys in the environment.
    let mut cmd = bare(dir.path());
    profiles(&mut cmd);
    cmd.env("AWS_ACCESS_KEY_ID", "lifeboat-nobody")
        .env("AWS_SECRET_ACCESS_KEY", "wrong-secret");
    let over_env = add_s3_bare(cmd, "over-env", &endpoint, &["--profile", "lifeboat"]);
    assert!(over_env.status.success(), "{}", stderr(&over_env));
    // The AWS_* variables come before AWS_PROFILE, as in AWS's own tools.
    let mut cmd = bare(dir.path());
    profiles(&mut cmd);
    cmd.env("AWS_PROFILE", "nobody")
        .env("AWS_ACCESS_KEY_ID", env("LIFEBOAT_S3_KEY"))
        .env("AWS_SECRET_ACCESS_KEY", &secret);
    let aws_vars = add_s3_bare(cmd, "aws-vars", &endpoint, &[]);
    assert!(aws_vars.status.success(), "{}", stderr(&aws_vars));
    // ~/.aws/credentials itself, found through HOME.
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join(".aws")).expect("mkdir");
    std::fs::copy(&files, home.join(".aws/credentials")).expect("copy");
    let mut cmd = bare(dir.path());
    cmd.env("HOME", &home);
    let default = add_s3_bare(cmd, "default", &endpoint, &[]);
    assert!(default.status.success(), "{}", stderr(&default));
    assert_no_secret_saved(dir.path(), &[&secret]);
    assert!(
        regions_file(dir.path()).contains("profile: Some(\"lifeboat\")"),
        "{}",
        regions_file(dir.path())
    );

    let cases = [
        (
            "a profile that is not there",
            vec!["--profile", "nobody"],
            vec!["AWS profile `nobody`", "is not in", "aws configure"],
        ),
        (
            "a profile that assumes a role",
            vec!["--profile", "assumed"],
            vec!["`role_arn`", "export-credentials"],
        ),
        (
            "a profile without keys",
            vec!["--profile", "keyless"],
            vec!["has no aws_access_key_id", "aws configure"],
        ),
        (
            "a profile and key variables",
            vec![
                "--profile",
                "lifeboat",
                "--access-key-env",
                "A",
                "--secret-key-env",
                "B",
            ],
            vec!["--profile or the key env vars, not both"],
        ),
        (
            "a session token without keys",
            vec!["--session-token-env", "T"],
            vec!["--session-token-env goes with"],
        ),
    ];
    for (what, flags, words) in cases {
        let mut cmd = bare(dir.path());
        profiles(&mut cmd);
        let out = add_s3_bare(cmd, "west", &endpoint, &flags);
        println!("{what}: {}", stderr(&out).trim());
        let mut expect = vec!["region `west`"];
        expect.extend(words);
        assert_one_error_line(&out, 2, &expect);
        assert!(
            !stderr(&out).contains(&secret),
            "{what}: a secret was printed"
        );
    }
    let mut cmd = bare(dir.path());
    profiles(&mut cmd);
    cmd.env("AWS_PROFILE", "nobody");
    let out = add_s3_bare(cmd, "west", &endpoint, &[]);
    assert_one_error_line(
        &out,
        2,
        &["AWS profile `nobody` (AWS_PROFILE)", "is not in"],
    );
}

/// Temporary keys: the session token, named by variable or kept in a
/// profile, goes with every request (signed, under x-amz-security-token).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_session_token_goes_with_every_request() {
    if !common::s3_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let token = format!("FwoGZXIvYXdzE-session-{:016x}", fastrand::u64(..));
    let files = aws_files(
        dir.path(),
        &format!(
            "[temporary]\naws_access_key_id = {}\naws_secret_access_key = {}\naws_session_token = {token}\n",
            env("LIFEBOAT_S3_KEY"),
            env("LIFEBOAT_S3_SECRET")
        ),
    );
    // moto takes any signed request; the proxy sees what was sent.
    let seen: Seen = Arc::default();
    let recorder = proxy(
        socket_of(&env("LIFEBOAT_S3_MOTO")),
        &[],
        Some(Arc::clone(&seen)),
    )
    .await;
    let endpoint = format!("http://{recorder}");
    let data = dir.path().to_path_buf();
    let session = token.clone();
    let (by_var, by_profile) = tokio::task::spawn_blocking(move || {
        let mut cmd = bare(&data);
        cmd.env("K", env("LIFEBOAT_S3_KEY"))
            .env("S", env("LIFEBOAT_S3_SECRET"))
            .env("T", &session);
        let by_var = add_s3_bare(
            cmd,
            "by-var",
            &endpoint,
            &[
                "--access-key-env",
                "K",
                "--secret-key-env",
                "S",
                "--session-token-env",
                "T",
            ],
        );
        let mut cmd = bare(&data);
        cmd.env("AWS_SHARED_CREDENTIALS_FILE", &files)
            .env("AWS_CONFIG_FILE", data.join("no-config"));
        let by_profile = add_s3_bare(cmd, "by-profile", &endpoint, &["--profile", "temporary"]);
        (by_var, by_profile)
    })
    .await
    .expect("join");
    assert!(by_var.status.success(), "{}", stderr(&by_var));
    assert!(by_profile.status.success(), "{}", stderr(&by_profile));
    let heads = seen.lock().expect("seen").clone();
    assert!(heads.len() >= 8, "{} requests", heads.len());
    for head in &heads {
        assert_eq!(
            header(head, "x-amz-security-token"),
            Some(token.as_str()),
            "{head}"
        );
        let signed = header(head, "authorization").expect("signed");
        assert!(signed.contains("x-amz-security-token"), "{signed}");
    }
    assert_no_secret_saved(dir.path(), &[&token]);

    // Keys named in the region are whole: a session token in the
    // environment belongs to other keys and is not sent with them.
    let seen: Seen = Arc::default();
    let proxy = proxy(
        socket_of(&env("LIFEBOAT_S3_MOTO")),
        &[],
        Some(Arc::clone(&seen)),
    )
    .await;
    let data = dir.path().to_path_buf();
    let plain = tokio::task::spawn_blocking(move || {
        let mut cmd = bare(&data);
        cmd.env("K", env("LIFEBOAT_S3_KEY"))
            .env("S", env("LIFEBOAT_S3_SECRET"))
            .env("AWS_SESSION_TOKEN", "a-token-of-other-keys");
        add_s3_bare(
            cmd,
            "plain",
            &format!("http://{proxy}"),
            &["--access-key-env", "K", "--secret-key-env", "S"],
        )
    })
    .await
    .expect("join");
    assert!(plain.status.success(), "{}", stderr(&plain));
    let heads = seen.lock().expect("seen").clone();
    assert!(!heads.is_empty());
    for head in &heads {
        assert_eq!(header(head, "x-amz-security-token"), None, "{head}");
    }
}

/// What a hurried operator pastes where a variable's name belongs (the
/// key itself, a key file's JSON, a URL with keys in it) is refused
/// without being repeated.
#[test]
fn a_pasted_secret_is_refused_and_never_repeated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let aws_secret = "wJalrXUtnFEMI2K7MDENG2bPxRfiCYEXAMPLEKEY";
    let azure_key = "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MDEyMzQ1Ng==";
    let json =
        r#"{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----SECRETSECRET"}"#;
    // The arguments, a variable set, the secret, the words said.
    type Case<'a> = (Vec<&'a str>, Option<(&'a str, &'a str)>, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![
                "s3://b/p",
                "--access-key-env",
                aws_secret,
                "--secret-key-env",
                "S",
            ],
            None,
            aws_secret,
            "the value given for --access-key-env is not the name of an environment variable",
        ),
        (
            vec![
                "az://lifeboat/p",
                "--account",
                "acct",
                "--account-key-env",
                azure_key,
            ],
            None,
            azure_key,
            "the value given for --account-key-env",
        ),
        (
            vec!["gs://b/p", "--credentials-env", "G"],
            Some(("G", json)),
            "SECRETSECRET",
            "G holds a key (JSON, not repeated here)",
        ),
        (
            vec!["s3://AKIDEXAMPLE:wJalrXUtnFEMI2K7MDENG@bucket/p"],
            None,
            "wJalrXUtnFEMI2K7MDENG",
            "the URL carries credentials",
        ),
        (
            vec![
                "az://lifeboat/p?sv=2024&sig=c2VjcmV0c2ln",
                "--account",
                "acct",
            ],
            None,
            "c2VjcmV0c2ln",
            "the URL carries credentials",
        ),
        (
            vec![
                "s3://b/p",
                "--endpoint",
                "https://AKID:wJalrXUtnFEMI2K7MDENG@s3.example.com",
            ],
            None,
            "wJalrXUtnFEMI2K7MDENG",
            "the endpoint carries credentials",
        ),
    ];
    for (args, var, secret, words) in cases {
        let mut cmd = bare(dir.path());
        if let Some((name, value)) = var {
            cmd.env(name, value);
        }
        cmd.args(["region", "add", "west"]).args(&args);
        let out = cmd.output().expect("runs");
        assert_one_error_line(&out, 2, &["region `west`", words]);
        let printed = format!("{}{}", stderr(&out), stdout(&out));
        assert!(!printed.contains(secret), "{args:?}: repeated: {printed}");
        assert_no_secret_saved(dir.path(), &[secret]);
    }
}
