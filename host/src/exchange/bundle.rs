//! Bundles: the records of one source partition for one exchange partition, from one batch, in one
//! Kafka message. A message per record cost more than the records themselves: librdkafka's work per
//! message on both sides (allocation, clock reads, queueing, a delivery report) and the broker's.
//! Measured on 1M records from 6 partitions through the default shape's two window stages, one process
//! in group mode, 3 alternated runs: 6.3 s of CPU with a message per record, 4.8 s with bundles (1.2 s
//! for the same run in `mode = "all"`, without the exchange).
//!
//! A bundle's value is a line per record, `offset index time record`: the record's source offset, its
//! index among the rows a transform made of that record, its event time (ms) and the record as a JSON
//! object on one line. The message key is [`super::Tag::Bundle`], naming the source partition.

use memchr::memchr;

/// A bundle holds at most this many bytes of records, unless a single record is larger: the brokers'
/// and librdkafka's default `message.max.bytes` (1,000,000) leaves room for the message's framing.
pub const MAX_BYTES: usize = 512 * 1024;

/// One record of a bundle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    pub offset: i64,
    pub index: u32,
    pub time: i64,
    /// The record, a JSON object.
    pub record: &'a [u8],
}

/// Appends a record to a bundle. `record` is one line of JSON (no newline).
pub fn push(bundle: &mut Vec<u8>, offset: i64, index: u32, time: i64, record: &[u8]) {
    let mut b = itoa::Buffer::new();
    bundle.extend_from_slice(b.format(offset).as_bytes());
    bundle.push(b' ');
    bundle.extend_from_slice(b.format(index).as_bytes());
    bundle.push(b' ');
    bundle.extend_from_slice(b.format(time).as_bytes());
    bundle.push(b' ');
    bundle.extend_from_slice(record);
    bundle.push(b'\n');
}

/// The records of a bundle, in order; a line that is not `offset index time record` comes as `Err`
/// with the line, and the others still come.
pub fn entries(bundle: &[u8]) -> impl Iterator<Item = Result<Entry<'_>, &[u8]>> {
    let mut rest = bundle;
    std::iter::from_fn(move || loop {
        if rest.is_empty() {
            return None;
        }
        let end = memchr(b'\n', rest).unwrap_or(rest.len());
        let line = &rest[..end];
        rest = &rest[(end + 1).min(rest.len())..];
        if !line.is_empty() {
            return Some(entry(line).ok_or(line));
        }
    })
}

fn entry(line: &[u8]) -> Option<Entry<'_>> {
    let mut fields = line.splitn(4, |&b| b == b' ');
    let mut number = || -> Option<i64> { std::str::from_utf8(fields.next()?).ok()?.parse().ok() };
    let offset = number()?;
    let index = u32::try_from(number()?).ok()?;
    let time = number()?;
    let record = fields.next()?;
    Some(Entry {
        offset,
        index,
        time,
        record,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_back_as_they_went_in() {
        let mut b = Vec::new();
        push(&mut b, 17, 0, -5, br#"{"genre":"Rock","streams":1.5}"#);
        push(&mut b, 18, 2, 1_717_293_164_494, br#"{"a b":"c d"}"#);
        let got: Vec<_> = entries(&b).collect();
        assert_eq!(
            got,
            vec![
                Ok(Entry {
                    offset: 17,
                    index: 0,
                    time: -5,
                    record: br#"{"genre":"Rock","streams":1.5}"#,
                }),
                Ok(Entry {
                    offset: 18,
                    index: 2,
                    time: 1_717_293_164_494,
                    record: br#"{"a b":"c d"}"#,
                }),
            ]
        );
        assert_eq!(entries(b"").count(), 0);
    }

    #[test]
    fn a_bad_line_is_reported_and_the_others_still_come() {
        let mut b = b"1 0 5\nx 0 5 {}\n".to_vec();
        push(&mut b, 3, 0, 7, b"{}");
        b.extend_from_slice(b"4 -1 7 {}\n4 0 7 {}");
        let got: Vec<_> = entries(&b).collect();
        assert_eq!(got[0], Err(&b"1 0 5"[..]));
        assert_eq!(got[1], Err(&b"x 0 5 {}"[..]));
        assert_eq!(got[2].unwrap().offset, 3);
        assert_eq!(got[3], Err(&b"4 -1 7 {}"[..]));
        assert_eq!(
            got[4].unwrap().record,
            b"{}",
            "the last line needs no newline"
        );
        assert_eq!(got.len(), 5);
    }
}
