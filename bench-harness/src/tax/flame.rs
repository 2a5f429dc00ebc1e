//! Flame graphs, ours: `perf script` output folded into one line per distinct stack
//! (`root;...;leaf count`), the folded stacks merged into a tree, and the tree drawn as SVG (root
//! at the bottom, each frame as wide as its share of the samples, its name and share in a
//! tooltip). Kernel frames are tagged `[k]` so the report can split the time between the kernel
//! and user space; [`self_time`] lists the frames where the samples landed.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::panels::esc;

/// Suffix of a kernel frame's name in folded stacks.
pub const KERNEL_TAG: &str = " [k]";

/// Folds `perf script` text (with call graphs) into `(stack, samples)` pairs, stacks written
/// root first and `;`-separated, the command name as the root frame, sorted by stack.
pub fn fold_perf_script(text: &str) -> Vec<(String, u64)> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut comm: Option<String> = None;
    let mut frames: Vec<String> = Vec::new();
    let mut flush = |comm: &mut Option<String>, frames: &mut Vec<String>| {
        if let Some(c) = comm.take() {
            let mut stack = vec![c];
            stack.extend(frames.drain(..).rev());
            *counts.entry(stack.join(";")).or_default() += 1;
        }
        frames.clear();
    };
    for line in text.lines() {
        if line.trim().is_empty() {
            flush(&mut comm, &mut frames);
        } else if line.starts_with(|c: char| c.is_whitespace()) {
            if comm.is_some() {
                frames.push(frame_name(line.trim()));
            }
        } else if !line.starts_with('#') {
            flush(&mut comm, &mut frames);
            // `comm pid/tid time: period event:`; the command may hold spaces, the pid never.
            let name = line
                .split_whitespace()
                .take_while(|w| !w.chars().next().is_some_and(|c| c.is_ascii_digit()))
                .collect::<Vec<_>>()
                .join(" ");
            comm = Some(if name.is_empty() {
                "?".into()
            } else {
                name.replace(';', ":")
            });
        }
    }
    flush(&mut comm, &mut frames);
    counts.into_iter().collect()
}

/// `ADDR SYMBOL+0xOFF (DSO)` to `SYMBOL` (offset dropped), tagged when the DSO is the kernel.
fn frame_name(line: &str) -> String {
    let mut rest = line.split_once(' ').map_or("", |(_, r)| r).trim();
    let mut kernel = false;
    if let Some(open) = rest.rfind(" (") {
        let dso = &rest[open + 2..];
        kernel = dso.starts_with("[kernel") || dso.contains("vmlinux");
        rest = &rest[..open];
    }
    let sym = match rest.rfind("+0x") {
        Some(i) => &rest[..i],
        None => rest,
    };
    let sym = if sym.is_empty() || sym == "[unknown]" {
        "[unknown]"
    } else {
        sym
    };
    let sym = sym.replace(';', ":");
    if kernel {
        format!("{sym}{KERNEL_TAG}")
    } else {
        sym
    }
}

/// Parses folded text (`stack count` per line); lines that do not parse are skipped.
pub fn parse_folded(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|l| {
            let (stack, n) = l.trim().rsplit_once(' ')?;
            Some((stack.to_string(), n.parse().ok()?))
        })
        .collect()
}

/// Folded pairs as text.
pub fn folded_text(stacks: &[(String, u64)]) -> String {
    stacks.iter().map(|(s, n)| format!("{s} {n}\n")).collect()
}

/// A frame of the merged tree.
#[derive(Debug, Default)]
pub struct Node {
    /// Samples in this frame and below.
    pub total: u64,
    /// Children by name.
    pub children: BTreeMap<String, Node>,
}

/// Merges folded stacks into one tree (the root is nameless).
pub fn tree(stacks: &[(String, u64)]) -> Node {
    let mut root = Node::default();
    for (stack, n) in stacks {
        root.total += n;
        let mut at = &mut root;
        for f in stack.split(';') {
            at = at.children.entry(f.to_string()).or_default();
            at.total += n;
        }
    }
    root
}

/// Samples whose leaf is each frame, most first, with the total.
pub fn self_time(stacks: &[(String, u64)]) -> (Vec<(String, u64)>, u64) {
    let mut by: BTreeMap<&str, u64> = BTreeMap::new();
    let mut total = 0;
    for (s, n) in stacks {
        *by.entry(s.rsplit(';').next().unwrap_or("")).or_default() += n;
        total += n;
    }
    let mut v: Vec<(String, u64)> = by.into_iter().map(|(k, n)| (k.to_string(), n)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    (v, total)
}

/// Samples whose leaf frame is in the kernel.
pub fn kernel_samples(stacks: &[(String, u64)]) -> u64 {
    stacks
        .iter()
        .filter(|(s, _)| {
            s.rsplit(';')
                .next()
                .is_some_and(|f| f.ends_with(KERNEL_TAG))
        })
        .map(|(_, n)| n)
        .sum()
}

fn depth(n: &Node) -> usize {
    n.children.values().map(|c| 1 + depth(c)).max().unwrap_or(0)
}

/// A colour from the name: warm hues for user frames, blue-green for the kernel's.
fn colour(name: &str) -> String {
    let h = name.bytes().fold(2_166_136_261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16_777_619)
    });
    let v = h % 60;
    if name.ends_with(KERNEL_TAG) {
        format!("hsl({}, 55%, 62%)", 170 + v / 2)
    } else {
        format!("hsl({}, 80%, {}%)", v / 2 + 5, 55 + (h >> 8) % 15)
    }
}

const ROW: f64 = 17.0;
const WIDTH: f64 = 1200.0;

/// The flame graph of `stacks` as SVG.
pub fn svg(title: &str, stacks: &[(String, u64)]) -> String {
    let root = tree(stacks);
    let rows = depth(&root);
    let h = ROW * rows as f64 + 50.0;
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{h}" font-family="monospace" font-size="11">"#
    );
    let _ = writeln!(o, r#"<rect width="{WIDTH}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        o,
        r#"<text x="10" y="20" font-family="sans-serif" font-size="14">{} ({} samples)</text>"#,
        esc(title),
        root.total
    );
    if root.total > 0 {
        let scale = (WIDTH - 20.0) / root.total as f64;
        draw(&mut o, &root, 10.0, h - 10.0 - ROW, scale, root.total);
    }
    o.push_str("</svg>\n");
    o
}

fn draw(o: &mut String, node: &Node, x0: f64, y: f64, scale: f64, all: u64) {
    let mut x = x0;
    for (name, c) in &node.children {
        let w = c.total as f64 * scale;
        if w >= 0.3 {
            let pct = 100.0 * c.total as f64 / all as f64;
            let _ = write!(
                o,
                r#"<g><title>{} ({} samples, {pct:.2}%)</title><rect x="{x:.2}" y="{y:.1}" width="{w:.2}" height="{:.1}" fill="{}"/>"#,
                esc(name),
                c.total,
                ROW - 1.0,
                colour(name)
            );
            let chars = ((w - 4.0) / 6.6) as usize;
            if chars >= 3 {
                let label: String = if name.chars().count() > chars {
                    name.chars().take(chars - 2).collect::<String>() + ".."
                } else {
                    name.clone()
                };
                let _ = write!(
                    o,
                    r#"<text x="{:.2}" y="{:.1}">{}</text>"#,
                    x + 2.0,
                    y + ROW - 5.0,
                    esc(&label)
                );
            }
            o.push_str("</g>\n");
            draw(o, c, x, y - ROW, scale, all);
        }
        x += w;
    }
}
