//! The capture format, shared by `replay`, `record` and the Kafka source: one Kafka record per JSON line,
//! `{"topic", "partition", "offset", "timestamp" (ms), "key" (string or null), "value" (payload text)}`.
//! The payload is a JSON object whose fields become the record's fields.

use crate::record::{BatchBuilder, Cell, Origin, Value};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

/// One line of a capture.
#[derive(Debug, Deserialize, Serialize, PartialEq)]
pub struct CaptureLine<'a> {
    #[serde(borrow)]
    pub topic: Cow<'a, str>,
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    #[serde(borrow)]
    pub key: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub value: Cow<'a, str>,
}

/// Reads a capture line; the error says what is wrong with it.
pub fn parse_line(line: &str) -> Result<CaptureLine<'_>, String> {
    serde_json::from_str(line).map_err(|e| format!("invalid capture line: {e}"))
}

/// Decodes a payload into fields. Live Kafka records go through this same function, so a live run and a
/// replay of the same records see identical records.
pub fn decode_payload(payload: &str) -> Result<Vec<(Arc<str>, Value)>, String> {
    let value: serde_json::Value = serde_json::from_str(payload)
        .map_err(|e| format!("record value is not valid JSON: {e}"))?;
    let serde_json::Value::Object(map) = value else {
        return Err(format!(
            "record value must be a JSON object, found {}",
            json_kind(&value)
        ));
    };
    Ok(map
        .into_iter()
        .map(|(k, v)| (Arc::from(k), Value::from_json(v)))
        .collect())
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Decodes capture lines and Kafka payloads straight into a [`BatchBuilder`].
///
/// The common shape (a capture line with the six known fields, a flat payload object of strings,
/// numbers, booleans and nulls) is read by a byte scanner that writes no intermediate JSON tree and
/// allocates nothing per record. Anything else (nested values, unknown envelope fields, numbers that
/// need more than one correctly rounded operation, invalid JSON) goes through `serde_json` as before,
/// so edge cases and error messages are serde_json's, and both paths give the same values: a float is
/// built exactly as serde_json builds it (`significand × or ÷ 10^k`, k ≤ 22). A line (or payload) laid
/// out like the last one the scanner read is read faster still, by its `Template`.
#[derive(Default)]
pub struct Decoder {
    /// The payload text unescaped from a capture line.
    payload: Vec<u8>,
    /// Payload strings that contained escapes, unescaped.
    strings: Vec<u8>,
    fields: Vec<(Range<usize>, Raw)>,
    /// The key of the last line scanned: a range of the line, `None` for a null key.
    key: Option<Range<usize>>,
    /// The layout of the last line the scanner read in place, to read the lines like it.
    template: Template,
    /// The layout of the last payload the scanner read (Kafka records), likewise.
    payload_template: Template,
    /// The layout of the last line whose record the scanner read for `produce`, likewise.
    record_template: Template,
    /// Where the values of the text being scanned are, to learn its layout.
    holes: Vec<(Range<usize>, Hole)>,
}

/// A capture line's layout (or a Kafka record's payload's): its text with holes where the values are.
/// Lines of one capture are alike but for their values (the same envelope and payload fields, in the
/// same order, written the same way), so the next line is read by comparing the text between values
/// with the last one's (a `memcmp` a run) and reading only the values, where the scanner reads every
/// name and every separator and looks each name up. A line that differs anywhere is read by the
/// scanner, which learns its layout for the lines after it.
///
/// What the template reads is what the scanner reads: the same bytes between values (the field names,
/// the topic, a null key), and each value read by the scanner's own function for it; so a line read
/// either way gives the same record.
#[derive(Default)]
struct Template {
    /// The text before each hole, back to back; `holes` holds their ranges.
    text: Vec<u8>,
    holes: Vec<(Range<usize>, Hole)>,
    /// The text after the last hole: the end of the line.
    tail: Range<usize>,
}

/// A value in a template.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Hole {
    Partition,
    Offset,
    Timestamp,
    /// The key string's contents.
    Key,
    /// A payload string's contents, between its quotes (`\"` inside a capture line's value string, `"`
    /// in a payload alone). Its field's name starts `back` bytes before it and is `len` bytes long.
    Str {
        back: usize,
        len: usize,
    },
    /// A payload number, boolean or null, its name placed as for `Str`.
    Scalar {
        back: usize,
        len: usize,
    },
    /// The contents of a capture line's `value` string, unescaped as read (for `produce`, which sends
    /// the payload as it is).
    Value,
}

impl Template {
    /// Remembers the layout of `text`, whose values the scanner just found at `holes`.
    fn learn(&mut self, text: &[u8], holes: &[(Range<usize>, Hole)]) {
        self.text.clear();
        self.holes.clear();
        let mut at = 0;
        for (range, hole) in holes {
            let start = self.text.len();
            self.text.extend_from_slice(&text[at..range.start]);
            self.holes.push((start..self.text.len(), *hole));
            at = range.end;
        }
        let start = self.text.len();
        self.text.extend_from_slice(&text[at..]);
        self.tail = start..self.text.len();
    }

