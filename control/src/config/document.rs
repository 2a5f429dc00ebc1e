//! Reading the TOML document section by section, so one mistake does not hide the others.
//!
//! `toml::from_str` stops at the first wrong type or unknown field. When it fails, the document is
//! parsed into a spanned table instead and each section, and each entry of a list section, is
//! deserialized on its own: a wrong type in one route leaves the other routes (and every other
//! section) to be read and checked. Each problem gets the path of the field the error's span falls
//! in (`routes[1].timeout`) and its line and column. A syntax error is the one problem that ends
//! the reading: nothing after it can be trusted.

use super::{Placement, Problems, RawConfig, Slots};
use serde::de::DeserializeOwned;
use std::ops::Range;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

/// The top-level keys a config may have.
const SECTIONS: &[&str] = &[
    "version",
    "listeners",
    "upstreams",
    "routes",
    "admin",
    "access_log",
    "observability",
    "auth",
    "rate_limit",
    "rate_limits",
    "discovery",
    "cache_zones",
];

/// What reading the document by section found: the parts that deserialized, where their entries
/// sit in the file, and every TOML-level problem.
pub(super) struct Read {
    pub raw: RawConfig,
    pub placement: Placement,
    pub problems: Problems,
}

/// Reads `text` by section. `Err` is the syntax error (one line: position and cause).
pub(super) fn read(text: &str) -> Result<Read, String> {
    let doc = DeTable::parse(text).map_err(|e| {
        let at = e.span().map_or(String::new(), |s| position(text, s.start));
        format!("{} {at}", e.message())
    })?;
    let mut r = Reader {
        text,
        out: Read {
            raw: RawConfig::default(),
            placement: Placement::default(),
            problems: Problems::default(),
        },
    };
    for (key, value) in doc.into_inner() {
        r.section(key.get_ref(), key.span(), value);
    }
    Ok(r.out)
}

struct Reader<'t> {
    text: &'t str,
    out: Read,
}

impl Reader<'_> {
    fn section(&mut self, key: &str, key_span: Range<usize>, value: Spanned<DeValue<'_>>) {
        match key {
            "version" => self.out.raw.version = self.one(key, value),
            "admin" => self.out.raw.admin = self.one(key, value),
            "access_log" => self.out.raw.access_log = self.one(key, value),
            "observability" => {
                self.out.raw.observability = self.one(key, value).unwrap_or_default()
            }
            "auth" => {
                self.out.raw.auth = self.one(key, value);
                self.out.placement.auth_unread = self.out.raw.auth.is_none();
            }
            "rate_limit" => self.out.raw.rate_limit = self.one(key, value),
            "discovery" => self.out.raw.discovery = self.one(key, value),
            "cache_zones" => self.out.raw.cache_zones = self.one(key, value).unwrap_or_default(),
            "listeners" => {
                let (v, slots, _) = self.list(key, value);
                (self.out.raw.listeners, self.out.placement.listeners) = (v, slots);
            }
            "upstreams" => {
                let (v, slots, names) = self.list(key, value);
                (self.out.raw.upstreams, self.out.placement.upstreams) = (v, slots);
                self.out.placement.unread_upstreams = names;
            }
            "routes" => {
                let (v, slots, _) = self.list(key, value);
                (self.out.raw.routes, self.out.placement.routes) = (v, slots);
            }
            "rate_limits" => {
                let (v, slots, names) = self.list(key, value);
                (self.out.raw.rate_limits, self.out.placement.rate_limits) = (v, slots);
                self.out.placement.unread_limits = names;
            }
            other => {
                let at = position(self.text, key_span.start);
                self.out.problems.at(
                    other,
                    format!(
                        "unknown section, expected one of {} {at}",
                        SECTIONS.join(", ")
                    ),
                );
            }
        }
    }

    /// One table or value; `None` (and a problem) when it does not deserialize.
    fn one<T: DeserializeOwned>(&mut self, path: &str, value: Spanned<DeValue<'_>>) -> Option<T> {
        self.entry(path.to_string(), value)
    }

    /// A list section entry by entry: the entries that deserialized, their indices in the file,
    /// and the `name` of each entry that did not (still a name other sections may refer to).
    fn list<T: DeserializeOwned>(
        &mut self,
        key: &str,
        value: Spanned<DeValue<'_>>,
    ) -> (Vec<T>, Slots, Vec<String>) {
        let (mut good, mut slots, mut unread) = (Vec::new(), Slots::default(), Vec::new());
        let span = value.span();
        let DeValue::Array(items) = value.into_inner() else {
            slots.not_a_list = true;
            let at = position(self.text, span.start);
            self.out
                .problems
                .at(key, format!("expected an array of tables {at}"));
            return (good, slots, unread);
        };
        for (i, item) in items.into_iter().enumerate() {
            slots.in_file += 1;
            let name = name_of(&item);
            match self.entry(format!("{key}[{i}]"), item) {
                Some(t) => {
                    good.push(t);
                    slots.index.push(i);
                }
                None => unread.extend(name),
            }
        }
        (good, slots, unread)
    }

    fn entry<T: DeserializeOwned>(
        &mut self,
        path: String,
        value: Spanned<DeValue<'_>>,
    ) -> Option<T> {
        let kept = value.clone();
        match T::deserialize(ValueDeserializer::from(value)) {
            Ok(t) => Some(t),
            Err(e) => {
                let span = e.span().unwrap_or_else(|| kept.span());
                let mut at = path;
                if let Some(inner) = field_at(&kept, &span) {
                    at.push_str(&inner);
                }
                let pos = position(self.text, span.start);
                self.out.problems.at(at, format!("{} {pos}", e.message()));
                None
            }
        }
    }
}

