//! Name/value pairs (request headers, query parameters) packed into two allocations.
//!
//! A session keeps the headers and the query of the request that opened it for its whole
//! life, so that a later CONNECT can be authenticated with them. Held as a `(String, String)`
//! per pair they cost two allocations each, about half a KiB per idle connection; packed,
//! two in all. Their offsets are `u32`: they come from a request head, which the server bounds
//! far below 4 GiB (`usize` offsets were 16 bytes a pair, about 50 of an idle connection).

use std::fmt;

/// Name/value pairs in their original order, duplicates kept.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Pairs {
    /// Every name and value, back to back.
    text: Box<str>,
    /// Where each name and each value ends in `text`, alternating name, value.
    ends: Box<[u32]>,
}

impl Pairs {
    /// The pairs in their order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.ends.chunks_exact(2).scan(0, |start, ends| {
            let (name_end, value_end) = (ends[0] as usize, ends[1] as usize);
            let pair = (
                &self.text[*start..name_end],
                &self.text[name_end..value_end],
            );
            *start = value_end;
            Some(pair)
        })
    }

    /// The first value named exactly `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The first value whose name is `name` in any ASCII case (header names).
    pub fn get_ignore_case(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// How many pairs there are.
    pub fn len(&self) -> usize {
        self.ends.len() / 2
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Pairs {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Pairs {
        let mut text = String::new();
        let mut ends = Vec::new();
        let end = |text: &String| u32::try_from(text.len()).expect("pairs of a request head");
        for (name, value) in pairs {
            text.push_str(name.as_ref());
            ends.push(end(&text));
            text.push_str(value.as_ref());
            ends.push(end(&text));
        }
        Pairs {
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
        }
    }
}

impl fmt::Debug for Pairs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_keep_order_duplicates_and_empty_parts() {
        let p: Pairs = [("a", "1"), ("", "x"), ("a", ""), ("B", "é\u{0}z")]
            .into_iter()
            .collect();
        assert_eq!(
            p.iter().collect::<Vec<_>>(),
            [("a", "1"), ("", "x"), ("a", ""), ("B", "é\u{0}z")]
        );
        assert_eq!(p.len(), 4);
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(p.get("b"), None);
        assert_eq!(p.get_ignore_case("b"), Some("é\u{0}z"));
        assert_eq!(
            format!("{p:?}"),
            r#"[("a", "1"), ("", "x"), ("a", ""), ("B", "é\0z")]"#
        );
        let none = Pairs::default();
        assert!(none.is_empty());
        assert_eq!(none.iter().count(), 0);
    }
}
