//! The module structure that ARCHITECTURE.md promises, checked on the
//! source itself: imports only point down.
//!
//! - No module (file) of the host or the engine imports another that,
//!   directly or through others, imports it back. A directory's `mod.rs`
//!   counts as a module of its own, so a child that imports its parent's
//!   items while the parent uses the child is a cycle; and at every level a
//!   directory counts as one node, so two module folders that import each
//!   other are a cycle even when no two files do.
//! - The picture in ARCHITECTURE.md is the order: every top-level module of
//!   the host is on exactly one of its rows, and each imports only modules
//!   on rows below its own.
//! - Nothing in the host outside `config/` imports `crate::config`: each
//!   module owns its validated settings, and `config/` only parses, checks
//!   and assembles them.
//!
//! An import is a `use` of a `crate::`, `super::` or `self::` path, a path
//! written inline in code, or a path through a child module's name; a
//! module's declaration of its children (`mod x;`) is not one. Comments and
//! string literals are skipped; inside an inline `mod tests`, `super` is the
//! file's own module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

struct Crate {
    /// Module path → its source, comments and literals blanked.
    sources: BTreeMap<Module, String>,
    /// Module path → the modules it imports.
    imports: BTreeMap<Module, BTreeSet<Module>>,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("readable source folder").flatten().collect();
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module a file defines, as a path from the crate root.
fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(src).expect("under src").with_extension("");
    let mut module: Module = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    if module.last().is_some_and(|m| m == "mod") {
        module.pop();
    }
    if module.len() == 1 && (module[0] == "lib" || module[0] == "main") {
        module.clear();
    }
    module
}

/// The source with comments, strings and char literals replaced by spaces.
fn blank_non_code(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && !b[..i].last().is_some_and(|p| p.is_alphanumeric() || *p == '_')
        {
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            i = j;
            out.push_str("\"\"");
        } else if c == '"' {
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\''
            && (b.get(i + 2) == Some(&'\'') || (next == Some('\\') && b[i + 2..].iter().take(10).any(|&x| x == '\'')))
        {
            // A char literal (a lifetime has no closing quote).
            i += 1;
            if b.get(i) == Some(&'\\') {
                i += 1;
            }
            i += 1;
            while i < b.len() && b[i] != '\'' {
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Expands a `use` tree (`a::{b, c::{d}}`) into its paths.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        // `path as name`: the path.
        let path = tree.split_whitespace().next().unwrap_or("");
        return vec![path.to_owned()];
    };
    let prefix: String = tree[..open].chars().filter(|c| !c.is_whitespace()).collect();
    let close = tree.rfind('}').unwrap_or(tree.len());
    let body = &tree[open + 1..close];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in body.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&body[start..]);
    parts.into_iter().filter(|p| !p.trim().is_empty()).flat_map(expand).map(|p| format!("{prefix}{p}")).collect()
}

/// Every `crate::`/`super::`/`self::` path in `code` with its offset: in
/// `use` trees and written inline.
fn paths_in(code: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(found) = code[at..].find("use ") {
        let start = at + found;
        at = start + 4;
        if code[..start].chars().last().is_some_and(is_ident) {
            continue;
        }
        let Some(end) = code[start..].find(';') else { break };
        let tree = code[start + 4..start + end].trim();
        if ["crate", "super", "self"].iter().any(|p| tree.starts_with(p)) {
            out.extend(expand(tree).into_iter().map(|p| (start, p)));
        }
    }
    for prefix in ["crate::", "super::"] {
        let mut at = 0;
        while let Some(found) = code[at..].find(prefix) {
            let start = at + found;
            at = start + prefix.len();
            if code[..start].chars().last().is_some_and(|c| is_ident(c) || c == ':') {
                continue;
            }
            let len = code[start..].find(|c: char| !(is_ident(c) || c == ':')).unwrap_or(code.len() - start);
            out.push((start, code[start..start + len].trim_end_matches(':').to_owned()));
        }
    }
    out
}

/// The module a path names: the longest prefix that is a module.
fn resolve(modules: &BTreeSet<Module>, me: &Module, path: &str, in_tests: bool) -> Option<Module> {
    let mut segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let mut base: Module = match *segs.first()? {
        "crate" => {
            segs.remove(0);
            Vec::new()
        }
        "self" => {
            segs.remove(0);
            me.clone()
        }
        "super" => {
            let mut base = me.clone();
            // Inside `mod tests`, the first `super` is the file itself.
            let mut skip = in_tests;
            while segs.first() == Some(&"super") {
                segs.remove(0);
                if skip {
                    skip = false;
                } else {
                    base.pop();
                }
            }
            base
        }
        _ => return None,
    };
    base.extend(segs.iter().map(|s| (*s).to_owned()));
    (0..=base.len()).rev().map(|k| base[..k].to_vec()).find(|m| modules.contains(m))
}

fn load(src: &Path) -> Crate {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let sources: BTreeMap<Module, String> = files
        .iter()
        .map(|f| (module_of(src, f), blank_non_code(&std::fs::read_to_string(f).expect("readable source"))))
        .collect();
    let modules: BTreeSet<Module> = sources.keys().cloned().collect();
    let mut imports = BTreeMap::new();
    for (me, code) in &sources {
        let tests_at = code.find("mod tests {").unwrap_or(code.len());
        let mut to = BTreeSet::new();
        for (at, path) in paths_in(code) {
            if let Some(target) = resolve(&modules, me, &path, at >= tests_at) {
                to.insert(target);
            }
        }
        // Paths through a child's name (`child::item`), not its declaration.
        for child in modules.iter().filter(|m| m.len() == me.len() + 1 && m.starts_with(me)) {
            let name = format!("{}::", child[me.len()]);
            let mut at = 0;
            while let Some(found) = code[at..].find(&name) {
                let start = at + found;
                at = start + name.len();
                if !code[..start].chars().last().is_some_and(|c| is_ident(c) || c == ':') {
                    to.insert(child.clone());
                }
            }
        }
        to.remove(me);
        imports.insert(me.clone(), to);
    }
    Crate { sources, imports }
}

/// Strongly connected components of more than one node (Tarjan).
fn cycles(nodes: &BTreeSet<Module>, edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct State<'a> {
        edges: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<Module, usize>,
        low: BTreeMap<Module, usize>,
        stack: Vec<Module>,
        found: Vec<Vec<Module>>,
    }
    fn visit(s: &mut State<'_>, v: &Module) {
        let i = s.index.len();
        s.index.insert(v.clone(), i);
        s.low.insert(v.clone(), i);
        s.stack.push(v.clone());
        for w in s.edges.get(v).cloned().unwrap_or_default() {
            if !s.index.contains_key(&w) {
                visit(s, &w);
                let lw = s.low[&w];
                s.low.entry(v.clone()).and_modify(|l| *l = (*l).min(lw));
            } else if s.stack.contains(&w) {
                let iw = s.index[&w];
                s.low.entry(v.clone()).and_modify(|l| *l = (*l).min(iw));
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                let done = &w == v;
                component.push(w);
                if done {
                    break;
                }
            }
            if component.len() > 1 {
                s.found.push(component);
            }
        }
    }
    let mut state = State { edges, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), found: Vec::new() };
    for v in nodes {
        if !state.index.contains_key(v) {
            visit(&mut state, v);
        }
    }
    state.found
}

