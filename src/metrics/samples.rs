//! The engine's samples on disk, so that the Dashboard's history outlives
//! a restart and a month can be reported on: one JSON line per sample in
//! `samples/<UTC day>.jsonl` under the data folder, gzipped once the day
//! is over, [`DAYS_KEPT`] days kept.
//!
//! A line names only the databases whose lag changed since the line
//! before (`null`: the database went); a full line starts every file and
//! comes every [`FULL_EVERY_S`]. A thousand quiet databases cost a few
//! bytes a second rather than twenty kilobytes, and a reader can start at
//! any file.
//!
//! The engine never waits on the disk: samples go to a writer thread
//! through a queue of [`QUEUE`]; past it a sample is dropped and said
//! once in the log.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::region::meter::ClassCounts;

/// Days of samples kept (a year and a month: last year's same month).
pub const DAYS_KEPT: i64 = 400;
/// Seconds between two full lines.
pub const FULL_EVERY_S: f64 = 600.0;
/// Samples waiting for the writer at most (four minutes at one a second,
/// a few hundred kilobytes with a thousand databases).
const QUEUE: usize = 256;
/// Samples further apart than this have a gap between them: the engine
/// did not run (or the machine slept), and the time is not counted.
pub const MAX_GAP_S: f64 = 10.0;

/// One sample as the engine took it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// Unix seconds.
    pub t: f64,
    /// Each database's lag in seconds (its worst replica): its RPO then.
    pub lag: BTreeMap<String, f64>,
    /// The group's RPO target then.
    pub target: Option<f64>,
    /// Regions that did not answer.
    pub down: Vec<String>,
    /// Bytes copied a second, all flows together.
    pub bytes_per_s: f64,
    /// Requests a minute of the flows (the Dashboard's figure).
    pub requests_per_min: f64,
    /// Requests this engine made to the regions since the sample
    /// before, by class (replication, listings, leases, status).
    pub requests: ClassCounts,
    /// What those requests cost at the prices in use.
    pub dollars: f64,
}

/// A line of a file: a sample, its lags as changes.
#[derive(Debug, Serialize, Deserialize)]
struct Line {
    t: f64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    full: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    lag: BTreeMap<String, Option<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    down: Vec<String>,
    #[serde(default)]
    bytes_per_s: f64,
    #[serde(default)]
    requests_per_min: f64,
    #[serde(default)]
    requests: ClassCounts,
    #[serde(default)]
    dollars: f64,
}

/// To the millisecond (or the thousandth of a request or dollar): what a
/// line needs, in a third of the characters.
fn milli(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Turns samples into lines: changes since the last, full ones now and then.
#[derive(Default)]
struct Encoder {
    last: BTreeMap<String, f64>,
    full_at: Option<f64>,
}

impl Encoder {
    /// The line for `sample`, full when `fresh` (a new file) or when the
    /// last full one is [`FULL_EVERY_S`] old.
    fn line(&mut self, sample: &Sample, fresh: bool) -> Line {
        let full = fresh || self.full_at.is_none_or(|at| sample.t - at >= FULL_EVERY_S);
        let lags: BTreeMap<String, f64> = sample
            .lag
            .iter()
            .map(|(db, lag)| (db.clone(), milli(*lag)))
            .collect();
        let lag = if full {
            self.full_at = Some(sample.t);
            lags.iter()
                .map(|(db, lag)| (db.clone(), Some(*lag)))
                .collect()
        } else {
            let changed = lags
                .iter()
                .filter(|(db, lag)| self.last.get(*db) != Some(lag))
                .map(|(db, lag)| (db.clone(), Some(*lag)));
            let gone = self
                .last
                .keys()
                .filter(|db| !lags.contains_key(*db))
                .map(|db| (db.clone(), None));
            changed.chain(gone).collect()
        };
        self.last = lags;
        Line {
            t: milli(sample.t),
            full,
            lag,
            target: sample.target,
            down: sample.down.clone(),
            bytes_per_s: milli(sample.bytes_per_s),
            requests_per_min: milli(sample.requests_per_min),
            requests: sample.requests,
            // Requests cost millionths of a dollar.
            dollars: (sample.dollars * 1e9).round() / 1e9,
        }
    }
}

/// Turns lines back into samples.
#[derive(Default)]
struct Decoder {
    lag: BTreeMap<String, f64>,
}

impl Decoder {
    fn sample(&mut self, line: Line) -> Sample {
        if line.full {
            self.lag.clear();
        }
        for (db, lag) in line.lag {
            match lag {
                Some(lag) => self.lag.insert(db, lag),
                None => self.lag.remove(&db),
            };
        }
        Sample {
            t: line.t,
            lag: self.lag.clone(),
            target: line.target,
            down: line.down,
            bytes_per_s: line.bytes_per_s,
            requests_per_min: line.requests_per_min,
            requests: line.requests,
            dollars: line.dollars,
        }
    }
}

/// Where the samples are kept under a data folder.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("samples")
}

