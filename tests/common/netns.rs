//! A SeaweedFS server in a network namespace of its own, reached over a
//! veth pair, that a test can cut off with nftables: a real partition at
//! the network layer. Needs root, `ip` and `nft`; everything is torn down
//! on drop.
//!
//! The link is never taken down to play a partition (the route would go and
//! traffic would leave by the default route): a blackhole route for the
//! namespace's subnet is added first, and the partition drops packets in
//! the namespace with nftables.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lifeboat::region::{Region, RegionSpec};

const S3_PORT: u16 = 8333;

/// The server, its namespace and its link.
pub struct IsolatedS3 {
    ns: String,
    host_if: String,
    subnet: String,
    server_ip: String,
    server: Option<Child>,
    _dir: tempfile::TempDir,
}

fn sh(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn must(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl IsolatedS3 {
    /// Starts the server, or says why it cannot here (not root, no `nft`);
    /// under CI it must start.
    pub fn start() -> Option<IsolatedS3> {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0"));
        let tools = sh(&["ip", "-V"]) && sh(&["nft", "--version"]);
        let weed = std::env::var("LIFEBOAT_WEED").ok();
        if !root || !tools || weed.is_none() {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI runs as root with ip, nft and the S3 servers (scripts/test)"
            );
            eprintln!("note: partition test skipped: needs root, ip, nft and scripts/test");
            return None;
        }
        let tag = format!("{:05x}", fastrand::u32(..0x10_0000));
        let octet = fastrand::u8(1..250);
        let mut s3 = IsolatedS3 {
            ns: format!("lbns{tag}"),
            host_if: format!("lbh{tag}"),
            subnet: format!("10.213.{octet}.0/30"),
            server_ip: format!("10.213.{octet}.2"),
            server: None,
            _dir: tempfile::tempdir().expect("tempdir"),
        };
        let peer = format!("lbp{tag}");
        let host_ip = format!("10.213.{octet}.1/30");
        let server_cidr = format!("{}/30", s3.server_ip);
        // The blackhole first: whatever happens to the link, this subnet's
        // traffic never leaves by the default route.
        must(&[
            "ip",
            "route",
            "add",
            "blackhole",
            &s3.subnet,
            "metric",
            "4000",
        ]);
        must(&["ip", "netns", "add", &s3.ns]);
        must(&[
            "ip",
            "link",
            "add",
            &s3.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
        ]);
        must(&["ip", "link", "set", &peer, "netns", &s3.ns]);
        must(&["ip", "addr", "add", &host_ip, "dev", &s3.host_if]);
        must(&["ip", "link", "set", &s3.host_if, "up"]);
        let in_ns = |args: &[&str]| {
            let mut all = vec!["ip", "netns", "exec", s3.ns.as_str()];
            all.extend_from_slice(args);
            must(&all);
        };
        in_ns(&["ip", "addr", "add", &server_cidr, "dev", &peer]);
        in_ns(&["ip", "link", "set", &peer, "up"]);
        in_ns(&["ip", "link", "set", "lo", "up"]);

        let dir = s3._dir.path();
        let config = dir.join("s3.json");
        let key = std::env::var("LIFEBOAT_S3_KEY").expect("key");
        let secret = std::env::var("LIFEBOAT_S3_SECRET").expect("secret");
        std::fs::write(
            &config,
            format!(
                r#"{{"identities":[{{"name":"lifeboat","credentials":[{{"accessKey":"{key}","secretKey":"{secret}"}}],"actions":["Admin","Read","List","Tagging","Write"]}}]}}"#
            ),
        )
        .expect("s3 config");
        let data = dir.join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        let log = std::fs::File::create(dir.join("weed.log")).expect("log");
        let child = Command::new("ip")
            .args(["netns", "exec", &s3.ns])
            .arg(weed.expect("weed"))
            .args([
                "mini",
                &format!("-dir={}", data.display()),
                &format!("-ip={}", s3.server_ip),
                &format!("-ip.bind={}", s3.server_ip),
                &format!("-s3.config={}", config.display()),
                "-bucket=lifeboat-test",
                "-admin.ui=false",
                "-webdav=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-master.telemetry=false",
                &format!("-s3.port={S3_PORT}"),
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("weed starts in the namespace");
        s3.server = Some(child);
        Some(s3)
    }

    /// `http://<server ip>:8333`.
    pub fn endpoint(&self) -> String {
        format!("http://{}:{S3_PORT}", self.server_ip)
    }

    /// A region `name` on this server, once the server answers.
    pub async fn region(&self, name: &str) -> Region {
        let mut spec = RegionSpec::new(
            name,
            &format!("s3://lifeboat-test/{name}-{:08x}", fastrand::u32(..)),
        );
        spec.endpoint = Some(self.endpoint());
        spec.access_key_env = Some("LIFEBOAT_S3_KEY".into());
        spec.secret_key_env = Some("LIFEBOAT_S3_SECRET".into());
        let region = Region::open(&spec).expect("region");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match region.probe().await {
                Ok(_) => return region,
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "the namespaced server did not come up: {e}; log in {}",
                    self.log().display()
                ),
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    fn log(&self) -> std::path::PathBuf {
        Path::new(self._dir.path()).join("weed.log")
    }

    fn nft(&self, script: &str) {
        must(&["ip", "netns", "exec", &self.ns, "nft", script]);
    }

    /// Cuts the server off: every packet reaching it is dropped, so clients
    /// hang until their timeouts, as across a real partition.
    pub fn partition(&self) {
        self.nft("add table inet lifeboat_partition");
        self.nft(
            "add chain inet lifeboat_partition input { type filter hook input priority 0; policy accept; }",
        );
        self.nft(&format!(
            "add rule inet lifeboat_partition input tcp dport {S3_PORT} drop"
        ));
    }

    /// Ends the partition.
    pub fn heal(&self) {
        self.nft("delete table inet lifeboat_partition");
    }
}

impl Drop for IsolatedS3 {
    fn drop(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Make sure nothing survives in the namespace.
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.ns])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                sh(&["kill", "-9", pid]);
            }
        }
        sh(&["ip", "link", "del", &self.host_if]);
        sh(&["ip", "netns", "del", &self.ns]);
        sh(&[
            "ip",
            "route",
            "del",
            "blackhole",
            &self.subnet,
            "metric",
            "4000",
        ]);
    }
}
