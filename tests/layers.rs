//! The library's modules form layers (`mixbt/src/lib.rs`: the `pub mod` declarations in order,
//! bottom to top, a blank line between layers): a module may import only from its own layer or
//! the layers below. This test reads every source file of the library, collects the top-level
//! modules each one names through `crate::…` paths (including `use crate::{a::…, b::…}` groups
//! and `$crate::`), and fails on any reference to a module of a higher layer.

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

/// The first path segment after each `crate::` (each item of a `crate::{…}` group too).
fn crate_refs(text: &str) -> Vec<String> {
    let mut out = vec![];
    let ident = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Split the group at depth 0 and take each item's first segment.
            let (mut depth, mut start) = (0usize, 0usize);
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        out.push(ident(group[start..j].trim()));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.push(ident(group[start..j].trim()));
                        start = j + 1;
                    }
                    _ => {}
                }
            }
        } else {
            out.push(ident(rest));
        }
    }
    out.retain(|s| !s.is_empty() && s != "self");
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
