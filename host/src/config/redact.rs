//! Secrets kept out of diagnostics. A diagnostic quotes the line it points at, and that line may hold a
//! password: in a connection string (`mongodb://app:PW@db`), or as the value of a key that names a
//! secret (`"sasl.password" = "…"`), also inside an inline table the config does not know or on a line
//! that does not even parse. Those values are shown as `***`.

/// Whether a key (possibly dotted, like `sasl.password`) names a secret: it mentions a password, secret,
/// token or credential, or has a part that is `key` or a kind of key (`api_key`, `ssl.key.pem`,
/// `apikey`). A bare `key` and `key_fields` are stage settings (a window's key), not secrets.
pub fn is_secret_name(name: &str) -> bool {
    let name = name.trim_matches(['"', '\'']).to_ascii_lowercase();
    if ["password", "passwd", "secret", "token", "credential"]
        .iter()
        .any(|w| name.contains(w))
    {
        return true;
    }
    if name == "key" || name.starts_with("key_") {
        return false;
    }
    const KEYS: [&str; 6] = [
        "key",
        "apikey",
        "accesskey",
        "privatekey",
        "secretkey",
        "signingkey",
    ];
    name.split(['.', '_', '-']).any(|part| KEYS.contains(&part))
}

/// `line` with every secret replaced by `***`, and the 1-based character column `col` moved to where
/// the same text is in the new line.
pub fn redact_line(line: &str, col: usize) -> (String, usize) {
    let mut ranges = uri_passwords(line);
    ranges.extend(secret_values(line));
    ranges.sort_unstable();
    let mut out = String::with_capacity(line.len());
    let mut at = 0;
    let mut new_col = col;
    let byte_col = line
        .char_indices()
        .nth(col.saturating_sub(1))
        .map_or(line.len(), |(i, _)| i);
    for (start, end) in ranges {
        if start < at || start >= end {
            continue;
        }
        out.push_str(&line[at..start]);
        out.push_str("***");
        let hidden = line[start..end].chars().count();
        if end <= byte_col {
            new_col = new_col + 3 - hidden;
        } else if start < byte_col {
            new_col -= line[start..byte_col].chars().count();
        }
        at = end;
    }
    out.push_str(&line[at..]);
    (out, new_col.max(1))
}

/// Byte ranges of the passwords in `scheme://user:password@host` strings.
fn uri_passwords(line: &str) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(i) = line[from..].find("://") {
        let userinfo = from + i + 3;
        let end = line[userinfo..]
            .find(['@', '/', '"', '\'', ' ', '?', '#', ',', '}'])
            .map_or(line.len(), |j| userinfo + j);
        if line[end..].starts_with('@') {
            if let Some(colon) = line[userinfo..end].find(':') {
                found.push((userinfo + colon + 1, end));
            }
        }
        from = userinfo;
    }
    found
}

/// Byte ranges of the values of `key = value` pairs whose key names a secret. A scan rather than a
/// parse, so that a line with a syntax error is covered too; an unterminated string runs to the end.
fn secret_values(line: &str) -> Vec<(usize, usize)> {
    let bytes = line.as_bytes();
    let mut found = Vec::new();
    // Where the current key began: after the last `{`, `,`, or the start of the line.
    let mut key_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' | b'\'' => i = skip_string(bytes, i),
            b'{' | b',' | b'[' => {
                key_start = i + 1;
                i += 1;
            }
            b'#' => break,
            b'=' => {
                let key = &line[key_start..i];
                let value_start = i + 1 + count_spaces(&bytes[i + 1..]);
                let value_end = match bytes.get(value_start) {
                    Some(b'"' | b'\'') => skip_string(bytes, value_start),
                    Some(b'{' | b'[') | None => value_start,
                    Some(_) => bytes[value_start..]
                        .iter()
                        .position(|b| matches!(b, b',' | b'}' | b']' | b'#' | b' '))
                        .map_or(bytes.len(), |j| value_start + j),
                };
                if is_secret_name(key.trim()) && value_end > value_start {
                    // Keep the quotes, hide what is between them.
                    let quoted = matches!(bytes[value_start], b'"' | b'\'');
                    let closed = quoted
                        && value_end > value_start + 1
                        && bytes[value_end - 1] == bytes[value_start];
                    let start = value_start + usize::from(quoted);
                    let end = value_end - usize::from(closed);
                    if end > start {
                        found.push((start, end));
                    }
                }
                i = value_end.max(i + 1);
                key_start = i;
            }
            _ => i += 1,
        }
    }
    found
}

/// The index after the string that starts at `at` (its closing quote, or the end of the line).
fn skip_string(bytes: &[u8], at: usize) -> usize {
    let quote = bytes[at];
    let mut i = at + 1;
    while i < bytes.len() {
        if bytes[i] == b'\\' && quote == b'"' {
            i += 2;
            continue;
        }
        if bytes[i] == quote {
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

fn count_spaces(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .take_while(|b| **b == b' ' || **b == b'\t')
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_hold_secrets() {
        for secret in [
            "sasl.password",
            "\"sasl.password\"",
            "ssl.key.password",
            "api_key",
            "apikey",
            "client_secret",
            "sasl.oauthbearer.token",
            "Password",
        ] {
            assert!(is_secret_name(secret), "{secret}");
        }
        for setting in [
            "key",
            "key_fields",
            "brokers",
            "keyword",
            "monkey",
            "group_id",
        ] {
            assert!(!is_secret_name(setting), "{setting}");
        }
    }

    #[test]
    fn hides_passwords_and_secret_values_and_keeps_the_column() {
        let (line, col) = redact_line("url = \"mongodb://app:hunter2@db:27017/x\"", 1);
        assert_eq!(
            (line.as_str(), col),
            ("url = \"mongodb://app:***@db:27017/x\"", 1)
        );

        let text = "properties = { \"sasl.password\" = \"hunter2\", bogus = 1 }";
        let col = text.find("bogus").unwrap() + 1;
        let (line, new_col) = redact_line(text, col);
        assert_eq!(
            line,
            "properties = { \"sasl.password\" = \"***\", bogus = 1 }"
        );
        assert_eq!(&line[new_col - 1..new_col + 4], "bogus");

        let (line, _) = redact_line("creds = { user = \"u\", password = 's3cret' }", 1);
        assert_eq!(line, "creds = { user = \"u\", password = '***' }");

        // A syntax error: the string never ends.
        let (line, _) = redact_line("sasl.password = \"hunter2", 1);
        assert_eq!(line, "sasl.password = \"***");

        // A window's key is not a secret; a `#` comment is left alone.
        let (line, _) = redact_line("key = \"genre\" # token = x", 1);
        assert_eq!(line, "key = \"genre\" # token = x");
    }
}
