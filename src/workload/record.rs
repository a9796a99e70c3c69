//! The workload's record format, readable by any SlateDB reader.
//!
//! key:   `wl/` followed by the sequence number as 20 zero-padded decimal
//!        digits, e.g. `wl/00000000000000000042` (so key order is sequence
//!        order);
//! value: ASCII, space-separated `name=value` fields after a version tag:
//!        `lbw1 seq=42 commit_us=1764100000123456 run=<run-id> pad=xxxx`
//!        where `commit_us` is the writer's wall clock (Unix microseconds)
//!        when it committed the record and `pad` fills the value to the
//!        requested size.
//!
//! Sequence numbers start at 1 in each database and have no gaps at the
//! writer: each run continues after the highest sequence present.

use std::ops::Bound;

use bytes::Bytes;

/// The key prefix of workload records.
pub const KEY_PREFIX: &str = "wl/";

/// The version tag that starts every value.
pub const VALUE_TAG: &str = "lbw1";

/// The smallest value size that holds every field.
pub const MIN_VALUE_BYTES: usize = 64;

/// The largest value size the workload writes.
pub const MAX_VALUE_BYTES: usize = 1 << 20;

/// The key of record `seq`.
pub fn key(seq: u64) -> Bytes {
    Bytes::from(format!("{KEY_PREFIX}{seq:020}"))
}

/// The key range that holds every workload record.
pub fn key_range() -> (Bound<Bytes>, Bound<Bytes>) {
    // '0' is the byte after '/', so `wl0` bounds every `wl/...` key.
    (
        Bound::Included(Bytes::from_static(b"wl/")),
        Bound::Excluded(Bytes::from_static(b"wl0")),
    )
}

/// The value of record `seq`, padded to `value_bytes` (at least the fields).
pub fn value(seq: u64, commit_us: u64, run: &str, value_bytes: usize) -> Bytes {
    let mut text = format!("{VALUE_TAG} seq={seq} commit_us={commit_us} run={run} pad=");
    if text.len() < value_bytes {
        text.extend(std::iter::repeat_n('x', value_bytes - text.len()));
    }
    Bytes::from(text)
}

/// A record as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub commit_us: u64,
    pub run: String,
}

/// Parses a key and value; `None` when either does not follow the format
/// or the value's `seq` differs from the key's.
pub fn parse(key: &[u8], value: &[u8]) -> Option<Record> {
    let key = std::str::from_utf8(key).ok()?;
    let digits = key.strip_prefix(KEY_PREFIX)?;
    if digits.len() != 20 {
        return None;
    }
    let seq: u64 = digits.parse().ok()?;
    let value = std::str::from_utf8(value).ok()?;
    let mut fields = value.split(' ');
    if fields.next()? != VALUE_TAG {
        return None;
    }
    let (mut value_seq, mut commit_us, mut run) = (None, None, None);
    for field in fields {
        match field.split_once('=')? {
            ("seq", v) => value_seq = v.parse::<u64>().ok(),
            ("commit_us", v) => commit_us = v.parse::<u64>().ok(),
            ("run", v) => run = Some(v.to_string()),
            _ => {}
        }
    }
    (value_seq? == seq).then_some(Record {
        seq,
        commit_us: commit_us?,
        run: run?,
    })
}

/// Parses the sequence number out of a key alone.
pub fn parse_key(key: &[u8]) -> Option<u64> {
    let digits = std::str::from_utf8(key).ok()?.strip_prefix(KEY_PREFIX)?;
    (digits.len() == 20).then(|| digits.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_sort_by_seq() {
        let v = value(42, 1_764_100_000_123_456, "r1", 100);
        assert_eq!(v.len(), 100);
        assert_eq!(
            parse(&key(42), &v),
            Some(Record {
                seq: 42,
                commit_us: 1_764_100_000_123_456,
                run: "r1".into()
            })
        );
        assert!(key(9) < key(10) && key(10) < key(1_000_000));
        assert_eq!(parse_key(&key(7)), Some(7));
    }

    #[test]
    fn a_value_for_another_key_is_rejected() {
        assert_eq!(parse(&key(1), &value(2, 5, "r", 0)), None);
        assert_eq!(parse(b"other", b"lbw1 seq=1 commit_us=1 run=r"), None);
    }
}