/// Import cycles at every level: for each module folder, its own file and
/// each child (a child folder standing for everything under it).
fn import_cycles(krate: &Crate) -> Vec<String> {
    let parents: BTreeSet<Module> =
        krate.sources.keys().filter(|m| !m.is_empty()).map(|m| m[..m.len() - 1].to_vec()).collect();
    let mut found = Vec::new();
    for parent in &parents {
        let depth = parent.len() + 1;
        // The node that stands for `m` at this level.
        let node = |m: &Module| -> Option<Module> {
            if !m.starts_with(parent) {
                return None;
            }
            Some(if m.len() > parent.len() { m[..depth].to_vec() } else { parent.clone() })
        };
        let mut nodes = BTreeSet::new();
        let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
        for (from, targets) in &krate.imports {
            let Some(a) = node(from) else { continue };
            nodes.insert(a.clone());
            for to in targets {
                if let Some(b) = node(to)
                    && b != a
                {
                    edges.entry(a.clone()).or_default().insert(b);
                }
            }
        }
        for cycle in cycles(&nodes, &edges) {
            let mut names: Vec<String> =
                cycle.iter().map(|m| if m == parent { "(mod)".to_owned() } else { m.join("/") }).collect();
            names.sort();
            found.push(format!(
                "in {}: {}",
                if parent.is_empty() { "the crate root".to_owned() } else { parent.join("/") },
                names.join(" <-> ")
            ));
        }
    }
    found
}

/// Asserts that the crate under `src` (with at least `modules` modules)
/// has no import cycle.
fn assert_imports_point_down(src: &str, modules: usize) {
    let krate = load(&root().join(src));
    assert!(krate.imports.len() >= modules, "{src}: {} modules found", krate.imports.len());
    let found = import_cycles(&krate);
    assert!(found.is_empty(), "{src}: module import cycles:\n{}", found.join("\n"));
}