/// The UTC day of `t_s` (Unix seconds) as its file's stem, `2026-12-08`.
fn day_of(t_s: f64) -> String {
    chrono::DateTime::from_timestamp(t_s.floor() as i64, 0)
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string()
}

/// The sample writer the engine holds; dropping it ends its thread.
pub struct SampleLog {
    tx: SyncSender<Sample>,
    full_said: bool,
}

impl SampleLog {
    /// Starts the writer thread for `dir` (created on the first sample).
    pub fn start(dir: PathBuf) -> Result<SampleLog> {
        let (tx, rx) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("lifeboat-samples".into())
            .spawn(move || write_all(&dir, rx))
            .map_err(|e| Error::Failed(format!("cannot start the sample writer: {e}")))?;
        Ok(SampleLog {
            tx,
            full_said: false,
        })
    }

    /// Hands `sample` to the writer; never waits.
    pub fn record(&mut self, sample: Sample) {
        match self.tx.try_send(sample) {
            Ok(()) => self.full_said = false,
            Err(TrySendError::Full(_)) if !self.full_said => {
                self.full_said = true;
                tracing::warn!(
                    "the disk is not keeping up with the Dashboard's samples; dropping them until it does"
                );
            }
            Err(_) => {}
        }
    }
}

/// The writer thread: each sample to its day's file, a day's file gzipped
/// once the next day starts; a failure is logged once until writes work
/// again (a sample that cannot be written is lost, never the engine).
fn write_all(dir: &Path, rx: Receiver<Sample>) {
    let mut encoder = Encoder::default();
    let mut open: Option<(String, File)> = None;
    let mut failing = false;
    while let Ok(sample) = rx.recv() {
        match write_one(dir, &mut encoder, &mut open, &sample) {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("writing the Dashboard's samples again");
            }
            Ok(()) => {}
            Err(e) if !failing => {
                failing = true;
                // The next line opens its file again, full.
                open = None;
                tracing::warn!("keeping the Dashboard's samples: {e}");
            }
            Err(_) => open = None,
        }
    }
}

fn write_one(
    dir: &Path,
    encoder: &mut Encoder,
    open: &mut Option<(String, File)>,
    sample: &Sample,
) -> Result<()> {
    let day = day_of(sample.t);
    let fresh = open.as_ref().is_none_or(|(d, _)| *d != day);
    if fresh {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::file(dir, format!("cannot create: {e}")))?;
        let path = dir.join(format!("{day}.jsonl"));
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)
            .map_err(|e| Error::file(&path, format!("cannot open: {e}")))?;
        // A crash may have torn the last line: the first new one starts on
        // a line of its own.
        if !ends_a_line(&mut file).map_err(|e| Error::file(&path, format!("cannot read: {e}")))? {
            file.write_all(b"\n")
                .map_err(|e| Error::file(&path, format!("cannot write: {e}")))?;
        }
        *open = Some((day.clone(), file));
    }
    let line = encoder.line(sample, fresh);
    let mut text = serde_json::to_string(&line)
        .map_err(|e| Error::Failed(format!("cannot write a sample: {e}")))?;
    text.push('\n');
    if let Some((day, file)) = open.as_mut() {
        // One write per line: a crash leaves at most one torn last line,
        // which a reader skips.
        file.write_all(text.as_bytes()).map_err(|e| {
            Error::file(
                dir.join(format!("{day}.jsonl")),
                format!("cannot write: {e}"),
            )
        })?;
    }
    if fresh {
        // Yesterday's file gzipped, old days removed: after the line is
        // written, so that a folder that cannot be tidied costs no sample.
        if let Err(e) = tidy(dir, &day, chrono::Utc::now().date_naive()) {
            tracing::warn!("tidying the Dashboard's samples: {e}");
        }
    }
    Ok(())
}

