//! The escaping of lists in [`Fingerprint::encode`]'s text format: items
//! joined by `,`, with `%`, `;` and `,` inside an item written `%XX`.
//!
//! The layout of the whole string is the fingerprint's; this module only
//! writes and reads one list.
//!
//! [`Fingerprint::encode`]: super::fingerprint::Fingerprint::encode

/// Appends `items`, comma-separated and escaped, to `out`.
pub(super) fn push_list<'a>(out: &mut String, items: impl Iterator<Item = &'a str>) {
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        for c in item.chars() {
            match c {
                '%' | ';' | ',' => out.push_str(&format!("%{:02X}", c as u32)),
                _ => out.push(c),
            }
        }
    }
}

/// The items of a list written by [`push_list`]; `None` when an escape is broken.
pub(super) fn parse_list(s: &str) -> Option<Vec<String>> {
    if s.is_empty() {
        return Some(Vec::new());
    }
    s.split(',').map(unescape).collect()
}

fn unescape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            let hex: String = chars.by_ref().take(2).collect();
            let code = u32::from_str_radix(&hex, 16).ok().filter(|_| hex.len() == 2)?;
            out.push(char::from_u32(code)?);
        } else {
            out.push(c);
        }
    }
    Some(out)
}