/// The `name` (or route `id`) of an entry, read without deserializing it.
fn name_of(item: &Spanned<DeValue<'_>>) -> Option<String> {
    let DeValue::Table(t) = item.get_ref() else {
        return None;
    };
    t.iter()
        .find_map(|(k, v)| match (k.get_ref().as_ref(), v.get_ref()) {
            ("name", DeValue::String(s)) => Some(s.to_string()),
            _ => None,
        })
}

/// The path below `value` (`.retry.attempts`, `.endpoints[1]`) of the innermost key or value whose
/// span holds `span`; `None` when it is `value` itself.
fn field_at(value: &Spanned<DeValue<'_>>, span: &Range<usize>) -> Option<String> {
    let holds = |outer: Range<usize>| {
        outer.start <= span.start && span.end <= outer.end.max(outer.start + 1)
    };
    match value.get_ref() {
        DeValue::Table(t) => t.iter().find_map(|(k, v)| {
            let here = format!(".{}", k.get_ref());
            match field_at(v, span) {
                Some(inner) => Some(format!("{here}{inner}")),
                None if holds(k.span()) || holds(v.span()) => Some(here),
                None => None,
            }
        }),
        DeValue::Array(a) => a.iter().enumerate().find_map(|(j, v)| {
            let here = format!("[{j}]");
            match field_at(v, span) {
                Some(inner) => Some(format!("{here}{inner}")),
                None if holds(v.span()) => Some(here),
                None => None,
            }
        }),
        _ => None,
    }
}

/// `(line L, column C)` of byte `offset` in `text`, both counted from 1.
fn position(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("(line {line}, column {column})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_syntax_error_is_one_problem_with_its_line_and_column() {
        let e = read("[[listeners]]\naddress = \"127.0.0.1:0\"\nbad = [\n")
            .err()
            .expect("syntax error");
        assert!(
            e.contains("(line 4, column 1)") || e.contains("line 3"),
            "{e}"
        );
    }

    #[test]
    fn each_entry_is_read_on_its_own_and_names_its_field() {
        let text =
            "[[routes]]\nid = \"a\"\npath = { prefix = \"/a\" }\nupstream = \"u\"\ntimeout = 5\n\
                    [[routes]]\nid = \"b\"\npath = { prefix = \"/b\" }\nupstream = \"u\"\n\
                    [routes.retry]\nattempts = \"x\"\n\
                    [[routes]]\nid = \"c\"\npath = { prefix = \"/c\" }\nupstream = \"u\"\n\
                    [[upstreams]]\nname = \"u\"\nendpoints = [\"127.0.0.1:1\"]\nwieghts = [1]\n";
        let r = read(text).expect("syntax ok");
        let all = r.problems.into_vec().join("\n");
        assert!(all.contains("routes[0].timeout: invalid type"), "{all}");
        assert!(all.contains("(line 5, column 11)"), "{all}");
        assert!(
            all.contains("routes[1].retry.attempts: invalid type"),
            "{all}"
        );
        assert!(all.contains("upstreams[0].wieghts: unknown field"), "{all}");
        assert_eq!(r.raw.routes.len(), 1);
        assert_eq!(r.placement.routes.of(0), 2);
        assert_eq!(r.placement.unread_upstreams, vec!["u".to_string()]);
    }

    #[test]
    fn an_unknown_section_and_a_list_that_is_not_one_are_problems() {
        let r = read("listeners = \"x\"\n[lsteners]\na = 1\n").expect("syntax ok");
        let all = r.problems.into_vec().join("\n");
        assert!(
            all.contains("listeners: expected an array of tables"),
            "{all}"
        );
        assert!(all.contains("lsteners: unknown section"), "{all}");
        assert!(r.placement.listeners.not_a_list);
        let mut semantic = Problems::default();
        r.raw.check(&r.placement, &mut semantic);
        assert!(semantic.is_empty(), "{semantic:?}");
    }
}