    /// Reads a text laid out like the one learned into `fields`, `key` and `value` (the `value`
    /// string unescaped, where the layout has it as a hole), and returns its partition, offset and
    /// timestamp (zero where the layout has none: a payload's); `None` where it differs, and the
    /// scanner reads it.
    fn read(
        &self,
        line: &[u8],
        fields: &mut Vec<(Range<usize>, Raw)>,
        key: &mut Option<Range<usize>>,
        value: &mut Vec<u8>,
    ) -> Option<(i32, i64, i64)> {
        if self.holes.is_empty() {
            return None;
        }
        fields.clear();
        *key = None;
        let (mut partition, mut offset, mut timestamp) = (0, 0, 0);
        let mut s = Scan { s: line, i: 0 };
        for (text, hole) in &self.holes {
            s.text(&self.text[text.clone()])?;
            let at = s.i;
            let name = |back: usize, len: usize| at - back..at - back + len;
            match *hole {
                Hole::Partition => partition = i32::try_from(s.int()?).ok()?,
                Hole::Offset => offset = s.int()?,
                Hole::Timestamp => timestamp = s.int()?,
                // Up to the closing quote (`"`, or `\"` inside a capture line's value string), which
                // the text after it starts with: a string with an escape or a control character stops
                // before it, and the next comparison fails.
                Hole::Key => {
                    s.i += plain_run(&line[at..], Some(b'"'));
                    *key = Some(at..s.i);
                }
                Hole::Str { back, len } => {
                    s.i += plain_run(&line[at..], Some(b'"'));
                    fields.push((name(back, len), Raw::Str(at..s.i)));
                }
                Hole::Scalar { back, len } => {
                    let raw = s.scalar()?;
                    fields.push((name(back, len), raw));
                }
                // As the scanner reads it; the closing quote it consumes is the next text's first byte.
                Hole::Value => {
                    value.clear();
                    s.unescape_until(Some(b'"'), value)?;
                    s.i -= 1;
                }
            }
        }
        s.text(&self.text[self.tail.clone()])?;
        (s.i == line.len()).then_some((partition, offset, timestamp))
    }
}

/// A capture line's record as `produce` needs it: the value still a JSON text.
#[derive(Debug)]
pub struct Record<'a> {
    pub timestamp: i64,
    pub partition: i32,
    pub key: Option<Cow<'a, str>>,
    pub value: Cow<'a, str>,
}

/// A payload value found by the scanner; strings are ranges of `payload` or `strings`.
#[derive(Clone, Debug)]
enum Raw {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Range<usize>),
    Unescaped(Range<usize>),
}

impl Decoder {
    /// Decodes one capture line into `builder`, or says what is wrong with it.
    pub fn line(&mut self, line: &str, builder: &mut BatchBuilder) -> Result<(), String> {
        let bytes = line.as_bytes();
        self.strings.clear();
        let read = self
            .template
            .read(bytes, &mut self.fields, &mut self.key, &mut self.payload);
        if let Some((partition, offset, timestamp)) = read {
            self.commit(timestamp, Origin { partition, offset }, builder, line);
            return Ok(());
        }
        // The payload read where it is, inside the line's `value` string; failing that, unescaped first.
        if let Some((timestamp, origin)) = self.fast_line(bytes, true) {
            self.template.learn(bytes, &self.holes);
            self.commit(timestamp, origin, builder, line);
            return Ok(());
        }
        if let Some((timestamp, origin)) = self.fast_line(bytes, false) {
            if self.fast_payload() {
                // Unescaped from UTF-8 text, so UTF-8 itself; checked once here rather than per field.
                if let Ok(payload) = std::str::from_utf8(&self.payload) {
                    self.commit(timestamp, origin, builder, payload);
                    return Ok(());
                }
            }
        }
        let capture = parse_line(line)?;
        let fields = decode_payload(&capture.value)?;
        let origin = Origin {
            partition: capture.partition,
            offset: capture.offset,
        };
        builder.push(capture.timestamp, origin, fields);
        Ok(())
    }

    /// A capture line's record without decoding its payload (what `produce` sends), or what is wrong
    /// with the line. The common line is read by the template or the scanner; others by serde_json.
    pub fn record<'a>(&'a mut self, line: &'a str) -> Result<Record<'a>, String> {
        let bytes = line.as_bytes();
        let mut read = self
            .record_template
            .read(bytes, &mut self.fields, &mut self.key, &mut self.payload)
            .map(|(partition, _, timestamp)| (timestamp, partition));
        if read.is_none() {
            read = self.fast_line(bytes, false).map(|(timestamp, origin)| {
                self.record_template.learn(bytes, &self.holes);
                (timestamp, origin.partition)
            });
        }
        // Checked, though unescaping UTF-8 text gives UTF-8 (an escape makes a char or fails).
        if let (Some((timestamp, partition)), Ok(value)) =
            (read, std::str::from_utf8(&self.payload))
        {
            return Ok(Record {
                timestamp,
                partition,
                key: self.key.clone().map(|r| Cow::Borrowed(&line[r])),
                value: Cow::Borrowed(value),
            });
        }
        let c = parse_line(line)?;
        Ok(Record {
            timestamp: c.timestamp,
            partition: c.partition,
            key: c.key,
            value: c.value,
        })
    }

    /// Decodes one record's payload into `builder`, or says what is wrong with it.
    pub fn payload(
        &mut self,
        payload: &str,
        timestamp: i64,
        origin: Origin,
        builder: &mut BatchBuilder,
    ) -> Result<(), String> {
        let bytes = payload.as_bytes();
        self.strings.clear();
        if self
            .payload_template
            .read(bytes, &mut self.fields, &mut self.key, &mut self.payload)
            .is_some()
        {
            self.commit(timestamp, origin, builder, payload);
            return Ok(());
        }
        self.fields.clear();
        self.holes.clear();
        if self.scan_payload(bytes).is_some() {
            self.payload_template.learn(bytes, &self.holes);
            self.commit(timestamp, origin, builder, payload);
            return Ok(());
        }
        builder.push(timestamp, origin, decode_payload(payload)?);
        Ok(())
    }

    /// Adds the scanned fields as a record; names and plain strings are ranges of `src`.
    fn commit(&self, timestamp: i64, origin: Origin, builder: &mut BatchBuilder, src: &str) {
        // Ranges end at ASCII quotes and backslashes, so slicing checks char boundaries only.
        let text = |r: &Range<usize>| &src[r.clone()];
        let strings = if self.strings.is_empty() {
            ""
        } else {
            std::str::from_utf8(&self.strings).expect("unescaped from UTF-8 text")
        };
        builder.begin(timestamp, origin);
        for (pos, (name, raw)) in self.fields.iter().enumerate() {
            let cell = match raw {
                Raw::Null => Cell::Null,
                Raw::Bool(b) => Cell::Bool(*b),
                Raw::Int(i) => Cell::Int(*i),
                Raw::Float(f) => Cell::Float(*f),
                Raw::Str(r) => Cell::Str(text(r)),
                Raw::Unescaped(r) => Cell::Str(&strings[r.clone()]),
            };
            builder.set(pos, text(name), cell);
        }
        builder.end();
    }