#[test]
fn host_modules_import_only_downwards() {
    assert_imports_point_down("host/src", 40);
}

#[test]
fn engine_modules_import_only_downwards() {
    assert_imports_point_down("engine/src", 10);
}

/// The rows of ARCHITECTURE.md's picture of the host: each top-level module
/// (written `name/` or `name.rs`) with its row, top first.
fn picture_rows() -> BTreeMap<String, usize> {
    let doc = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let section = doc.split("## The picture").nth(1).expect("a picture section");
    let block = section.split("```").nth(3).expect("the host's picture is the section's second block");
    let mut rows = BTreeMap::new();
    let mut row = 0;
    for line in block.lines() {
        let names: Vec<&str> = line
            .split_whitespace()
            .filter_map(|w| w.strip_suffix('/').or_else(|| w.strip_suffix(".rs")))
            .filter(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            .filter(|w| *w != "main")
            .collect();
        if names.is_empty() {
            continue;
        }
        for name in names {
            assert!(rows.insert(name.to_owned(), row).is_none(), "`{name}` is on two rows of the picture");
        }
        row += 1;
    }
    rows
}

#[test]
fn the_architecture_picture_is_the_import_order() {
    let krate = load(&root().join("host/src"));
    let rows = picture_rows();
    let top: BTreeSet<String> = krate.sources.keys().filter_map(|m| m.first().cloned()).collect();
    let pictured: BTreeSet<String> = rows.keys().cloned().collect();
    assert_eq!(pictured, top, "the picture names exactly the host's top-level modules");
    let mut upward = Vec::new();
    for (from, targets) in &krate.imports {
        let Some(a) = from.first() else { continue };
        for b in targets.iter().filter_map(|t| t.first()).filter(|b| *b != a) {
            if rows[a] >= rows[b] {
                upward.push(format!("{} imports {b}", from.join("/")));
            }
        }
    }
    upward.sort();
    upward.dedup();
    assert!(upward.is_empty(), "imports that do not point down the picture:\n{}", upward.join("\n"));
}

#[test]
fn only_config_imports_config() {
    let krate = load(&root().join("host/src"));
    let config = vec!["config".to_owned()];
    let offenders: Vec<String> = krate
        .imports
        .iter()
        .filter(|(from, to)| !from.starts_with(&config) && to.iter().any(|m| m.starts_with(&config)))
        .map(|(from, _)| from.join("/"))
        .collect();
    assert!(offenders.is_empty(), "modules outside config/ importing crate::config: {offenders:?}");
}

#[test]
fn the_checker_finds_cycles_it_should() {
    // A parent that uses its child, and a child that uses its parent's item.
    let mut krate = Crate { sources: BTreeMap::new(), imports: BTreeMap::new() };
    let a = vec!["a".to_owned()];
    let ab = vec!["a".to_owned(), "b".to_owned()];
    let c = vec!["c".to_owned()];
    for m in [&a, &ab, &c] {
        krate.sources.insert(m.clone(), String::new());
    }
    let modules: BTreeSet<Module> = krate.sources.keys().cloned().collect();
    let code = blank_non_code(
        "use super::Thing; // use crate::c;\nfn f() { let s = \"crate::c::x\"; let q = '\"'; }\nmod tests { use super::*; }",
    );
    let paths: BTreeSet<Module> = paths_in(&code)
        .into_iter()
        .filter_map(|(at, p)| resolve(&modules, &ab, &p, at >= code.find("mod tests {").unwrap_or(code.len())))
        .collect();
    // `c` only appears in a comment and a string; the tests' `super` is the file.
    assert_eq!(paths, BTreeSet::from([a.clone(), ab.clone()]));
    krate.imports.insert(ab.clone(), BTreeSet::from([a.clone()]));
    krate.imports.insert(a.clone(), BTreeSet::from([ab.clone()]));
    assert_eq!(import_cycles(&krate).len(), 1);
    // Folders that import each other through different files.
    krate.imports.insert(a.clone(), BTreeSet::from([c.clone()]));
    krate.imports.insert(c.clone(), BTreeSet::from([ab.clone()]));
    krate.imports.insert(ab.clone(), BTreeSet::new());
    assert_eq!(import_cycles(&krate), vec!["in the crate root: a <-> c".to_owned()]);
    assert_eq!(
        expand("crate::{a::B, c::{d, e as f, aliases}}"),
        ["crate::a::B", "crate::c::d", "crate::c::e", "crate::c::aliases"]
    );
}
