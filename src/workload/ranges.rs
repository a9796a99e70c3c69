//! Sets of sequence numbers as sorted, disjoint, inclusive ranges: how
//! holes, acknowledged records and missing records are counted without one
//! entry per record.

use serde::Serialize;

/// A sorted set of disjoint inclusive ranges `first..=last`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SeqRanges(Vec<(u64, u64)>);

impl SeqRanges {
    /// The union of `ranges`, in any order, overlapping or not.
    pub fn from_unsorted(mut ranges: Vec<(u64, u64)>) -> SeqRanges {
        ranges.retain(|(a, b)| a <= b);
        ranges.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
        for (first, last) in ranges {
            match merged.last_mut() {
                Some(prev) if first <= prev.1.saturating_add(1) => prev.1 = prev.1.max(last),
                _ => merged.push((first, last)),
            }
        }
        SeqRanges(merged)
    }

    /// Appends a range that starts after every range already held.
    pub fn push(&mut self, first: u64, last: u64) {
        debug_assert!(first <= last);
        debug_assert!(self.0.last().is_none_or(|&(_, prev)| prev < first));
        match self.0.last_mut() {
            Some(prev) if first == prev.1 + 1 => prev.1 = last,
            _ => self.0.push((first, last)),
        }
    }

    /// The ranges.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.0
    }

    /// How many numbers the set holds.
    pub fn count(&self) -> u64 {
        self.0.iter().map(|(a, b)| b - a + 1).sum()
    }

    /// True when the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The largest number in the set.
    pub fn max(&self) -> Option<u64> {
        self.0.last().map(|r| r.1)
    }

    /// The numbers in `self` that are not in `other`.
    pub fn minus(&self, other: &SeqRanges) -> SeqRanges {
        let mut out = SeqRanges::default();
        let mut others = other.0.iter().peekable();
        for &(mut first, last) in &self.0 {
            while let Some(&&(o_first, o_last)) = others.peek() {
                if o_last < first {
                    others.next();
                    continue;
                }
                if o_first > last {
                    break;
                }
                if o_first > first {
                    out.push(first, o_first - 1);
                }
                if o_last >= last {
                    first = last + 1;
                    break;
                }
                first = o_last + 1;
                others.next();
            }
            if first <= last {
                out.push(first, last);
            }
        }
        out
    }

    /// The first `n` ranges, formatted `a-b` (or `a`), for messages.
    pub fn preview(&self, n: usize) -> String {
        let mut parts: Vec<String> = self
            .0
            .iter()
            .take(n)
            .map(|&(a, b)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                }
            })
            .collect();
        if self.0.len() > n {
            parts.push(format!("... ({} more)", self.0.len() - n));
        }
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn union_merges_touching_and_overlapping() {
        let s = SeqRanges::from_unsorted(vec![(5, 9), (1, 3), (4, 4), (8, 12), (20, 20)]);
        assert_eq!(s.ranges(), &[(1, 12), (20, 20)]);
        assert_eq!(s.count(), 13);
    }

    #[test]
    fn difference_cuts_out_every_overlap() {
        let acked = SeqRanges::from_unsorted(vec![(1, 100)]);
        let present = SeqRanges::from_unsorted(vec![(1, 10), (20, 30), (95, 120)]);
        let missing = acked.minus(&present);
        assert_eq!(missing.ranges(), &[(11, 19), (31, 94)]);
        assert_eq!(present.minus(&acked).ranges(), &[(101, 120)]);
        assert!(acked.minus(&acked).is_empty());
    }
}