/// Whether `file` is empty or ends with a newline.
fn ends_a_line(file: &mut File) -> std::io::Result<bool> {
    use std::io::{Seek, SeekFrom};
    if file.metadata()?.len() == 0 {
        return Ok(true);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

/// Gzips every day's file but `today`'s, and removes those older than
/// [`DAYS_KEPT`] before `now`.
fn tidy(dir: &Path, today: &str, now: chrono::NaiveDate) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::file(dir, format!("cannot list: {e}")))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let (stem, gzipped) = match (name.strip_suffix(".jsonl.gz"), name.strip_suffix(".jsonl")) {
            (Some(stem), _) => (stem.to_string(), true),
            (None, Some(stem)) => (stem.to_string(), false),
            _ => continue,
        };
        let Ok(date) = chrono::NaiveDate::parse_from_str(&stem, "%Y-%m-%d") else {
            continue;
        };
        let path = entry.path();
        if (now - date).num_days() > DAYS_KEPT {
            std::fs::remove_file(&path)
                .map_err(|e| Error::file(&path, format!("cannot remove: {e}")))?;
        } else if !gzipped && stem != today {
            gzip(&path, &dir.join(format!("{stem}.jsonl.gz")))?;
        }
    }
    Ok(())
}

/// `plain` as `gz`, then `plain` removed. A crash between leaves both;
/// readers take the gzipped one, and the next tidy removes the other.
fn gzip(plain: &Path, gz: &Path) -> Result<()> {
    if !gz.exists() {
        let partial = gz.with_extension(format!("gz.{}.partial", std::process::id()));
        let mut input =
            File::open(plain).map_err(|e| Error::file(plain, format!("cannot open: {e}")))?;
        let output = File::create(&partial)
            .map_err(|e| Error::file(&partial, format!("cannot create: {e}")))?;
        let mut encoder = flate2::write::GzEncoder::new(output, flate2::Compression::default());
        std::io::copy(&mut input, &mut encoder)
            .and_then(|_| encoder.finish())
            .and_then(|file| file.sync_all())
            .map_err(|e| Error::file(&partial, format!("cannot write: {e}")))?;
        std::fs::rename(&partial, gz)
            .map_err(|e| Error::file(gz, format!("cannot rename into place: {e}")))?;
    }
    std::fs::remove_file(plain).map_err(|e| Error::file(plain, format!("cannot remove: {e}")))
}

/// What reading samples found besides them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReadNotes {
    /// Lines that were not samples (a torn last line after a crash).
    pub damaged_lines: u64,
    /// Files that could not be read, each as `path: why`.
    pub unreadable: Vec<String>,
}

