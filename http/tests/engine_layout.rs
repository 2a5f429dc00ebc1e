//! The engine's files import each other in one direction: no import cycle between them.
//!
//! The folders of `http/src/engine/` follow a request (connection loops, pipeline phases,
//! forwarding), and each layer may use the ones below it, never the ones above. A cycle (two
//! files each reaching into the other, directly or around a ring) is how two long functions grow
//! back together, so this test reads every engine file's paths (`crate::engine::...`,
//! `super::...`, a parent's `child::...`), resolves them to files, and fails on any cycle,
//! naming it. A parent `mod.rs` that calls into its children counts as importing them, so the
//! types its children share live in a file of their own, not in the parent.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module's path below `engine` (`[]` is `engine/mod.rs`).
type ModPath = Vec<String>;

fn engine_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/engine")
}

fn collect(dir: &Path, base: &ModPath, out: &mut BTreeMap<ModPath, String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("engine dir is readable")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for p in entries {
        let name = p
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("utf-8 file name")
            .to_string();
        if p.is_dir() {
            let mut m = base.clone();
            m.push(name);
            collect(&p, &m, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let mut m = base.clone();
            if name != "mod" {
                m.push(name);
            }
            let text = std::fs::read_to_string(&p).expect("engine file is readable");
            out.insert(m, production_part(&text));
        }
    }
}

/// The text before a `#[cfg(test)]` module (tests may reach anywhere), without comments.
fn production_part(text: &str) -> String {
    let code = text.split("#[cfg(test)]").next().unwrap_or("");
    code.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path the code names, with `use` groups (`a::{b, c::d}`) expanded.
fn paths_in(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_alphabetic() || bytes[i] == '_' {
            let start = i;
            // A path: identifiers joined by `::`, possibly ending in a `{...}` group.
            let mut j = i;
            while j < bytes.len()
                && (bytes[j].is_alphanumeric() || bytes[j] == '_' || bytes[j] == ':')
            {
                j += 1;
            }
            let head: String = bytes[start..j].iter().collect();
            if head.contains("::") && j < bytes.len() && bytes[j] == '{' && head.ends_with("::") {
                let close = matching_brace(&bytes, j);
                let inner: String = bytes[j + 1..close].iter().collect();
                for part in split_top(&inner) {
                    let full = format!("{head}{}", part.trim());
                    out.extend(paths_in(&full));
                }
                i = close + 1;
                continue;
            }
            if head.contains("::") {
                out.push(
                    head.trim_end_matches(':')
                        .split("::")
                        .map(str::to_string)
                        .collect(),
                );
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

fn matching_brace(b: &[char], open: usize) -> usize {
    let mut depth = 0;
    for (k, &ch) in b.iter().enumerate().skip(open) {
        if ch == '{' {
            depth += 1;
        } else if ch == '}' {
            depth -= 1;
            if depth == 0 {
                return k;
            }
        }
    }
    b.len() - 1
}

fn split_top(s: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for ch in s.chars() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    parts.push(cur);
    parts.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

/// The engine file a path from module `from` lands in, if any.
fn resolve(
    from: &ModPath,
    is_mod_rs: bool,
    path: &[String],
    files: &BTreeMap<ModPath, String>,
) -> Option<ModPath> {
    let rest: Vec<String> = if path.len() > 2 && path[0] == "crate" && path[1] == "engine" {
        path[2..].to_vec()
    } else if path[0] == "super" {
        // `super` of a file `a/b.rs` (module a::b) is `a`; of `a/mod.rs` (module a) it is the root.
        let mut base: ModPath = from.clone();
        let mut p = path;
        while p.first().is_some_and(|s| s == "super") {
            base.pop();
            p = &p[1..];
        }
        base.extend(p.iter().cloned());
        base
    } else if is_mod_rs && files.contains_key(&[from.clone(), vec![path[0].clone()]].concat()) {
        // A child module named from its parent's `mod.rs`.
        [from.clone(), path.to_vec()].concat()
    } else {
        return None;
    };
    (0..=rest.len())
        .rev()
        .map(|n| rest[..n].to_vec())
        .find(|m| files.contains_key(m))
}

fn graph() -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    let mut files = BTreeMap::new();
    collect(&engine_dir(), &Vec::new(), &mut files);
    let mut g = BTreeMap::new();
    for (m, code) in &files {
        let is_mod_rs = m.is_empty() || engine_dir().join(m.join("/")).join("mod.rs").exists();
        let mut edges = BTreeSet::new();
        for p in paths_in(code) {
            if let Some(to) = resolve(m, is_mod_rs, &p, &files) {
                if to != *m {
                    edges.insert(to);
                }
            }
        }
        g.insert(m.clone(), edges);
    }
    g
}

fn find_cycle(g: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Option<Vec<ModPath>> {
    fn visit(
        n: &ModPath,
        g: &BTreeMap<ModPath, BTreeSet<ModPath>>,
        state: &mut BTreeMap<ModPath, u8>,
        stack: &mut Vec<ModPath>,
    ) -> Option<Vec<ModPath>> {
        state.insert(n.clone(), 1);
        stack.push(n.clone());
        for to in g.get(n).into_iter().flatten() {
            match state.get(to).copied().unwrap_or(0) {
                1 => {
                    let from = stack.iter().position(|x| x == to).unwrap_or(0);
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(to.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(to, g, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if state.get(n).copied().unwrap_or(0) == 0 {
            let mut stack = Vec::new();
            if let Some(c) = visit(n, g, &mut state, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

fn show(m: &ModPath) -> String {
    if m.is_empty() {
        "engine".into()
    } else {
        format!("engine::{}", m.join("::"))
    }
}

#[test]
fn engine_files_import_each_other_without_cycles() {
    let g = graph();
    assert!(
        g.len() > 20,
        "the engine's files were not found: {}",
        g.len()
    );
    // The reader sees real edges (else an empty graph would pass).
    let serve = vec!["h1".to_string(), "serve".to_string()];
    let plan = vec!["request".to_string()];
    assert!(
        g.get(&serve).is_some_and(|e| e.contains(&plan)),
        "h1::serve should import the request pipeline: {:?}",
        g.get(&serve)
    );
    if let Some(c) = find_cycle(&g) {
        let names: Vec<String> = c.iter().map(show).collect();
        panic!("import cycle between engine files: {}", names.join(" -> "));
    }
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let a = vec!["a".to_string()];
    let b = vec!["b".to_string()];
    let mut g = BTreeMap::new();
    g.insert(a.clone(), BTreeSet::from([b.clone()]));
    g.insert(b.clone(), BTreeSet::from([a.clone()]));
    assert!(find_cycle(&g).is_some());
    g.insert(b, BTreeSet::new());
    assert!(find_cycle(&g).is_none());
}

#[test]
fn use_groups_are_expanded() {
    let p = paths_in("use crate::engine::request::{answer::refuse, state::{Conn, Plan}};");
    assert!(p.contains(&vec![
        "crate".into(),
        "engine".into(),
        "request".into(),
        "answer".into(),
        "refuse".into()
    ]));
    assert!(p.contains(&vec![
        "crate".into(),
        "engine".into(),
        "request".into(),
        "state".into(),
        "Plan".into()
    ]));
}