    /// The envelope of a capture line. `in_place`: the payload is scanned inside the `value` string
    /// (see [`Decoder::scan_in_place`]); otherwise it is left unescaped in `self.payload`.
    fn fast_line(&mut self, line: &[u8], in_place: bool) -> Option<(i64, Origin)> {
        let mut s = Scan { s: line, i: 0 };
        let (mut topic, mut partition, mut offset, mut timestamp, mut key, mut value) =
            (false, None, None, None, false, false);
        self.key = None;
        self.holes.clear();
        s.ws();
        s.eat(b'{')?;
        loop {
            let name = s.member()?;
            let at = s.i;
            let seen = match envelope_field(&line[name])? {
                Envelope::Topic => {
                    s.string()?;
                    std::mem::replace(&mut topic, true)
                }
                Envelope::Partition => {
                    let n = i32::try_from(s.int()?).ok()?;
                    self.holes.push((at..s.i, Hole::Partition));
                    partition.replace(n).is_some()
                }
                Envelope::Offset => {
                    let n = s.int()?;
                    self.holes.push((at..s.i, Hole::Offset));
                    offset.replace(n).is_some()
                }
                Envelope::Timestamp => {
                    let n = s.int()?;
                    self.holes.push((at..s.i, Hole::Timestamp));
                    timestamp.replace(n).is_some()
                }
                Envelope::Key => {
                    self.key = None;
                    if s.literal(b"null").is_none() {
                        let (range, escaped) = s.string()?;
                        if escaped {
                            return None;
                        }
                        self.holes.push((range.clone(), Hole::Key));
                        self.key = Some(range);
                    }
                    std::mem::replace(&mut key, true)
                }
                Envelope::Value if in_place => {
                    s.eat(b'"')?;
                    self.scan_in_place(&mut s)?;
                    s.eat(b'"')?;
                    std::mem::replace(&mut value, true)
                }
                Envelope::Value => {
                    self.payload.clear();
                    s.string_into(&mut self.payload)?;
                    self.holes.push((at + 1..s.i - 1, Hole::Value));
                    std::mem::replace(&mut value, true)
                }
            };
            if seen {
                return None;
            }
            s.ws();
            if !s.more()? {
                break;
            }
        }
        s.ws();
        if s.i != line.len() || !topic {
            return None;
        }
        if !value {
            return None;
        }
        let origin = Origin {
            partition: partition?,
            offset: offset?,
        };
        Some((timestamp?, origin))
    }

    /// Scans a payload where it stands inside a capture line's `value` string, its quotes escaped
    /// (`{\"genre\":\"Rock\",\"streams\":5.71}`), so the line is read once and nothing is copied.
    /// Anything else escaped (a quote or `\u00e9` inside a payload string) returns `None`, and the
    /// caller unescapes the payload first.
    fn scan_in_place(&mut self, s: &mut Scan) -> Option<()> {
        self.fields.clear();
        self.strings.clear();
        s.spaces();
        s.eat(b'{')?;
        s.spaces();
        if s.peek() == Some(b'}') {
            s.i += 1;
            s.spaces();
            return Some(());
        }
        loop {
            s.spaces();
            let name = s.quoted_in_place()?;
            s.spaces();
            s.eat(b':')?;
            s.spaces();
            let at = s.i;
            let (back, len) = (at - name.start, name.len());
            let (raw, hole) = match s.peek()? {
                b'\\' => {
                    let r = s.quoted_in_place()?;
                    let hole = (
                        r.clone(),
                        Hole::Str {
                            back: r.start - name.start,
                            len,
                        },
                    );
                    (Raw::Str(r), hole)
                }
                _ => (s.scalar()?, (at..s.i, Hole::Scalar { back, len })),
            };
            self.holes.push(hole);
            self.fields.push((name, raw));
            s.spaces();
            if !s.more()? {
                break;
            }
        }
        s.spaces();
        Some(())
    }

    /// Scans `self.payload` into `self.fields`; `false` if the slow path must decide.
    fn fast_payload(&mut self) -> bool {
        self.fields.clear();
        self.strings.clear();
        let payload = std::mem::take(&mut self.payload);
        let ok = self.scan_payload(&payload).is_some();
        self.payload = payload;
        ok
    }

    fn scan_payload(&mut self, payload: &[u8]) -> Option<()> {
        let mut s = Scan { s: payload, i: 0 };
        s.ws();
        s.eat(b'{')?;
        s.ws();
        if s.peek() == Some(b'}') {
            s.i += 1;
        } else {
            loop {
                let name = s.member()?;
                let at = s.i;
                let len = name.len();
                let raw = match s.peek()? {
                    b'"' => {
                        let (r, escaped) = s.string()?;
                        let back = r.start - name.start;
                        self.holes.push((r.clone(), Hole::Str { back, len }));
                        if escaped {
                            let start = self.strings.len();
                            unescape(&payload[r], &mut self.strings)?;
                            Raw::Unescaped(start..self.strings.len())
                        } else {
                            Raw::Str(r)
                        }
                    }
                    _ => {
                        let raw = s.scalar()?;
                        let back = at - name.start;
                        self.holes.push((at..s.i, Hole::Scalar { back, len }));
                        raw
                    }
                };
                self.fields.push((name, raw));
                s.ws();
                if !s.more()? {
                    break;
                }
            }
        }
        s.ws();
        (s.i == payload.len()).then_some(())
    }
}

/// The fields of a capture line.
enum Envelope {
    Topic,
    Partition,
    Offset,
    Timestamp,
    Key,
    Value,
}

/// Which envelope field a name is; `None` for any other (the slow path ignores those).
fn envelope_field(name: &[u8]) -> Option<Envelope> {
    // By length and first byte, then the whole name: cheaper than comparing against every name.
    let (field, word): (Envelope, &[u8]) = match (name.len(), *name.first()?) {
        (5, b't') => (Envelope::Topic, b"topic"),
        (9, b'p') => (Envelope::Partition, b"partition"),
        (6, b'o') => (Envelope::Offset, b"offset"),
        (9, b't') => (Envelope::Timestamp, b"timestamp"),
        (3, b'k') => (Envelope::Key, b"key"),
        (5, b'v') => (Envelope::Value, b"value"),
        _ => return None,
    };
    crate::record::same(name, word).then_some(field)
}

