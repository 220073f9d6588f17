//! Strings lazyvma did not write itself (a process's comm, which any user sets with
//! prctl(PR_SET_NAME); cgroup paths; host names and files of a report from elsewhere;
//! kernel strings) reach root's terminal and markdown documents. Control characters are
//! shown as escapes, never sent: C0 and DEL, C1 (U+0080..U+009F, which some terminals take as
//! CSI/OSC), and the bidirectional overrides that reorder what is read.
use std::{borrow::Cow, io::Write};

fn is_control(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
}

fn push_escaped(o: &mut String, c: char) {
    let n = c as u32;
    if n < 0x100 {
        o.push_str(&format!("\\x{n:02x}"));
    } else {
        o.push_str(&format!("\\u{{{n:04x}}}"));
    }
}

/// One field (a comm, a path): every control character escaped, newline and tab included.
pub fn ctl(s: &str) -> Cow<'_, str> {
    escape_if(s, is_control)
}

/// A command-line argument: as `ctl`, and bytes that are not UTF-8 as `\xNN`.
pub fn os(s: &std::ffi::OsStr) -> Cow<'_, str> {
    use std::os::unix::ffi::OsStrExt;
    if let Some(s) = s.to_str() {
        return ctl(s);
    }
    let mut o = String::with_capacity(s.len() + 8);
    for chunk in s.as_bytes().utf8_chunks() {
        o.push_str(&ctl(chunk.valid()));
        for b in chunk.invalid() {
            o.push_str(&format!("\\x{b:02x}"));
        }
    }
    Cow::Owned(o)
}

/// A whole output: as `ctl`, but its own newlines and tabs kept.
pub fn lines(s: &str) -> Cow<'_, str> {
    escape_if(s, |c| c != '\n' && c != '\t' && is_control(c))
}

fn escape_if(s: &str, bad: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !s.chars().any(&bad) {
        return Cow::Borrowed(s);
    }
    let mut o = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if bad(c) {
            push_escaped(&mut o, c);
        } else {
            o.push(c);
        }
    }
    Cow::Owned(o)
}

/// One markdown field (a table cell, a title's host): control characters escaped, markdown's
/// metacharacters backslash-escaped, and `<`, `>`, `&` as entities, so no HTML gets through.
/// `_` only where it could open or close emphasis (not inside a word: `anon_vma` stays).
pub fn md(s: &str) -> String {
    let chars: Vec<char> = ctl(s).chars().collect();
    let word = |i: Option<usize>| i.and_then(|i| chars.get(i)).is_some_and(|c| c.is_alphanumeric());
    let mut o = String::with_capacity(s.len() + 8);
    for (i, &c) in chars.iter().enumerate() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '_' if word(i.checked_sub(1)) && word(Some(i + 1)) => o.push(c),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '~' => {
                o.push('\\');
                o.push(c);
            }
            _ => o.push(c),
        }
    }
    o
}

/// A writer to a terminal: what goes through it has its control characters escaped but
/// newlines and tabs (UTF-8 in, as everything lazyvma formats is).
pub struct Terminal<W: Write> {
    inner: W,
    /// An incomplete UTF-8 sequence at the end of the last write.
    partial: Vec<u8>,
}

impl<W: Write> Terminal<W> {
    pub fn new(inner: W) -> Terminal<W> {
        Terminal { inner, partial: Vec::new() }
    }
}

impl<W: Write> Write for Terminal<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.partial.extend_from_slice(buf);
        let bytes = std::mem::take(&mut self.partial);
        let valid = match std::str::from_utf8(&bytes) {
            Ok(_) => bytes.len(),
            // An incomplete sequence at the end waits for the next write (at most 3 bytes).
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => bytes.len(),
        };
        let text = String::from_utf8_lossy(&bytes[..valid]);
        self.inner.write_all(lines(&text).as_bytes())?;
        self.partial = bytes[valid..].to_vec();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.partial.is_empty() {
            let rest = std::mem::take(&mut self.partial);
            self.inner.write_all(lines(&String::from_utf8_lossy(&rest)).as_bytes())?;
        }
        self.inner.flush()
    }
}