/// Calls `each` with every sample kept from `from_s` to `to_s` (Unix
/// seconds), in time order, one at a time (a month is millions).
pub fn for_each(dir: &Path, from_s: f64, to_s: f64, mut each: impl FnMut(&Sample)) -> ReadNotes {
    let mut notes = ReadNotes::default();
    let mut decoder = Decoder::default();
    let (Some(first), Some(last)) = (
        chrono::DateTime::from_timestamp(from_s.floor() as i64, 0),
        chrono::DateTime::from_timestamp(to_s.ceil() as i64, 0),
    ) else {
        return notes;
    };
    let mut day = first.date_naive();
    while day <= last.date_naive() {
        let stem = day.format("%Y-%m-%d").to_string();
        day = day.succ_opt().unwrap_or(chrono::NaiveDate::MAX);
        let gz = dir.join(format!("{stem}.jsonl.gz"));
        let plain = dir.join(format!("{stem}.jsonl"));
        let reader: Box<dyn Read> = if gz.exists() {
            match File::open(&gz) {
                Ok(file) => Box::new(flate2::read::GzDecoder::new(file)),
                Err(e) => {
                    notes.unreadable.push(format!("{}: {e}", gz.display()));
                    continue;
                }
            }
        } else {
            match File::open(&plain) {
                Ok(file) => Box::new(file),
                // Gzipped between the two looks (the day just ended).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => match File::open(&gz) {
                    Ok(file) => Box::new(flate2::read::GzDecoder::new(file)),
                    Err(_) => continue,
                },
                Err(e) => {
                    notes.unreadable.push(format!("{}: {e}", plain.display()));
                    continue;
                }
            }
        };
        let mut reader = BufReader::new(reader);
        let mut text = Vec::new();
        loop {
            text.clear();
            match read_line(&mut reader, &mut text) {
                Ok(LineRead::End) => break,
                Ok(LineRead::Line) => {}
                Ok(LineRead::TooLong) => {
                    notes.damaged_lines += 1;
                    continue;
                }
                Err(e) => {
                    notes.unreadable.push(format!("{stem}: {e}"));
                    break;
                }
            }
            let Ok(line) = serde_json::from_slice::<Line>(&text) else {
                notes.damaged_lines += 1;
                continue;
            };
            let sample = decoder.sample(line);
            if sample.t >= from_s && sample.t <= to_s {
                each(&sample);
            }
        }
        if day == chrono::NaiveDate::MAX {
            break;
        }
    }
    notes
}

/// A line of a samples file at most: a full line with a hundred thousand
/// databases is about 4 MiB.
const MAX_LINE: u64 = 16 << 20;

enum LineRead {
    Line,
    TooLong,
    End,
}