/// Exact powers of ten: a significand below 2^53 times or divided by one of these is one correctly
/// rounded operation, the result serde_json computes too.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// A cursor over JSON text. Every method returns `None` where the text is not the simple case.
struct Scan<'a> {
    s: &'a [u8],
    i: usize,
}

impl Scan<'_> {
    /// Spaces inside an escaped payload (other whitespace would be escaped there).
    fn spaces(&mut self) {
        while self.s.get(self.i) == Some(&b' ') {
            self.i += 1;
        }
    }

    /// A payload string inside a capture line's `value` string: `\"` … `\"`, with no other escape.
    fn quoted_in_place(&mut self) -> Option<Range<usize>> {
        self.literal(b"\\\"")?;
        let start = self.i;
        self.i += plain_run(&self.s[self.i..], Some(b'"'));
        match *self.s.get(self.i)? {
            b'\\' => {
                let end = self.i;
                self.literal(b"\\\"")?;
                Some(start..end)
            }
            // A bare quote, or a control character.
            _ => None,
        }
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.s.get(self.i) {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.i += 1;
        Some(b)
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        (self.next()? == b).then_some(())
    }

    /// `text`, byte for byte; short runs compared a word at a time (see [`crate::record::same`]).
    fn text(&mut self, text: &[u8]) -> Option<()> {
        let end = self.i + text.len();
        if crate::record::same(self.s.get(self.i..end)?, text) {
            self.i = end;
            Some(())
        } else {
            None
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.s[self.i..].starts_with(word) {
            self.i += word.len();
            Some(())
        } else {
            None
        }
    }

    /// A string's contents (between the quotes) and whether it has escapes. `None` for a control
    /// character, which JSON does not allow unescaped.
    fn string(&mut self) -> Option<(Range<usize>, bool)> {
        self.eat(b'"')?;
        let start = self.i;
        let mut escaped = false;
        loop {
            self.i += plain_run(self.s.get(self.i..)?, Some(b'"'));
            match *self.s.get(self.i)? {
                b'"' => {
                    self.i += 1;
                    return Some((start..self.i - 1, escaped));
                }
                b'\\' => {
                    escaped = true;
                    self.i += 2;
                }
                // A control character.
                _ => return None,
            }
        }
    }

    /// An object member's name (without escapes, which the fast paths leave to serde_json) and its
    /// colon, with the whitespace around them.
    fn member(&mut self) -> Option<Range<usize>> {
        self.ws();
        let (name, escaped) = self.string()?;
        if escaped {
            return None;
        }
        self.ws();
        self.eat(b':')?;
        self.ws();
        Some(name)
    }

    /// A literal or a number (strings are read by the caller, each in its own way).
    fn scalar(&mut self) -> Option<Raw> {
        match self.peek()? {
            b't' => self.literal(b"true").map(|_| Raw::Bool(true)),
            b'f' => self.literal(b"false").map(|_| Raw::Bool(false)),
            b'n' => self.literal(b"null").map(|_| Raw::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// After an object member: whether another follows (`,`) or the object ends (`}`).
    fn more(&mut self) -> Option<bool> {
        match self.next()? {
            b',' => Some(true),
            b'}' => Some(false),
            _ => None,
        }
    }

    fn int(&mut self) -> Option<i64> {
        match self.number()? {
            Raw::Int(i) => Some(i),
            _ => None,
        }
    }

    fn number(&mut self) -> Option<Raw> {
        let start = self.i;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.i += 1;
        }
        let first = self.peek()?;
        if !first.is_ascii_digit() {
            return None;
        }
        let (mut sig, digits) = self.digits(0)?;
        if first == b'0' && digits > 1 {
            return None;
        }
        let mut exp: i64 = 0;
        let mut float = false;
        if self.peek() == Some(b'.') {
            self.i += 1;
            float = true;
            let (with_fraction, fraction) = self.digits(sig)?;
            if fraction == 0 {
                return None;
            }
            sig = with_fraction;
            exp = -(fraction as i64);
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            float = true;
            let minus = match self.peek()? {
                b'-' => {
                    self.i += 1;
                    true
                }
                b'+' => {
                    self.i += 1;
                    false
                }
                _ => false,
            };
            let before = self.i;
            let mut e: i64 = 0;
            while let Some(d @ b'0'..=b'9') = self.peek() {
                e = e.checked_mul(10)?.checked_add(i64::from(d - b'0'))?;
                self.i += 1;
            }
            if self.i == before || e > 1000 {
                return None;
            }
            exp += if minus { -e } else { e };
        }
        if !float {
            // serde_json reads `-0` as a float; leave such cases to it.
            return match (negative, sig) {
                (true, 0) => None,
                (true, s) if s <= 1 << 63 => Some(Raw::Int((s as i64).wrapping_neg())),
                (false, s) if s <= i64::MAX as u64 => Some(Raw::Int(s as i64)),
                _ => None,
            };
        }
        if sig >= 1 << 53 || exp.unsigned_abs() as usize >= POW10.len() {
            // Beyond the exact fast path (17 significant digits, as a float written in full has):
            // the standard library's parse, which rounds correctly, so a float survives a round trip
            // through JSON bit for bit.
            // A number beyond the range of f64 parses as infinite here; serde_json refuses it, and so
            // the record is dead-lettered, with its reason, whichever path reads it.
            let text = std::str::from_utf8(&self.s[start..self.i]).ok()?;
            return text
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(Raw::Float);
        }
        let pow = POW10[exp.unsigned_abs() as usize];
        let f = if exp >= 0 {
            sig as f64 * pow
        } else {
            sig as f64 / pow
        };
        Some(Raw::Float(if negative { -f } else { f }))
    }
}

/// Powers of ten that fit in a `u64`, for appending up to 8 digits at once.
const POW10_U64: [u64; 9] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
];

impl Scan<'_> {
    /// A run of ASCII digits appended to `sig` (`sig × 10^n + run`) and its length `n`; `None` if the
    /// result does not fit in a `u64` (whatever the digits, as when adding one digit at a time).
    ///
    /// Eight bytes at a time: the first byte that is not a digit is found with the classic byte-wise
    /// comparison of a word, and the digits before it are converted together (three multiplications
    /// for up to eight digits, Lemire's method); the loop a digit at a time was 5% of a run's CPU.
    fn digits(&mut self, mut sig: u64) -> Option<(u64, usize)> {
        const ZEROS: u64 = 0x3030_3030_3030_3030;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        let start = self.i;
        loop {
            let rest = &self.s[self.i..];
            // Past the end of the text, bytes that are not digits.
            let word = match rest.get(..8) {
                Some(w) => u64::from_le_bytes(w.try_into().expect("8 bytes")),
                None => {
                    let mut w = [0u8; 8];
                    w[..rest.len()].copy_from_slice(rest);
                    u64::from_le_bytes(w)
                }
            };
            let t = word.wrapping_sub(ZEROS);
            // A byte's high bit is set where it is below '0' or above '9'. Borrows and carries run only
            // from a byte to the next one, so the lowest flag is exact.
            let other = (t | t.wrapping_add(0x7676_7676_7676_7676)) & HIGH;
            let n = if other == 0 {
                8
            } else {
                (other.trailing_zeros() / 8) as usize
            };
            if n > 0 {
                // The run's digits at the top of the word, zeros (leading zeros) below them.
                let mut v = t << (8 * (8 - n));
                v = (v & 0x0F0F_0F0F_0F0F_0F0F).wrapping_mul(2561) >> 8;
                v = (v & 0x00FF_00FF_00FF_00FF).wrapping_mul(6_553_601) >> 16;
                v = (v & 0x0000_FFFF_0000_FFFF).wrapping_mul(42_949_672_960_001) >> 32;
                sig = sig.checked_mul(POW10_U64[n])?.checked_add(v)?;
                self.i += n;
            }
            if n < 8 {
                return Some((sig, self.i - start));
            }
        }
    }
}

/// How many bytes of `s` come before the first that ends a run of plain string bytes: a backslash,
/// `end`, or a control character. Eight bytes at a time (a payload escapes every quote, so runs are short,
/// too short for memchr's setup to pay off, but long enough for a word at a time): in each word, the
/// lowest byte flagged by the classic has-zero-byte test is exact.
fn plain_run(s: &[u8], end: Option<u8>) -> usize {
    let mut i = 0;
    while let Some(word) = s.get(i..i + 8) {
        let hit = specials(word.try_into().expect("8 bytes"), end);
        if hit != 0 {
            return i + (hit.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i + plain_tail(&s[i..], end)
}

/// The bytes of `word` that end a plain run, each flagged by its high bit; the lowest flag is exact
/// (higher ones may be false, after a borrow).
fn specials(word: [u8; 8], end: Option<u8>) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let x = u64::from_le_bytes(word);
    let mut hit = (x.wrapping_sub(ONES * 0x20) & !x & HIGH) | zero(x ^ (ONES * u64::from(b'\\')));
    if let Some(e) = end {
        hit |= zero(x ^ (ONES * u64::from(e)));
    }
    hit
}

/// [`plain_run`] a byte at a time, for the last bytes of a text.
fn plain_tail(s: &[u8], end: Option<u8>) -> usize {
    s.iter()
        .position(|&b| b < 0x20 || b == b'\\' || Some(b) == end)
        .unwrap_or(s.len())
}

/// Appends a JSON string's contents, unescaped, to `out`; `None` for what the slow path must judge
/// (control characters, bad escapes, lone surrogates).
fn unescape(s: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let mut scan = Scan { s, i: 0 };
    scan.unescape_until(None, out)
}

impl Scan<'_> {
    /// A string (from its opening quote) unescaped into `out`, in one pass over its bytes.
    fn string_into(&mut self, out: &mut Vec<u8>) -> Option<()> {
        self.eat(b'"')?;
        self.unescape_until(Some(b'"'), out)
    }

    /// Copies and unescapes up to `end` (consumed) or, without one, to the end of the text: the plain
    /// bytes between escapes a run at a time.
    fn unescape_until(&mut self, end: Option<u8>, out: &mut Vec<u8>) -> Option<()> {
        out.reserve(self.s.len() - self.i);
        loop {
            // A word at a time, each copied whole and the copy cut back to its plain bytes: one store
            // where a `memcpy` call per run would cost more than the payload's short runs.
            while let Some(word) = self.s.get(self.i..self.i + 8) {
                let word: [u8; 8] = word.try_into().expect("8 bytes");
                let hit = specials(word, end);
                let run = if hit == 0 {
                    8
                } else {
                    (hit.trailing_zeros() / 8) as usize
                };
                out.extend_from_slice(&word);
                out.truncate(out.len() - 8 + run);
                self.i += run;
                if hit != 0 {
                    break;
                }
            }
            if self.s.len() - self.i < 8 {
                let run = plain_tail(&self.s[self.i..], end);
                out.extend_from_slice(&self.s[self.i..self.i + run]);
                self.i += run;
            }
            let Some(&b) = self.s.get(self.i) else {
                return end.is_none().then_some(());
            };
            self.i += 1;
            match b {
                _ if Some(b) == end => return Some(()),
                b'\\' => self.escape(out)?,
                // A control character.
                _ => return None,
            }
        }
    }

    /// One escape, after its backslash.
    fn escape(&mut self, out: &mut Vec<u8>) -> Option<()> {
        let byte = match self.next()? {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let s = self.s;
                let hex = |at: usize| -> Option<u32> {
                    let h = std::str::from_utf8(s.get(at..at + 4)?).ok()?;
                    u32::from_str_radix(h, 16).ok()
                };
                let mut c = hex(self.i)?;
                self.i += 4;
                if (0xD800..0xDC00).contains(&c) {
                    if s.get(self.i..self.i + 2)? != b"\\u" {
                        return None;
                    }
                    let low = hex(self.i + 2)?;
                    if !(0xDC00..0xE000).contains(&low) {
                        return None;
                    }
                    self.i += 6;
                    c = 0x10000 + ((c - 0xD800) << 10) + (low - 0xDC00);
                }
                let ch = char::from_u32(c)?;
                let mut buf = [0; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                return Some(());
            }
            _ => return None,
        };
        out.push(byte);
        Some(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn plain_runs_stop_at_the_first_backslash_end_or_control_character() {
        let naive = |s: &[u8], end: Option<u8>| {
            s.iter()
                .position(|&b| b < 0x20 || b == b'\\' || Some(b) == end)
                .unwrap_or(s.len())
        };
        let alphabet = [
            b'a', b'"', b'\\', 0x1f, 0x20, 0x7f, 0x80, 0xff, b'z', 0x5b, 0x5d,
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for len in 0..40 {
            for _ in 0..200 {
                let s: Vec<u8> = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        // Mostly plain bytes, as payloads are.
                        if seed.is_multiple_of(5) {
                            alphabet[(seed >> 8) as usize % alphabet.len()]
                        } else {
                            b'a' + (seed >> 8) as u8 % 26
                        }
                    })
                    .collect();
                for end in [None, Some(b'"')] {
                    assert_eq!(plain_run(&s, end), naive(&s, end), "{s:?} {end:?}");
                }
            }
        }
    }

    use super::*;

    #[test]
    fn decodes_lines_and_payloads() {
        let line = r#"{"topic":"t","partition":0,"offset":3,"timestamp":1717243200000,"key":"k","value":"{\"genre\":\"Rock\",\"streams\":19.36,\"year\":1975}"}"#;
        let l = parse_line(line).unwrap();
        assert_eq!(
            (l.partition, l.offset, l.timestamp, l.key.as_deref()),
            (0, 3, 1717243200000, Some("k"))
        );
        let fields = decode_payload(&l.value).unwrap();
        assert_eq!(fields.len(), 3);
        assert!(fields.contains(&("streams".into(), Value::Float(19.36))));
        assert!(fields.contains(&("year".into(), Value::Int(1975))));
    }

    #[test]
    fn explains_bad_input() {
        assert!(parse_line("nope")
            .unwrap_err()
            .starts_with("invalid capture line"));
        let missing = r#"{"topic":"t","partition":0,"offset":3,"key":null,"value":"{}"}"#;
        assert!(parse_line(missing)
            .unwrap_err()
            .contains("missing field `timestamp`"));
        assert!(decode_payload("{\"streams\":NaN}")
            .unwrap_err()
            .starts_with("record value is not valid JSON"));
        assert!(decode_payload("[1]")
            .unwrap_err()
            .contains("must be a JSON object, found an array"));
    }

    type Fields = Result<Vec<(Arc<str>, Value)>, String>;

    /// Decodes with the fast path alone (`None` where it defers) and with serde_json.
    fn both(payload: &str) -> (Option<Vec<Value>>, Fields) {
        let mut d = Decoder::default();
        d.payload.extend_from_slice(payload.as_bytes());
        let fast = d.fast_payload().then(|| {
            let mut b = BatchBuilder::default();
            d.commit(
                0,
                Origin::default(),
                &mut b,
                std::str::from_utf8(&d.payload).unwrap(),
            );
            let batch = b.take();
            batch.columns.iter().map(|c| c.value(0)).collect()
        });
        (fast, decode_payload(payload))
    }

    #[test]
    fn floats_written_in_full_read_back_bit_for_bit() {
        // Products like 10.47 × 1e8 print with 17 significant digits, past the exact fast path.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut values = vec![
            10.47 * 1e8,
            9.13 * 1e8,
            0.1 + 0.2,
            1e300,
            5e-324,
            -123.456e-7,
        ];
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push(f64::from_bits(x >> 2) * if x & 1 == 0 { 1.0 } else { -1.0 });
        }
        for v in values.into_iter().filter(|v| v.is_finite()) {
            let text = format!("{{\"x\":{}}}", zmij::Buffer::new().format_finite(v));
            let (fast, serde) = both(&text);
            let want = Value::Float(v);
            if let Some(fast) = fast {
                assert_eq!(fast, std::slice::from_ref(&want), "{text}");
            }
            assert_eq!(serde.unwrap()[0].1, want, "{text}");
        }
    }

    #[test]
    fn the_fast_path_agrees_with_serde_json() {
        let cases = [
            r#"{"genre":"Rock","streams":19.36,"year":1975}"#,
            r#" { "a" : -12 , "b":true,"c":false,"d":null ,"e":"x\"y\\z\u00e9\ud83d\ude00" } "#,
            r#"{"f":0.1,"g":1e3,"h":-2.5E-3,"i":123456789012345678,"j":5.710,"k":0}"#,
            r#"{"l":9007199254740993.5,"m":1e300,"n":-0,"o":1.7976931348623157e308}"#,
            r#"{"p":9223372036854775807,"q":-9223372036854775808,"r":18446744073709551615}"#,
            r#"{}"#,
            r#"{"nested":{"a":[1,2]},"s":"t"}"#,
        ];
        for case in cases {
            let (fast, slow) = both(case);
            let slow: Vec<Value> = slow.unwrap().into_iter().map(|(_, v)| v).collect();
            if let Some(fast) = fast {
                assert_eq!(fast.len(), slow.len(), "{case}");
                for (a, b) in fast.iter().zip(&slow) {
                    assert_eq!(
                        crate::record::Key(a.clone()),
                        crate::record::Key(b.clone()),
                        "{case}"
                    );
                }
            }
        }
        // The simple shapes do take the fast path.
        assert!(
            both(cases[0]).0.is_some() && both(cases[1]).0.is_some() && both(cases[2]).0.is_some()
        );
        // And what it does not handle is left to serde_json, never guessed.
        for bad in [
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            "{\"a\":\"\u{1}\"}",
            r#"{"a":1}x"#,
            r#"[1]"#,
            // Beyond the range of f64: serde_json refuses it, so the fast path must not read infinity.
            r#"{"a":1e400}"#,
            r#"{"a":-1.5e309}"#,
        ] {
            assert!(both(bad).0.is_none(), "{bad}");
        }
        let refused = decode_payload(r#"{"a":1e400}"#).unwrap_err();
        assert!(refused.contains("number out of range"), "{refused}");
    }

    #[test]
    fn capture_lines_decode_alike_on_both_paths() {
        let line = r#"{"topic":"t","partition":2,"offset":7,"timestamp":1717243200000,"key":null,"value":"{\"genre\":\"Ja\\u00e9zz\",\"streams\":5.5}"}"#;
        let reordered = r#"{"value":"{\"genre\":\"Ja\\u00e9zz\",\"streams\":5.5}","key":"k","timestamp":1717243200000,"offset":7,"partition":2,"topic":"t","extra":1}"#;
        let mut d = Decoder::default();
        let mut b = BatchBuilder::default();
        d.line(line, &mut b).unwrap();
        d.line(reordered, &mut b).unwrap();
        assert!(d
            .line("{\"topic\":\"t\"}", &mut b)
            .unwrap_err()
            .contains("missing field"));
        let batch = b.take();
        assert_eq!(batch.len, 2);
        assert_eq!(
            batch.origin[1],
            Origin {
                partition: 2,
                offset: 7
            }
        );
        assert_eq!(batch.value("genre", 0), Value::Str("Jaézz".into()));
        assert_eq!(batch.value("genre", 1), Value::Str("Jaézz".into()));
        assert_eq!(batch.value("streams", 1), Value::Float(5.5));
    }

    /// A decoded line: its time, origin and fields.
    type Decoded = (i64, Origin, Vec<(String, Value)>);

    /// A line's record as decoded by `d`, or its dead-letter reason.
    fn decoded(d: &mut Decoder, line: &str) -> Result<Decoded, String> {
        let mut b = BatchBuilder::default();
        d.line(line, &mut b)?;
        let batch = b.take();
        let fields = batch.columns.iter();
        let fields = fields.map(|c| (c.name.to_string(), c.value(0))).collect();
        Ok((batch.time[0], batch.origin[0], fields))
    }

    #[test]
    fn lines_read_by_template_equal_lines_read_by_the_scanner() {
        let base = r#"{"topic":"t","partition":1,"offset":41,"timestamp":1717243200000,"key":"track-1","value":"{\"track\":\"A B\",\"genre\":\"Rock\",\"streams\":5.71,\"year\":1967,\"live\":true}"}"#;
        let primed = || {
            let mut d = Decoder::default();
            decoded(&mut d, base).unwrap();
            d
        };
        // Every line once after `base` (the template reads it, or defers to the scanner) and once
        // with a new decoder (the scanner alone).
        let check = |line: &str| {
            let by_template = decoded(&mut primed(), line);
            let by_scanner = decoded(&mut Decoder::default(), line);
            assert_eq!(by_template, by_scanner, "{line}");
        };
        let alike = [
            base,
            r#"{"topic":"t","partition":12,"offset":9,"timestamp":-5,"key":"","value":"{\"track\":\"\",\"genre\":\"Progressive Rock\",\"streams\":-0.5e3,\"year\":null,\"live\":false}"}"#,
            r#"{"topic":"t","partition":0,"offset":18446744073709551615,"timestamp":9223372036854775807,"key":"k","value":"{\"track\":\"x\",\"genre\":\"y\",\"streams\":\"5.71\",\"year\":1e400,\"live\":1}"}"#,
        ];
        for line in alike {
            check(line);
        }
        // Lines laid out like `base` are read by the template; others are not.
        let d = primed();
        let by_template = |line: &str| {
            d.template
                .read(line.as_bytes(), &mut vec![], &mut None, &mut vec![])
        };
        assert!(by_template(alike[1]).is_some());
        assert!(by_template(alike[2]).is_none());
        let escaped = base.replace("A B", r"A \\u00e9");
        assert!(by_template(&escaped).is_none());
        check(&escaped);
        let replacements = [
            "0", "9", " ", "\"", "\\", "x", "}", ",", ":", "-", ".", "e", "\u{1}",
        ];
        for line in one_edit_away(base, &replacements) {
            check(&line);
        }
    }

    /// Every text one edit away from `base`: a character replaced by one of `replacements`, one of them
    /// inserted, or a character removed, anywhere.
    fn one_edit_away(base: &str, replacements: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        let ends = base.char_indices().map(|(at, c)| (at, at + c.len_utf8()));
        for (at, next) in ends.chain([(base.len(), base.len())]) {
            for r in replacements {
                if at < base.len() {
                    out.push(format!("{}{r}{}", &base[..at], &base[next..]));
                }
                out.push(format!("{}{r}{}", &base[..at], &base[at..]));
            }
            if at < base.len() {
                out.push(format!("{}{}", &base[..at], &base[next..]));
            }
        }
        out
    }

    #[test]
    fn payloads_read_by_template_equal_payloads_read_by_the_scanner() {
        // Kafka records: a payload alone, read after `base` (by its template where laid out alike) and
        // with a new decoder (by the scanner).
        let base =
            r#"{"track":"A B","genre":"Rock","streams":5.71,"year":1967,"live":true,"n":null}"#;
        let decode = |d: &mut Decoder, payload: &str| {
            let mut b = BatchBuilder::default();
            d.payload(payload, 7, Origin::default(), &mut b)?;
            let batch = b.take();
            let fields = batch.columns.iter();
            Ok::<_, String>(
                fields
                    .map(|c| (c.name.to_string(), c.value(0)))
                    .collect::<Vec<_>>(),
            )
        };
        let check = |payload: &str| {
            let mut primed = Decoder::default();
            decode(&mut primed, base).unwrap();
            let by_template = decode(&mut primed, payload);
            assert_eq!(
                by_template,
                decode(&mut Decoder::default(), payload),
                "{payload}"
            );
        };
        let mut d = Decoder::default();
        decode(&mut d, base).unwrap();
        let alike = r#"{"track":"","genre":"Progressive Rock","streams":-1e3,"year":null,"live":false,"n":true}"#;
        assert!(d
            .payload_template
            .read(alike.as_bytes(), &mut vec![], &mut None, &mut vec![])
            .is_some());
        check(alike);
        let replacements = [
            "0", " ", "\"", "\\", "x", "}", ",", ":", "-", ".", "\u{1}", "é",
        ];
        for payload in one_edit_away(base, &replacements) {
            check(&payload);
        }
    }

    #[test]
    fn numbers_of_every_length_read_as_serde_json_reads_them() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut cases = vec![
            "18446744073709551615".to_string(),
            "18446744073709551616".into(),
            "9223372036854775808".into(),
            "-9223372036854775808".into(),
            "-9223372036854775809".into(),
            "0.000000000000000000001".into(),
        ];
        for digits in 1..=24 {
            for _ in 0..40 {
                let mut n: String = (0..digits)
                    .map(|_| char::from(b'0' + (next() % 10) as u8))
                    .collect();
                if n.len() > 1 && n.starts_with('0') {
                    n.replace_range(..1, "1");
                }
                if next() % 2 == 0 {
                    let point = 1 + (next() as usize) % digits;
                    n.insert(point.min(n.len()), '.');
                }
                if next() % 3 == 0 {
                    n.insert(0, '-');
                }
                cases.push(n.trim_end_matches('.').to_string());
            }
        }
        let mut fast_read = 0;
        for n in &cases {
            let payload = format!("{{\"n\":{n}}}");
            let (fast, slow) = both(&payload);
            if let Some(fast) = fast {
                assert_eq!(fast, [slow.unwrap().remove(0).1], "{n}");
                fast_read += 1;
            }
        }
        // Up to 17 significant digits, numbers are the scanner's.
        assert!(
            fast_read > cases.len() * 2 / 3,
            "{fast_read} of {}",
            cases.len()
        );
    }

    #[test]
    fn payloads_read_in_place_equal_serde_json() {
        let payloads = [
            r#"{"genre":"Rock","streams":5.71,"year":1975,"live":true,"note":null}"#,
            r#"{ "a" : -1 , "b" : "x y" }"#,
            r#"{}"#,
            "{\"q\":\"say \\\"hi\\\"\",\"t\":\"tab\\there\"}",
            "{\n\"a\":1}",
            r#"{"u":"\u00e9"}"#,
        ];
        for payload in payloads {
            let line = serde_json::json!({
                "topic": "t", "partition": 1, "offset": 2, "timestamp": 3, "key": null, "value": payload,
            })
            .to_string();
            let mut b = BatchBuilder::default();
            Decoder::default().line(&line, &mut b).unwrap();
            let batch = b.take();
            let fast: Vec<(String, Value)> = batch
                .columns
                .iter()
                .map(|c| (c.name.to_string(), c.value(0)))
                .collect();
            let slow: Vec<(String, Value)> = decode_payload(payload)
                .unwrap()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            assert_eq!(fast, slow, "{line}");
            assert_eq!(batch.time, [3]);
        }
        // The plain one is read in place, without unescaping.
        let line = serde_json::json!({"topic":"t","partition":0,"offset":0,"timestamp":0,"key":null,"value":payloads[0]}).to_string();
        let mut d = Decoder::default();
        assert!(d.fast_line(line.as_bytes(), true).is_some());
        assert_eq!(d.fields.len(), 5);
    }

    #[test]
    fn records_read_by_template_equal_records_read_by_the_scanner() {
        let base = r#"{"topic":"t","partition":1,"offset":41,"timestamp":1717243200000,"key":"track-1","value":"{\"track\":\"A B\",\"streams\":5.71,\"note\":\"\\u00e9\"}"}"#;
        let record = |d: &mut Decoder, line: &str| {
            d.record(line).map(|r| {
                let key = r.key.map(Cow::into_owned);
                (r.timestamp, r.partition, key, r.value.into_owned())
            })
        };
        let mut primed = Decoder::default();
        record(&mut primed, base).unwrap();
        let alike = r#"{"topic":"t","partition":12,"offset":9,"timestamp":-5,"key":"","value":"{\"x\":[1,{\"y\":\"\\\"\"}]}"}"#;
        assert!(primed
            .record_template
            .read(alike.as_bytes(), &mut vec![], &mut None, &mut vec![])
            .is_some());
        let replacements = [
            "0", "9", " ", "\"", "\\", "x", "}", ",", ":", "-", "u", "\u{1}",
        ];
        for line in one_edit_away(base, &replacements)
            .iter()
            .map(String::as_str)
            .chain([alike])
        {
            // Primed anew each time: a line read by the scanner replaces the template.
            let mut primed = Decoder::default();
            record(&mut primed, base).unwrap();
            assert_eq!(
                record(&mut primed, line),
                record(&mut Decoder::default(), line),
                "{line}"
            );
        }
    }

    #[test]
    fn records_for_produce_equal_serde_json() {
        let lines = [
            r#"{"topic":"t","partition":2,"offset":7,"timestamp":1717243200000,"key":"track-1","value":"{\"genre\":\"Ja\\u00e9zz\",\"streams\":5.5}"}"#,
            r#"{"topic":"t","partition":0,"offset":1,"timestamp":5,"key":null,"value":"{}"}"#,
            r#"{"topic":"t","partition":0,"offset":1,"timestamp":5,"key":"k","value":"{}"}"#,
            r#"{"topic":"t","partition":0,"offset":1,"timestamp":5,"value":"{}"}"#,
            r#"{"topic":"t","partition":0,"offset":1,"timestamp":5,"key":"a\"b","value":"{}","extra":1}"#,
        ];
        let mut d = Decoder::default();
        for line in lines {
            let fast = d.record(line).unwrap();
            let slow = parse_line(line).unwrap();
            assert_eq!(
                (
                    fast.timestamp,
                    fast.partition,
                    fast.key.as_deref(),
                    &*fast.value
                ),
                (
                    slow.timestamp,
                    slow.partition,
                    slow.key.as_deref(),
                    &*slow.value
                ),
                "{line}"
            );
        }
        assert!(d.record("{}").unwrap_err().contains("missing field"));
    }
}
