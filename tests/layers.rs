//! The library's modules form layers (`mixbt/src/lib.rs`: the `pub mod` declarations in order,
//! bottom to top, a blank line between layers): a module may import only from its own layer or
//! the layers below. This test reads every source file of the library, collects the top-level
//! modules each one names through `crate::…` paths (including `use crate::{a::…, b::…}` groups
//! and `$crate::`), and fails on any reference to a module of a higher layer. Within a layer,
//! and among the submodules of one module, imports must not go round in a circle either
//! (`ops::conv` → `ops::winograd` → `ops::conv`): what both sides need goes below both.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Top-level module → layer index, from the `pub mod` lines of `lib.rs`.
fn layers(lib: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    let mut layer = 0;
    let mut in_group = false;
    for line in lib.lines() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix("pub mod ").and_then(|r| r.strip_suffix(';')) {
            out.insert(name.to_string(), layer);
            in_group = true;
        } else if t.is_empty() && in_group {
            layer += 1;
            in_group = false;
        }
    }
    out
}

/// Source text without `//` comments (doc links may name any module).
fn strip_comments(s: &str) -> String {
    s.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// The first path segment after each `crate::` (each item of a `crate::{…}` group too), in
/// order, repeats next to each other dropped.
fn crate_refs(text: &str) -> Vec<String> {
    let mut out: Vec<String> = paths(text).into_iter().filter(|p| p[0] == "crate" && p.len() > 1 && p[1] != "self").map(|p| p[1].clone()).collect();
    out.dedup();
    out
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every `(file, module, imported module)` that imports upward.
fn violations(root: &Path, layer: &BTreeMap<String, usize>) -> Vec<String> {
    let mut files = vec![];
    rs_files(root, &mut files);
    let mut bad = vec![];
    for f in files {
        let rel = f.strip_prefix(root).unwrap();
        let first = rel.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
        if first == "lib" || first == "bin" {
            continue; // the crate root and the binary sit above every layer
        }
        let Some(&own) = layer.get(&first) else {
            bad.push(format!("{}: module `{first}` is not declared in lib.rs", rel.display()));
            continue;
        };
        let text = strip_comments(&std::fs::read_to_string(&f).unwrap());
        for m in crate_refs(&text) {
            match layer.get(&m) {
                Some(&l) if l > own => bad.push(format!("{}: `{first}` (layer {own}) imports `{m}` (layer {l})", rel.display())),
                _ => {}
            }
        }
    }
    bad.sort();
    bad.dedup();
    bad
}

#[test]
fn no_module_imports_a_higher_layer() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let layer = layers(&lib);
    assert!(layer.len() >= 14, "lib.rs declares {layer:?}");
    assert!(layer["error"] == layer["rng"] && layer["io"] < layer["hub"] && layer["data"] < layer["ckpt"] && layer["train"] < layer["report"]);
    let bad = violations(&src(), &layer);
    assert!(bad.is_empty(), "imports from a higher layer:\n{}", bad.join("\n"));
}

#[test]
fn the_checker_finds_upward_imports() {
    // The parser on the forms the library uses, then a tree with a planted violation.
    assert_eq!(crate_refs("use crate::{data::{self, Split}, eval::knn, Error};"), ["data", "eval", "Error"]);
    assert_eq!(crate_refs("x = $crate::io::atomic_write(p); crate::ops::par_new(1)"), ["io", "ops"]);
    assert_eq!(crate_refs(&strip_comments("//! see crate::train\nuse crate::io;")), ["io"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("lib.rs"), "pub mod io;\n\npub mod data;\n\npub mod train;\n").unwrap();
    std::fs::write(dir.path().join("io.rs"), "use crate::{Error, Result};\n").unwrap();
    std::fs::write(dir.path().join("data/mod.rs"), "use crate::io::atomic_write;\nuse crate::train::Recipe;\n").unwrap();
    std::fs::write(dir.path().join("train.rs"), "use crate::{data, io};\n").unwrap();
    let layer = layers(&std::fs::read_to_string(dir.path().join("lib.rs")).unwrap());
    let bad = violations(dir.path(), &layer);
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(bad[0].contains("`data` (layer 1) imports `train` (layer 2)"), "{bad:?}");
}

/// A source file's module path: `ops/conv.rs` → `[ops, conv]`, `ops/mod.rs` → `[ops]`.
fn module_of(rel: &Path) -> Vec<String> {
    let mut segs: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().trim_end_matches(".rs").to_string()).collect();
    if segs.last().is_some_and(|l| l == "mod" || l == "lib") {
        segs.pop();
    }
    segs
}

/// Every path that starts at `crate::`, `super::` or `self::`, `{…}` groups expanded:
/// `use super::{a::X, b};` → `[super, a, X]`, `[super, b]`.
fn paths(text: &str) -> Vec<Vec<String>> {
    fn is_ident(c: char) -> bool {
        c.is_alphanumeric() || c == '_'
    }
    fn expand(rest: &str, mut segs: Vec<String>, out: &mut Vec<Vec<String>>) {
        let mut r = rest;
        loop {
            let id: String = r.chars().take_while(|c| is_ident(*c)).collect();
            if id.is_empty() {
                break;
            }
            r = &r[id.len()..];
            segs.push(id);
            let Some(after) = r.strip_prefix("::") else { break };
            if let Some(group) = after.strip_prefix('{') {
                let (mut depth, mut start) = (0usize, 0usize);
                for (j, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => {
                            expand(group[start..j].trim(), segs.clone(), out);
                            return;
                        }
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            expand(group[start..j].trim(), segs.clone(), out);
                            start = j + 1;
                        }
                        _ => {}
                    }
                }
                return;
            }
            r = after;
        }
        if !segs.is_empty() {
            out.push(segs);
        }
    }
    let mut out = vec![];
    for start in ["crate::", "super::", "self::"] {
        for (i, _) in text.match_indices(start) {
            if text[..i].chars().next_back().is_some_and(|c| is_ident(c) || c == ':') {
                continue; // inside a longer path (`super::super::…`) or a longer name
            }
            expand(&text[i..], vec![], &mut out);
        }
    }
    out
}

