//! The layering rule of `dynamo-node`, checked on its source: no module
//! imports a module that imports it back, directly or through others.
//!
//! Why: an import loop means two layers that cannot be understood, tested
//! or replaced apart (the coordinator, the replica and the tombstone
//! collector once formed one). With no loop, every module sits on a floor
//! and uses only the floors below it; a newcomer can read the crate from
//! the bottom up.
//!
//! How: every `crate::` and `super::` path outside comments is an edge
//! from the file it appears in to the deepest module the path names
//! (`use crate::replica::Replica` is an edge to `replica`; a path to an
//! item of the crate root, such as `crate::lock`, is an edge to the root,
//! which declares modules but imports none). Test modules inside a file
//! count as that file. A strongly connected component of more than one
//! module is a loop; the test prints every one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`a::b`; the crate root is `crate`) of each source file.
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).expect("file under src");
    let mut parts: Vec<String> = relative.iter().map(|part| part.to_string_lossy().into_owned()).collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    if parts.is_empty() { "crate".to_string() } else { parts.join("::") }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// `line` without a trailing `//` comment (one outside a string literal).
fn strip_comment(line: &str) -> &str {
    let mut in_string = false;
    let bytes = line.as_bytes();
    for i in 0..bytes.len() {
        match bytes[i] {
            b'"' if i == 0 || bytes[i - 1] != b'\\' => in_string = !in_string,
            b'/' if !in_string && bytes.get(i + 1) == Some(&b'/') => return &line[..i],
            _ => {}
        }
    }
    line
}

fn is_ident(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// Reads `a::b::c` from the start of `text` (stopping at `{`, `*` or any
/// other non-path character): the segments, and the text after them (a
/// trailing `::` included, so a nested group starts with `{`).
fn leading_path(text: &str) -> (Vec<String>, &str) {
    let mut segments = Vec::new();
    let mut rest = text;
    loop {
        let len = rest.bytes().take_while(|&byte| is_ident(byte)).count();
        if len == 0 {
            break;
        }
        segments.push(rest[..len].to_string());
        rest = &rest[len..];
        match rest.trim_start().strip_prefix("::") {
            Some(after) => rest = after.trim_start(),
            None => break,
        }
    }
    (segments, rest)
}

/// The paths a `{ ... }` group at the start of `text` imports, each as
/// segments relative to the group's prefix (nested groups flattened).
fn group_paths(text: &str) -> Vec<Vec<String>> {
    let Some(inner) = text.strip_prefix('{') else { return Vec::new() };
    let mut paths = Vec::new();
    let mut depth = 0usize;
    let mut start = 0usize;
    for (i, byte) in inner.bytes().enumerate() {
        match byte {
            b'{' => depth += 1,
            b'}' if depth == 0 => {
                push_item(&inner[start..i], &mut paths);
                return paths;
            }
            b'}' => depth -= 1,
            b',' if depth == 0 => {
                push_item(&inner[start..i], &mut paths);
                start = i + 1;
            }
            _ => {}
        }
    }
    paths
}

/// Adds the paths of `item` (`a::b`, `a::{b, c}` or `{a, b}`, followed by
/// anything) to `paths`.
fn push_item(item: &str, paths: &mut Vec<Vec<String>>) {
    let (prefix, rest) = leading_path(item.trim_start());
    if rest.starts_with('{') {
        for mut tail in group_paths(rest) {
            let mut path = prefix.clone();
            path.append(&mut tail);
            paths.push(path);
        }
    } else if !prefix.is_empty() {
        paths.push(prefix);
    }
}

/// Every path in `source` that starts with `anchor` (`crate::` or
/// `super::`), as segments after the anchor.
fn anchored_paths(source: &str, anchor: &str) -> Vec<Vec<String>> {
    // Join lines first: a `use` group may span several.
    let code: String = source.lines().map(strip_comment).collect::<Vec<_>>().join(" ");
    let mut paths = Vec::new();
    let mut from = 0;
    while let Some(found) = code[from..].find(anchor) {
        let at = from + found;
        from = at + anchor.len();
        if at > 0 && (is_ident(code.as_bytes()[at - 1]) || code.as_bytes()[at - 1] == b':') {
            continue; // `my_crate::`, or the second `super` of `super::super::`.
        }
        push_item(&code[from..], &mut paths);
    }
    paths
}

/// `source` up to its first inline module (`mod name {`), where test
/// modules start.
fn outside_inline_modules(source: &str) -> &str {
    let mut offset = 0;
    for line in source.split_inclusive('\n') {
        let code = strip_comment(line).trim();
        let inline = code.ends_with('{')
            && code.trim_end_matches('{').trim_end().rsplit_once("mod ").is_some_and(|(keyword, _name)| {
                keyword.trim().is_empty() || keyword.trim() == "pub" || keyword.trim().starts_with("pub(")
            })
            && !code.contains("fn ");
        if inline {
            return &source[..offset];
        }
        offset += line.len();
    }
    source
}

/// The modules `source` declares (`mod name;`, `pub mod name;`, ...).
fn declared_children(source: &str) -> Vec<String> {
    source
        .lines()
        .map(|line| strip_comment(line).trim())
        .filter_map(|line| {
            let declaration = line.strip_suffix(';')?;
            let name = declaration.rsplit_once("mod ")?.1.trim();
            let keyword_ok = declaration.trim_end_matches(name).trim_end().ends_with("mod");
            (keyword_ok && !name.is_empty() && name.bytes().all(is_ident)).then(|| name.to_string())
        })
        .collect()
}

/// The deepest module in `modules` that `segments` (absolute) names.
fn resolve(modules: &BTreeSet<String>, segments: &[String]) -> String {
    (1..=segments.len())
        .rev()
        .map(|len| segments[..len].join("::"))
        .find(|candidate| modules.contains(candidate))
        .unwrap_or_else(|| "crate".to_string())
}

fn parent(module: &str) -> Vec<String> {
    let mut segments: Vec<String> = module.split("::").map(str::to_string).collect();
    segments.pop();
    segments
}

/// Edges of the import graph of the crate whose sources are in `src`.
fn import_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|file| module_of(src, file)).collect();
    let mut graph = BTreeMap::new();
    for file in &files {
        let module = module_of(src, file);
        let source = std::fs::read_to_string(file).expect("read source");
        let mut targets = BTreeSet::new();
        for segments in anchored_paths(&source, "crate::") {
            targets.insert(resolve(&modules, &segments));
        }
        // `super` inside an inline module (`mod tests { use super::*; }`,
        // at the end of a file) is the file's own module: not an edge.
        let outer = outside_inline_modules(&source);
        for segments in anchored_paths(outer, "super::") {
            // `super` of a `mod.rs` or a leaf file is the module's parent;
            // each further `super` goes one floor up.
            let mut absolute = if module == "crate" { Vec::new() } else { parent(&module) };
            let ups = segments.iter().take_while(|segment| *segment == "super").count();
            absolute.truncate(absolute.len().saturating_sub(ups));
            absolute.extend(segments.into_iter().skip(ups));
            targets.insert(resolve(&modules, &absolute));
        }
        // A path through a child module the file declares (`mod child;`
        // then `child::Item`) is an edge to that child.
        for child in declared_children(&source) {
            let own = if module == "crate" { child.clone() } else { format!("{module}::{child}") };
            for segments in anchored_paths(&source, &format!("{child}::")) {
                let mut absolute: Vec<String> = own.split("::").map(str::to_string).collect();
                absolute.extend(segments);
                targets.insert(resolve(&modules, &absolute));
            }
        }
        targets.remove(&module);
        graph.insert(module, targets);
    }
    graph
}

