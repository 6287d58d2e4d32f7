//! The import graph of srcsel's files, for `cargo xtask check`: every
//! `crate::` and `super::` path (in `use` trees too) resolved to the file
//! that defines it. Arrows must point down: a file never imports one that
//! (through others) imports it. Test modules are left out.
use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::Path,
};

use anyhow::{Context as _, bail};

type Module = Vec<String>;

/// Fails, naming them, when files of `src` import each other in a circle.
pub fn check(src: &Path) -> anyhow::Result<()> {
    let files = modules(src)?;
    let known: BTreeSet<&Module> = files.keys().collect();
    let mut graph: BTreeMap<&Module, BTreeSet<Module>> = BTreeMap::new();
    for (module, text) in &files {
        let parent: Module = module[..module.len().saturating_sub(1)].to_vec();
        for path in paths(&code_of(text), &parent) {
            let target = (0..=path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|m| known.contains(m))
                .unwrap_or_default();
            if !target.is_empty() && target != *module {
                graph.entry(module).or_default().insert(target);
            }
        }
    }
    let circles = circles(&graph);
    if circles.is_empty() {
        println!(
            "xtask: no import circle among {} files of {}",
            files.len(),
            src.display()
        );
        return Ok(());
    }
    for c in &circles {
        eprintln!("import circle: {}", c.join(" → "));
    }
    bail!(
        "{} import circle(s) in {}: make one side's arrow point down",
        circles.len(),
        src.display()
    )
}

/// Every non-test file of `src` by module path (`kernel/bpf/mod.rs` is
/// `kernel::bpf`), with its text.
fn modules(src: &Path) -> anyhow::Result<BTreeMap<Module, String>> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![src.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).with_context(|| dir.display().to_string())? {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if !name.ends_with(".rs") || name.ends_with("tests.rs") {
                continue;
            }
            let rel = path.strip_prefix(src)?.with_extension("");
            let mut module: Module = rel
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            if module.last().is_some_and(|m| m == "mod" || m == "main") {
                module.pop();
            }
            out.insert(module, fs::read_to_string(&path)?);
        }
    }
    Ok(out)
}

/// The code of a file: without comments and without its test module.
fn code_of(text: &str) -> String {
    let text = text.split("#[cfg(test)]\nmod tests {").next().unwrap_or("");
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module paths `code` names, through `crate::` or `super::` (relative
/// to `parent`).
fn paths(code: &str, parent: &Module) -> Vec<Module> {
    let mut out = Vec::new();
    for (prefix, base) in [("crate::", Vec::new()), ("super::", parent.clone())] {
        let mut rest = code;
        while let Some(i) = rest.find(prefix) {
            let before = rest[..i].chars().last();
            rest = &rest[i + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            if let Some(tree) = rest.strip_prefix('{') {
                let end = closing(tree);
                out.extend(
                    expand(&tree[..end])
                        .into_iter()
                        .map(|p| [base.clone(), p].concat()),
                );
            } else {
                let path: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                out.push([base.clone(), split(&path)].concat());
            }
        }
    }
    out
}

/// Where the `{` before `tree` is closed.
fn closing(tree: &str) -> usize {
    let mut depth = 0;
    for (i, c) in tree.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return i,
            '}' => depth -= 1,
            _ => {}
        }
    }
    tree.len()
}

/// `a::{b, c::d}, e` → `a::b`, `a::c::d`, `e`.
fn expand(tree: &str) -> Vec<Module> {
    let (mut items, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in tree.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&tree[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&tree[start..]);
    let mut out = Vec::new();
    for item in items.into_iter().map(str::trim).filter(|i| !i.is_empty()) {
        match item.find('{') {
            Some(open) => {
                let head = split(&item[..open]);
                let inner = &item[open + 1..item.rfind('}').unwrap_or(item.len())];
                out.extend(
                    expand(inner)
                        .into_iter()
                        .map(|p| [head.clone(), p].concat()),
                );
            }
            None => out.push(split(item.split(" as ").next().unwrap_or(item))),
        }
    }
    out
}

/// `a::b::C` → the lower-case segments `a`, `b` (types and items end it).
fn split(path: &str) -> Module {
    path.split("::")
        .map(str::trim)
        .take_while(|s| {
            s.chars()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        })
        .filter(|s| *s != "self")
        .map(str::to_owned)
        .collect()
}

/// The strongly connected components of more than one file (Tarjan).
fn circles(graph: &BTreeMap<&Module, BTreeSet<Module>>) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a BTreeMap<&'a Module, BTreeSet<Module>>,
        index: BTreeMap<Module, usize>,
        low: BTreeMap<Module, usize>,
        stack: Vec<Module>,
        found: Vec<Vec<String>>,
    }
    fn visit(s: &mut State<'_>, v: &Module) {
        let n = s.index.len();
        s.index.insert(v.clone(), n);
        s.low.insert(v.clone(), n);
        s.stack.push(v.clone());
        for w in s.graph.get(v).into_iter().flatten() {
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v.clone(), low);
            } else if s.stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v.clone(), low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                let done = w == *v;
                component.push(w.join("::"));
                if done {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(*v) {
            visit(&mut s, v);
        }
    }
    s.found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn use_trees_and_paths_resolve_to_modules() {
        let code = "use crate::{a::{b, c::D}, e as f};\nlet x = crate::g::h::I::new();\nuse super::{k, L};";
        let mut got = paths(code, &vec!["p".into()]);
        got.sort();
        let want: Vec<Module> = [
            vec!["a", "b"],
            vec!["a", "c"],
            vec!["e"],
            vec!["g", "h"],
            vec!["p"],
            vec!["p", "k"],
        ]
        .iter()
        .map(|m| m.iter().map(|s| s.to_string()).collect())
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_circle_is_found_and_a_chain_is_not() {
        let (a, b, c): (Module, Module, Module) =
            (vec!["a".into()], vec!["b".into()], vec!["c".into()]);
        let mut g: BTreeMap<&Module, BTreeSet<Module>> = BTreeMap::new();
        g.insert(&a, BTreeSet::from([b.clone()]));
        g.insert(&b, BTreeSet::from([c.clone()]));
        assert!(circles(&g).is_empty());
        g.insert(&c, BTreeSet::from([a.clone()]));
        assert_eq!(circles(&g), [vec!["a", "b", "c"]]);
    }

    #[test]
    fn files_that_import_each_other_fail_the_check() {
        let dir = std::env::temp_dir().join(format!("xtask-imports-{}", std::process::id()));
        fs::create_dir_all(dir.join("kernel")).unwrap();
        fs::write(dir.join("main.rs"), "mod kernel;\nmod daemon;\n").unwrap();
        fs::write(dir.join("kernel/mod.rs"), "pub fn f() {}\n").unwrap();
        fs::write(dir.join("daemon.rs"), "use crate::kernel;\n").unwrap();
        assert!(check(&dir).is_ok());
        // An arrow up: kernel imports the daemon, which imports kernel.
        fs::write(dir.join("kernel/mod.rs"), "use crate::{daemon::run, x};\n").unwrap();
        let e = check(&dir).unwrap_err().to_string();
        fs::remove_dir_all(&dir).unwrap();
        assert!(e.contains("1 import circle"), "{e}");
    }
}