/// Reads one line into `text` (without its newline), never holding more
/// than [`MAX_LINE`] of it: a longer one is skipped to its end.
fn read_line(reader: &mut impl BufRead, text: &mut Vec<u8>) -> std::io::Result<LineRead> {
    let read = reader.by_ref().take(MAX_LINE + 1).read_until(b'\n', text)?;
    if read == 0 {
        return Ok(LineRead::End);
    }
    if text.last() == Some(&b'\n') {
        text.pop();
        return Ok(LineRead::Line);
    }
    if (text.len() as u64) <= MAX_LINE {
        // The file's last line, without a newline.
        return Ok(LineRead::Line);
    }
    // Past the bound: skip the rest of it, a buffer at a time.
    loop {
        let buffer = reader.fill_buf()?;
        if buffer.is_empty() {
            return Ok(LineRead::TooLong);
        }
        match buffer.iter().position(|b| *b == b'\n') {
            Some(at) => {
                reader.consume(at + 1);
                return Ok(LineRead::TooLong);
            }
            None => {
                let n = buffer.len();
                reader.consume(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: f64, lags: &[(&str, f64)]) -> Sample {
        Sample {
            t,
            lag: lags.iter().map(|(db, l)| (db.to_string(), *l)).collect(),
            target: Some(1.0),
            ..Sample::default()
        }
    }

    #[test]
    fn lines_carry_only_changes_and_read_back_whole_across_days() {
        let dir = tempfile::tempdir().expect("tempdir");
        let day0 = 1_796_000_000.0_f64 - 1_796_000_000.0 % 86_400.0;
        let mut encoder = Encoder::default();
        let mut open = None;
        let mut written = Vec::new();
        // A thousand quiet databases, one that lags, one that goes, over
        // midnight.
        for i in 0..20 {
            let t = day0 + 86_400.0 - 10.0 + i as f64;
            let mut lags: Vec<(String, f64)> =
                (0..1000).map(|d| (format!("db-{d:04}"), 0.0)).collect();
            lags.push(("busy".into(), 0.125 * i as f64));
            if i < 5 {
                lags.push(("going".into(), 2.0));
            }
            let lags: Vec<(&str, f64)> = lags.iter().map(|(d, l)| (d.as_str(), *l)).collect();
            let s = sample(t, &lags);
            write_one(dir.path(), &mut encoder, &mut open, &s).expect("written");
            written.push(s);
        }
        drop(open);
        let today = std::fs::read_to_string(
            dir.path()
                .join(format!("{}.jsonl", day_of(day0 + 86_400.0))),
        )
        .expect("the second day's file");
        let lines: Vec<&str> = today.lines().collect();
        assert_eq!(lines.len(), 10);
        assert!(lines[0].contains("\"full\":true"), "{}", lines[0]);
        assert!(
            lines[1].len() < 200,
            "a quiet second is short: {}",
            lines[1]
        );
        // The first day was gzipped when the second began.
        assert!(
            dir.path()
                .join(format!("{}.jsonl.gz", day_of(day0)))
                .exists()
        );
        let mut read = Vec::new();
        let notes = for_each(dir.path(), day0, day0 + 2.0 * 86_400.0, |s| {
            read.push(s.clone())
        });
        assert_eq!(notes, ReadNotes::default());
        // Compared in short: a thousand databases do not make a readable failure.
        let short = |samples: &[Sample]| -> Vec<(f64, usize, Option<f64>, Option<f64>)> {
            samples
                .iter()
                .map(|s| {
                    (
                        s.t,
                        s.lag.len(),
                        s.lag.get("busy").copied(),
                        s.lag.get("going").copied(),
                    )
                })
                .collect()
        };
        assert_eq!(short(&read), short(&written));
        assert!(
            read == written,
            "the samples read back differ from those written"
        );
    }

    #[test]
    fn a_line_past_the_bound_is_skipped_without_being_held() {
        let mut data = vec![b'x'; (MAX_LINE + 10) as usize];
        data.extend_from_slice(b"\nnext\nlast");
        let mut reader = BufReader::new(&data[..]);
        let mut text = Vec::new();
        assert!(matches!(
            read_line(&mut reader, &mut text),
            Ok(LineRead::TooLong)
        ));
        assert!(text.len() as u64 <= MAX_LINE + 1);
        text.clear();
        assert!(matches!(
            read_line(&mut reader, &mut text),
            Ok(LineRead::Line)
        ));
        assert_eq!(text, b"next");
        text.clear();
        assert!(matches!(
            read_line(&mut reader, &mut text),
            Ok(LineRead::Line)
        ));
        assert_eq!(text, b"last");
        text.clear();
        assert!(matches!(
            read_line(&mut reader, &mut text),
            Ok(LineRead::End)
        ));
    }

    #[test]
    fn a_torn_line_is_skipped_and_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t0 = 1_796_000_000.0;
        // One engine run writes one sample, and stops.
        let one_run = |s: &Sample| {
            write_one(dir.path(), &mut Encoder::default(), &mut None, s).expect("written")
        };
        one_run(&sample(t0, &[("a", 0.5)]));
        let path = dir.path().join(format!("{}.jsonl", day_of(t0)));
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open");
        file.write_all(b"{\"t\":17960000").expect("torn");
        drop(file);
        // The engine starts again: a full line on a fresh line.
        one_run(&sample(t0 + 5.0, &[("a", 0.25)]));
        let mut read = Vec::new();
        let notes = for_each(dir.path(), t0 - 1.0, t0 + 10.0, |s| read.push(s.lag["a"]));
        assert_eq!(notes.damaged_lines, 1);
        assert_eq!(read, [0.5, 0.25]);
    }
}
