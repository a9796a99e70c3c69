//! Stamps the binary with the commit it was built from (`lifeboat
//! --version`, the About dialog): `LIFEBOAT_COMMIT` from the environment if
//! set (a packager building from a tarball), else `git rev-parse`, else
//! "unknown".
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=LIFEBOAT_COMMIT");
    let from_env = std::env::var("LIFEBOAT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty());
    let commit = from_env
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=LIFEBOAT_COMMIT={commit}");
}

fn git_commit() -> Option<String> {
    // Rebuild when HEAD moves: HEAD itself, and the branch file it names.
    let git_dir = run(&["rev-parse", "--git-dir"])?;
    println!("cargo:rerun-if-changed={git_dir}/HEAD");
    if let Some(branch) = run(&["symbolic-ref", "-q", "HEAD"]) {
        println!("cargo:rerun-if-changed={git_dir}/{branch}");
    }
    run(&["rev-parse", "--short=10", "HEAD"])
}

fn run(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}
