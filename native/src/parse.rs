//! The strict JSON subset and the contract's text forms the fast check reads.

/// Integer digits of a number the fast check reads (beyond: the reference decides).
const MAX_INT_DIGITS: usize = 15;
/// Fraction digits of a number the fast check reads.
const MAX_FRACTION_DIGITS: usize = 17;

/// Bytes already checked to be ASCII, as text.
pub(crate) fn ascii(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or("")
}

/// `[0-9]{4}-[A-Z]{5}`, the contract's customerID pattern.
pub(crate) fn customer_id(s: &[u8]) -> bool {
    s.len() == 10
        && s[..4].iter().all(u8::is_ascii_digit)
        && s[4] == b'-'
        && s[5..].iter().all(u8::is_ascii_uppercase)
}

fn digits(s: &[u8]) -> Option<u32> {
    let mut value = 0u32;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u32::from(c - b'0');
    }
    Some(value)
}

/// `YYYY-MM-DDTHH:MM:SS[.f{1,6}][Z]` as a valid moment (what `datetime.fromisoformat` takes).
pub(crate) fn timestamp(s: &[u8]) -> Option<(i32, u8, u8, u8, u8, u8, u32)> {
    if s.len() < 19 || s[4] != b'-' || s[7] != b'-' || s[10] != b'T' || s[13] != b':' {
        return None;
    }
    if s[16] != b':' {
        return None;
    }
    let year = digits(&s[0..4])?;
    let month = digits(&s[5..7])?;
    let day = digits(&s[8..10])?;
    let hour = digits(&s[11..13])?;
    let minute = digits(&s[14..16])?;
    let second = digits(&s[17..19])?;
    let mut rest = &s[19..];
    if rest.last() == Some(&b'Z') {
        rest = &rest[..rest.len() - 1];
    }
    let mut micro = 0u32;
    if !rest.is_empty() {
        let fraction = rest.strip_prefix(b".")?;
        if fraction.is_empty() || fraction.len() > 6 {
            return None;
        }
        micro = digits(fraction)? * 10u32.pow(6 - fraction.len() as u32);
    }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if year == 0 || day == 0 || day > days || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    Some((
        year as i32,
        month as u8,
        day as u8,
        hour as u8,
        minute as u8,
        second as u8,
        micro,
    ))
}

/// A strict subset of JSON: what it accepts, orjson reads the same way.
pub(crate) struct Parser<'a> {
    pub(crate) s: &'a [u8],
    pub(crate) i: usize,
}

impl<'a> Parser<'a> {
    pub(crate) fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    pub(crate) fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    pub(crate) fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    pub(crate) fn expect(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    pub(crate) fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.s[self.i..].starts_with(word) {
            self.i += word.len();
            Some(())
        } else {
            None
        }
    }

    /// A string of printable ASCII without escapes (anything else: the reference decides).
    pub(crate) fn string(&mut self) -> Option<&'a [u8]> {
        self.expect(b'"')?;
        let start = self.i;
        loop {
            match self.next()? {
                b'"' => return Some(&self.s[start..self.i - 1]),
                b'\\' => return None,
                c if !(0x20..0x7f).contains(&c) => return None,
                _ => {}
            }
        }
    }

    /// The digits of a plain integer (no sign, no leading zero), ending the number.
    fn whole(&mut self) -> Option<&'a [u8]> {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        let text = &self.s[start..self.i];
        if text.is_empty() || text.len() > MAX_INT_DIGITS || (text.len() > 1 && text[0] == b'0') {
            return None;
        }
        Some(text)
    }

    pub(crate) fn integer(&mut self) -> Option<i64> {
        let text = self.whole()?;
        if matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return None; // a float: not an int to the contract
        }
        ascii(text).parse().ok()
    }

    /// A non-negative JSON number without exponent, as orjson reads it (an int as a float).
    pub(crate) fn number(&mut self) -> Option<f64> {
        let start = self.i;
        self.whole()?;
        if self.peek() == Some(b'.') {
            self.i += 1;
            let fraction = self.i;
            while let Some(b'0'..=b'9') = self.peek() {
                self.i += 1;
            }
            let n = self.i - fraction;
            if n == 0 || n > MAX_FRACTION_DIGITS {
                return None;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            return None;
        }
        ascii(&self.s[start..self.i])
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
    }
}
