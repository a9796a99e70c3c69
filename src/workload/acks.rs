//! The acknowledgement log: which workload records a writer was told are
//! durable, kept outside every region so that it survives the loss of one.
//!
//! One file per database, `<data-dir>/acks/<db>.jsonl`, one JSON object per
//! line, appended after each durable batch:
//! `{"region":"us-east-1","branch":"main","run":"...","first":1,"last":200,"acked_us":...}`
//! meaning records `first..=last` were acknowledged at `acked_us`.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One durable batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckBatch {
    pub region: String,
    pub branch: String,
    pub run: String,
    pub first: u64,
    pub last: u64,
    pub acked_us: u64,
}

/// The acknowledgement log of one database.
#[derive(Debug, Clone)]
pub struct AckLog {
    path: PathBuf,
}

impl AckLog {
    /// The log of database `db` under `acks_dir`.
    pub fn for_db(acks_dir: &Path, db: &str) -> AckLog {
        AckLog {
            path: acks_dir.join(format!("{db}.jsonl")),
        }
    }

    /// A log at an explicit path.
    pub fn at(path: PathBuf) -> AckLog {
        AckLog { path }
    }

    /// Where the log lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the log for appending, creating its folder. A torn last line
    /// (a crash mid-append) is cut off first: its batch was never reported,
    /// and a line appended onto it would make the log unreadable.
    pub fn writer(&self) -> Result<AckWriter> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::file(dir, format!("cannot create: {e}")))?;
        }
        self.cut_torn_tail()?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::file(&self.path, format!("cannot open for append: {e}")))?;
        Ok(AckWriter {
            file,
            path: self.path.clone(),
        })
    }

    fn cut_torn_tail(&self) -> Result<()> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::file(&self.path, format!("cannot read: {e}"))),
        };
        if bytes.is_empty() || bytes.ends_with(b"\n") {
            return Ok(());
        }
        let whole = bytes
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |at| at + 1);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(|e| Error::file(&self.path, format!("cannot open to repair: {e}")))?;
        file.set_len(whole as u64)
            .and_then(|()| file.sync_data())
            .map_err(|e| Error::file(&self.path, format!("cannot cut a torn last line: {e}")))?;
        tracing::warn!(
            log = %self.path.display(),
            "cut a torn last line of {} bytes (a writer stopped mid-append; its batch was never reported)",
            bytes.len() - whole
        );
        Ok(())
    }

    /// Every batch in the log; `None` when there is no log. A torn last line
    /// (a crash mid-append) is skipped, since its batch was never reported.
    pub fn read(&self) -> Result<Option<Vec<AckBatch>>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::file(&self.path, format!("cannot read: {e}"))),
        };
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let mut batches = Vec::with_capacity(lines.len());
        for (i, line) in lines.iter().enumerate() {
            match serde_json::from_str::<AckBatch>(line) {
                Ok(batch) => batches.push(batch),
                Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => break,
                Err(e) => {
                    return Err(Error::file(
                        &self.path,
                        format!("line {} is not an acknowledgement record: {e}", i + 1),
                    ));
                }
            }
        }
        Ok(Some(batches))
    }
}

/// Appends batches to an acknowledgement log.
#[derive(Debug)]
pub struct AckWriter {
    file: std::fs::File,
    path: PathBuf,
}

impl AckWriter {
    /// Appends one batch as one line.
    pub fn append(&mut self, batch: &AckBatch) -> Result<()> {
        let mut line = serde_json::to_string(batch)
            .map_err(|e| Error::file(&self.path, format!("cannot encode: {e}")))?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .map_err(|e| Error::file(&self.path, format!("cannot append: {e}")))
    }

    /// Makes the appended lines durable on the local disk.
    pub fn sync(&mut self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::file(&self.path, format!("cannot sync: {e}")))
    }
}