impl<W: Write> Drop for Terminal<W> {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// JSON for a terminal or a scraper: serde_json escapes C0, `"` and `\\` only; DEL, C1 and
/// the bidi overrides are written `\\uXXXX` here too. The parsed strings stay exact.
pub fn json_pretty<T: serde::Serialize + ?Sized>(v: &T) -> serde_json::Result<String> {
    let mut out = Vec::with_capacity(4096);
    json_to(&mut out, v)?;
    // The serializer writes UTF-8 only.
    Ok(String::from_utf8(out).expect("serde_json writes UTF-8"))
}

/// As [`json_pretty`], into a writer (a huge document never held as a string).
pub fn json_to<W: Write, T: serde::Serialize + ?Sized>(w: W, v: &T) -> serde_json::Result<()> {
    v.serialize(&mut serde_json::Serializer::with_formatter(w, Json(serde_json::ser::PrettyFormatter::new())))
}

/// As [`json_pretty`], on one line (as `Value`'s Display).
pub fn json_line<T: serde::Serialize + ?Sized>(v: &T) -> serde_json::Result<String> {
    let mut out = Vec::with_capacity(4096);
    v.serialize(&mut serde_json::Serializer::with_formatter(&mut out, Json(serde_json::ser::CompactFormatter)))?;
    Ok(String::from_utf8(out).expect("serde_json writes UTF-8"))
}

struct Json<F>(F);

/// Delegates what PrettyFormatter overrides; the string fragments are escaped.
macro_rules! delegate {
    ($($f:ident),*) => {$(
        fn $f<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
            self.0.$f(w)
        }
    )*};
}

impl<F: serde_json::ser::Formatter> serde_json::ser::Formatter for Json<F> {
    delegate!(begin_array, end_array, end_array_value, begin_object, end_object, begin_object_value, end_object_value);

    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        self.0.begin_array_value(w, first)
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        self.0.begin_object_key(w, first)
    }

    fn write_string_fragment<W: ?Sized + Write>(&mut self, w: &mut W, fragment: &str) -> std::io::Result<()> {
        let mut rest = fragment;
        while let Some((i, c)) = rest.char_indices().find(|(_, c)| is_control(*c)) {
            w.write_all(&rest.as_bytes()[..i])?;
            write!(w, "\\u{:04x}", c as u32)?;
            rest = &rest[i + c.len_utf8()..];
        }
        w.write_all(rest.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PWN: &str = "\x1b]0;pwn\x07|<script>\u{9b}31m\u{202e}\x7f\n";

    #[test]
    fn no_control_character_gets_through() {
        assert_eq!(ctl(PWN), "\\x1b]0;pwn\\x07|<script>\\x9b31m\\u{202e}\\x7f\\x0a");
        assert_eq!(lines(PWN), "\\x1b]0;pwn\\x07|<script>\\x9b31m\\u{202e}\\x7f\n");
        assert_eq!(md(PWN), "\\\\x1b\\]0;pwn\\\\x07\\|&lt;script&gt;\\\\x9b31m\\\\u{202e}\\\\x7f\\\\x0a");
        assert_eq!(md("anon_vma _x_ *b* [l](u) `c`"), "anon_vma \\_x\\_ \\*b\\* \\[l\\](u) \\`c\\`");
        assert!(matches!(ctl("bash"), Cow::Borrowed("bash")));
    }

    #[test]
    fn json_escapes_what_a_terminal_would_take_and_keeps_the_string() {
        let v = serde_json::json!({ "comm": PWN, "k": ["a", 1] });
        let j = json_pretty(&v).unwrap();
        assert_eq!(j, "{\n  \"comm\": \"\\u001b]0;pwn\\u0007|<script>\\u009b31m\\u202e\\u007f\\n\",\n  \"k\": [\n    \"a\",\n    1\n  ]\n}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&j).unwrap(), v);
        assert_eq!(json_line(&v).unwrap(), "{\"comm\":\"\\u001b]0;pwn\\u0007|<script>\\u009b31m\\u202e\\u007f\\n\",\"k\":[\"a\",1]}");
        assert_eq!(
            json_pretty(&serde_json::json!({"a": [1, {"b": "anon_vma"}]})).unwrap(),
            serde_json::to_string_pretty(&serde_json::json!({"a": [1, {"b": "anon_vma"}]})).unwrap()
        );
    }

    #[test]
    fn the_terminal_writer_escapes_across_writes() {
        let mut out = Vec::new();
        {
            let mut t = Terminal::new(&mut out);
            let b = PWN.as_bytes();
            // C1 U+009B is two bytes in UTF-8: split it between writes.
            let cut = PWN.find('\u{9b}').unwrap() + 1;
            t.write_all(&b[..cut]).unwrap();
            t.write_all(&b[cut..]).unwrap();
        }
        assert_eq!(String::from_utf8(out).unwrap(), lines(PWN));
    }
}
