//! Capture files read in chunks of whole lines, for the replay source and `produce`: one read per many
//! lines, each line's end found once, and a chunk's text checked for UTF-8 at once.

/// Reads a file in blocks and cuts them into chunks of whole lines.
pub struct Lines {
    file: std::fs::File,
    /// Read but not yet handed out: the start of the next chunk.
    carry: Vec<u8>,
    at_end: bool,
    /// Bytes per line so far, to read about what a chunk needs and carry little over.
    line_len: usize,
}

impl Lines {
    pub fn new(file: std::fs::File) -> Self {
        Lines {
            file,
            carry: Vec::new(),
            at_end: false,
            line_len: 256,
        }
    }

    /// The next `lines` lines (fewer at the end of the file) in `buf`, where each ends, and how many
    /// there are; none at the end.
    pub fn next(
        &mut self,
        lines: usize,
        mut buf: Vec<u8>,
    ) -> std::io::Result<(Vec<u8>, Vec<usize>, u64)> {
        use std::io::Read;
        buf.clear();
        buf.extend_from_slice(&self.carry);
        self.carry.clear();
        let mut scanned = 0;
        let mut ends = Vec::with_capacity(lines);
        loop {
            for at in memchr::memchr_iter(b'\n', &buf[scanned..]) {
                ends.push(scanned + at);
                if ends.len() == lines {
                    let cut = scanned + at + 1;
                    self.carry.extend_from_slice(&buf[cut..]);
                    buf.truncate(cut);
                    self.line_len = (cut / lines).max(1);
                    return Ok((buf, ends, lines as u64));
                }
            }
            scanned = buf.len();
            if self.at_end {
                let last = u64::from(buf.last().is_some_and(|&b| b != b'\n'));
                let n = ends.len() as u64 + last;
                return Ok((buf, ends, n));
            }
            // What the missing lines should take, and a little more.
            let want = ((lines - ends.len()) * self.line_len
                + (self.line_len * lines / 16).max(4096))
            .min(64 << 20) as u64;
            if (&mut self.file).take(want).read_to_end(&mut buf)? == 0 {
                self.at_end = true;
            }
        }
    }
}

/// The lines of a chunk from [`Lines::next`], numbered from 0, without their `\n`: each line's text, or
/// its bytes where they are not UTF-8. The chunk is checked as a whole, which is cheaper than line by
/// line; only a chunk that fails has its lines checked one by one, so that just the bad ones fail.
pub fn chunk_lines<'a>(
    bytes: &'a [u8],
    ends: &'a [usize],
) -> impl Iterator<Item = (usize, Result<&'a str, &'a [u8]>)> + 'a {
    let text = std::str::from_utf8(bytes).ok();
    let last = (bytes.last() != Some(&b'\n') && !bytes.is_empty()).then_some(bytes.len());
    let mut start = 0;
    ends.iter()
        .copied()
        .chain(last)
        .enumerate()
        .map(move |(i, end)| {
            let raw = start..end;
            start = end + 1;
            let line = match text {
                Some(t) => Ok(&t[raw]),
                None => std::str::from_utf8(&bytes[raw.clone()]).map_err(|_| &bytes[raw]),
            };
            (i, line)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_cut_whole_and_counted_as_decode_numbers_them() {
        let path = std::env::temp_dir().join(format!("tributary-lines-{}", std::process::id()));
        std::fs::write(&path, "a\nbb\n\nccc").unwrap();
        let mut lines = Lines::new(std::fs::File::open(&path).unwrap());
        assert_eq!(
            lines.next(2, Vec::new()).unwrap(),
            (b"a\nbb\n".to_vec(), vec![1, 4], 2)
        );
        assert_eq!(
            lines.next(2, b"junk".to_vec()).unwrap(),
            (b"\nccc".to_vec(), vec![0], 2)
        );
        assert_eq!(lines.next(2, Vec::new()).unwrap(), (Vec::new(), vec![], 0));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn chunk_lines_are_split_at_their_ends_and_checked_for_utf8() {
        let lines = |bytes: &[u8]| {
            let ends: Vec<usize> = memchr::memchr_iter(b'\n', bytes).collect();
            chunk_lines(bytes, &ends)
                .map(|(i, l)| (i, l.map(str::to_string).map_err(<[u8]>::to_vec)))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            lines(b"a\r\n\nbc"),
            [
                (0, Ok("a\r".into())),
                (1, Ok("".into())),
                (2, Ok("bc".into()))
            ]
        );
        // One bad line leaves its neighbours readable.
        assert_eq!(
            lines(b"a\n\xff\xfe\nc\n"),
            [
                (0, Ok("a".into())),
                (1, Err(vec![0xff, 0xfe])),
                (2, Ok("c".into()))
            ]
        );
        assert_eq!(lines(b""), []);
    }
}