/// The strongly connected components with more than one module (Tarjan).
fn loops(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(state: &mut State<'a>, node: &'a str) {
        let next = state.index.len();
        state.index.insert(node, next);
        state.low.insert(node, next);
        state.stack.push(node);
        state.on_stack.insert(node);
        let graph = state.graph;
        for target in graph.get(node).into_iter().flatten() {
            let target = target.as_str();
            if !state.index.contains_key(target) {
                visit(state, target);
                let low = state.low[node].min(state.low[target]);
                state.low.insert(node, low);
            } else if state.on_stack.contains(target) {
                let low = state.low[node].min(state.index[target]);
                state.low.insert(node, low);
            }
        }
        if state.low[node] == state.index[node] {
            let mut component = Vec::new();
            while let Some(member) = state.stack.pop() {
                state.on_stack.remove(member);
                component.push(member.to_string());
                if member == node {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                state.found.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !state.index.contains_key(node.as_str()) {
            visit(&mut state, node);
        }
    }
    state.found
}

#[test]
fn no_module_of_dynamo_node_imports_a_module_that_imports_it_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = import_graph(&src);
    assert!(graph.len() > 10, "the checker found the crate's modules: {:?}", graph.keys());
    let found = loops(&graph);
    let report: Vec<String> = found
        .iter()
        .map(|component| {
            let edges: Vec<String> = component
                .iter()
                .flat_map(|from| {
                    graph[from].iter().filter(|to| component.contains(to)).map(move |to| format!("{from} -> {to}"))
                })
                .collect();
            format!("loop of {} modules: {}", component.len(), edges.join(", "))
        })
        .collect();
    assert!(found.is_empty(), "import loops in dynamo-node:\n{}", report.join("\n"));
}

/// The checker itself: it must see loops through `use` groups, `super::`
/// and paths in code, and must not see them in comments.
#[test]
fn the_checker_finds_loops_through_groups_super_and_inline_paths_but_not_comments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path();
    std::fs::create_dir_all(src.join("folder")).expect("mkdir");
    let write = |name: &str, text: &str| std::fs::write(src.join(name), text).expect("write");
    write("lib.rs", "pub mod a; pub mod b; pub mod c; pub mod folder;\n");
    write("a.rs", "use crate::{b::Thing, lock};\nuse crate::folder::{other, child::Item};\n");
    write("b.rs", "fn f() { crate::folder::child::g(); }\n#[cfg(test)]\nmod tests {\n    use super::*;\n}\n");
    write("c.rs", "//! Links to [`crate::a`] do not import.\nuse crate::b;\n");
    write("folder/mod.rs", "pub mod child;\npub mod other;\nuse other::Thing;\n");
    write("folder/other.rs", "");
    write("folder/child.rs", "use super::super::a::Item;\n");
    let graph = import_graph(src);
    let expected = ["b", "crate", "folder::child", "folder::other"].map(str::to_string);
    assert_eq!(graph["a"], BTreeSet::from(expected));
    assert_eq!(graph["b"], BTreeSet::from(["folder::child".to_string()]), "a test module's super is its file");
    assert_eq!(graph["c"], BTreeSet::from(["b".to_string()]));
    assert_eq!(graph["folder"], BTreeSet::from(["folder::other".to_string()]));
    assert_eq!(loops(&graph), vec![vec!["a".to_string(), "b".to_string(), "folder::child".to_string()]]);
}