/// Import edges between sibling modules (children of one module, or top-level modules): an
/// import from `a::x::y` of `a::z::w` is the edge `a::x → a::z`. Imports between a module and
/// its own descendants or ancestors are not edges (a parent declares its children).
fn sibling_edges(root: &Path) -> BTreeMap<(String, String), String> {
    let mut files = vec![];
    rs_files(root, &mut files);
    let rels: Vec<PathBuf> = files.iter().map(|f| f.strip_prefix(root).unwrap().to_path_buf()).filter(|r| !r.starts_with("bin")).collect();
    let modules: Vec<Vec<String>> = rels.iter().map(|r| module_of(r)).collect();
    let mut edges = BTreeMap::new();
    for (rel, me) in rels.iter().zip(&modules) {
        let text = strip_comments(&std::fs::read_to_string(root.join(rel)).unwrap());
        for p in paths(&text) {
            let mut base: Vec<String> = match p[0].as_str() {
                "crate" => vec![],
                _ => me.clone(),
            };
            let mut rest = &p[1..];
            if p[0] == "super" {
                base.pop();
                while rest.first().is_some_and(|s| s == "super") {
                    base.pop();
                    rest = &rest[1..];
                }
            }
            base.extend(rest.iter().cloned());
            // The longest prefix that is a module of the crate.
            let Some(target) = (0..=base.len()).rev().map(|n| &base[..n]).find(|pre| modules.iter().any(|m| m == pre)) else { continue };
            let common = me.iter().zip(target).take_while(|(a, b)| a == b).count();
            if common == me.len() || common == target.len() {
                continue;
            }
            let from = me[..=common].join("::");
            let to = target[..=common].join("::");
            edges.entry((from, to)).or_insert_with(|| rel.display().to_string());
        }
    }
    edges
}

/// The circles among sibling modules: each as `a → b → … → a`, with the file of each first edge.
fn circles(edges: &BTreeMap<(String, String), String>) -> Vec<String> {
    let next = |a: &str| -> Vec<String> { edges.keys().filter(|(f, _)| f == a).map(|(_, t)| t.clone()).collect() };
    let mut out = vec![];
    for ((from, to), file) in edges {
        // The shortest way back from `to` to `from`, breadth first.
        let mut prev: BTreeMap<String, String> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([to.clone()]);
        while let Some(n) = queue.pop_front() {
            if &n == from {
                let mut back = vec![n.clone()];
                let mut cur = n.clone();
                while &cur != to {
                    cur = prev[&cur].clone();
                    back.push(cur.clone());
                }
                back.reverse(); // to … from
                let mut cycle = vec![from.clone()];
                cycle.extend(back);
                out.push(format!("{} (first edge in {file})", cycle.join(" → ")));
                break;
            }
            for m in next(&n) {
                if !prev.contains_key(&m) && m != *to {
                    prev.insert(m.clone(), n.clone());
                    queue.push_back(m);
                }
            }
        }
    }
    out
}

#[test]
fn no_modules_import_each_other_in_a_circle() {
    let edges = sibling_edges(&src());
    assert!(edges.keys().any(|(f, t)| f == "ops::conv" && t == "ops::geom"), "the parser sees the library's imports: {edges:?}");
    let found = circles(&edges);
    assert!(found.is_empty(), "modules that import each other:\n{}", found.join("\n"));
}

#[test]
fn the_checker_finds_circles() {
    assert_eq!(paths("use super::{conv::ConvGeom, gemm::{A, B}};"), [vec!["super", "conv", "ConvGeom"], vec!["super", "gemm", "A"], vec!["super", "gemm", "B"]]);
    assert_eq!(paths("x = super::super::io::f(); crate::ops::g()"), [vec!["crate", "ops", "g"], vec!["super", "super", "io", "f"]]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("ops")).unwrap();
    std::fs::write(dir.path().join("lib.rs"), "pub mod ops;\n").unwrap();
    std::fs::write(dir.path().join("ops/mod.rs"), "pub mod a;\npub mod b;\npub mod c;\nfn f() { a::x(); }\n").unwrap();
    std::fs::write(dir.path().join("ops/a.rs"), "use super::b::X;\nfn g() { super::f() }\n").unwrap();
    std::fs::write(dir.path().join("ops/b.rs"), "use crate::ops::{c::Y};\n").unwrap();
    std::fs::write(dir.path().join("ops/c.rs"), "fn h() { super::a::g() }\n").unwrap();
    let found = circles(&sibling_edges(dir.path()));
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(found[0].starts_with("ops::a → ops::b → ops::c → ops::a"), "{found:?}");
    // Broken, the circle is gone; the parent's imports of its children are no edges.
    std::fs::write(dir.path().join("ops/c.rs"), "fn h() { super::f() }\n").unwrap();
    assert!(circles(&sibling_edges(dir.path())).is_empty());
}
