//! What the binary is: its version, the commit it was built from and its
//! licence (`lifeboat --version`, the app's About dialog).

/// The crate's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The commit the binary was built from (`build.rs`), or "unknown".
pub const COMMIT: &str = env!("LIFEBOAT_COMMIT");
/// The licence, as an SPDX identifier.
pub const LICENCE: &str = env!("CARGO_PKG_LICENSE");
/// What `lifeboat --version` prints after the name.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("LIFEBOAT_COMMIT"),
    ")"
);
