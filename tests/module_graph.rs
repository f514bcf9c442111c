//! No import cycles between modules: every `crate::…` path in `src/` is an edge from the module that writes it to
//! the module it names (`client` as one; `shared::X` and `server::X` each one, their submodules included), and the
//! graph must have no cycle. `cargo test --features ssr --test module_graph -- --nocapture` prints the edges. The
//! HTTP server (`server::net`) is a layer below the handlers: it imports nothing of the server. The use cases
//! (`server::feed`, `server::roster`, `server::follow`) sit between the edges and the store: no edge below them, no framework in them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The module a source file belongs to, or `None` for the crate root (`lib.rs`, `main.rs`).
fn module_of(relative: &Path) -> Option<String> {
    let parts: Vec<String> = relative.iter().map(|part| part.to_string_lossy().into_owned()).collect();
    match parts.as_slice() {
        [top, ..] if top == "client" => Some("client".into()),
        [top, file] if file == "mod.rs" => Some(top.clone()),
        [top, file, ..] => Some(format!("{top}::{}", file.trim_end_matches(".rs"))),
        _ => None,
    }
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// The first path segment after `crate::top::` at each place it is written (`crate::server::{a, b::C}` gives both).
fn targets(source: &str, top: &str) -> Vec<String> {
    let needle = format!("crate::{top}::");
    let mut found = Vec::new();
    let ident = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    for (at, _) in source.match_indices(&needle) {
        let rest = &source[at + needle.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            found.extend(inner.split(',').map(|item| ident(item.trim())).filter(|name| !name.is_empty()));
        } else {
            found.push(ident(rest));
        }
    }
    found
}

fn edges() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let modules: BTreeSet<String> =
        files.iter().filter_map(|file| module_of(file.strip_prefix(&src).unwrap())).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(from) = module_of(file.strip_prefix(&src).unwrap()) else { continue };
        let text = std::fs::read_to_string(file).unwrap();
        let mut to: BTreeSet<String> = BTreeSet::new();
        if text.contains("crate::client::") {
            to.insert("client".into());
        }
        for top in ["server", "shared"] {
            for name in targets(&text, top) {
                let module = format!("{top}::{name}");
                to.insert(if modules.contains(&module) { module } else { top.to_owned() });
            }
        }
        to.remove(&from);
        graph.entry(from).or_default().extend(to);
    }
    graph
}

/// A cycle through `start`, if any (depth-first search back to it).
fn cycle_from(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    fn walk(
        graph: &BTreeMap<String, BTreeSet<String>>,
        start: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        let here = path.last().unwrap().clone();
        for next in graph.get(&here).into_iter().flatten() {
            if next == start {
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_owned()];
    walk(graph, start, &mut path, &mut BTreeSet::new()).then(|| {
        path.push(start.to_owned());
        path
    })
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = edges();
    for (from, to) in &graph {
        println!("{from} -> {}", to.iter().cloned().collect::<Vec<_>>().join(", "));
    }
    let cycles: Vec<String> =
        graph.keys().filter_map(|start| cycle_from(&graph, start)).map(|c| c.join(" -> ")).collect();
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_client_never_imports_the_server() {
    let graph = edges();
    let client = graph.get("client").cloned().unwrap_or_default();
    assert!(client.iter().all(|to| !to.starts_with("server")), "client -> {client:?}");
}

/// The HTTP server knows the router and its shortcut hook only as axum's and hyper's types, never a handler, the
/// state they share or a use case: a handler changes without the listener noticing, and the listener's tests need no
/// app. (Handlers may import it: `events` marks its streams with `net::Detach`.)
#[test]
fn the_network_layer_imports_nothing_of_the_server() {
    let graph = edges();
    let net = graph.get("server::net").expect("the network layer is src/server/net/");
    let upward: Vec<&String> = net.iter().filter(|to| to.starts_with("server") || *to == "client").collect();
    assert!(upward.is_empty(), "server::net -> {upward:?}");
}

/// The modules that hold the use cases: plain functions over domain types that every edge calls.
const USE_CASES: [&str; 3] = ["feed", "roster", "follow"];

/// The modules that speak HTTP or Leptos: the handlers, the layers, the router, the listener, the composition root
/// and the server functions. Imports flow from these to the use cases, never back. (`peer` is not among them: it
/// holds the per-address budgets, which the state holds and a use case asks, beside its `admit` layer.)
const EDGES: [&str; 10] = [
    "server::routes",
    "server::heartbeat",
    "server::messages",
    "server::events",
    "server::ops",
    "server::cookie",
    "server::refusal",
    "server::net",
    "server::startup",
    "shared::api",
];

/// A module's code without its comments and its unit tests (which may drive an edge to compare with it).
fn code_of(module: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/server").join(format!("{module}.rs"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    let code = text.split("#[cfg(test)]").next().unwrap();
    code.lines().filter(|line| !line.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// A use case is callable without a request: no axum, hyper or leptos type in it, and no edge imported by it.
#[test]
fn the_use_cases_know_no_framework_and_import_no_edge() {
    let graph = edges();
    for module in USE_CASES {
        let code = code_of(module);
        for framework in ["axum", "hyper", "leptos", "http::", "tower"] {
            assert!(!code.contains(framework), "server::{module} names {framework}");
        }
        let imports = graph.get(&format!("server::{module}")).cloned().unwrap_or_default();
        let upward: Vec<&String> = imports.iter().filter(|to| EDGES.contains(&to.as_str())).collect();
        assert!(upward.is_empty(), "server::{module} -> {upward:?}");
    }
}

/// The session group is a domain type: it knows nothing of cookies or HTTP (that is `server::cookie`'s) and imports
/// nothing of the server, so every layer may name it.
#[test]
fn the_group_id_is_a_domain_leaf() {
    let code = code_of("group");
    for http in ["axum", "cookie::", "Cookie", "Response", "Request"] {
        assert!(!code.contains(http), "server::group names {http}");
    }
    let imports = edges().get("server::group").cloned().unwrap_or_default();
    assert!(imports.iter().all(|to| !to.starts_with("server")), "server::group -> {imports:?}");
}

/// The composition root (`startup`, which `main` calls) is imported by nothing of the server, and the backend
/// factory (`backend`) by the composition root alone: no part reaches up to where the parts are chosen.
#[test]
fn nothing_reaches_up_to_the_composition_root_or_the_factory() {
    let graph = edges();
    for (from, to) in &graph {
        assert!(!to.contains("server::startup"), "{from} -> server::startup");
        if from != "server::startup" {
            assert!(!to.contains("server::backend"), "{from} -> server::backend");
        }
    }
}

/// Which backend runs is asked in one place: the factory (`server/backend.rs`) matches on it, the settings make it;
/// every other module holds the parts behind their traits. (Unit tests may name a backend to build one.)
#[test]
fn only_the_factory_and_the_settings_name_a_backend() {
    let mut files = Vec::new();
    sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
    for file in files {
        let relative = file.strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")).join("src")).unwrap().to_owned();
        let name = relative.to_string_lossy();
        // Test-only modules (the contract suites, `tests.rs` files) build a backend of each kind on purpose.
        let test_only = name.ends_with("/contract.rs") || name.ends_with("/tests.rs");
        if name == "server/backend.rs" || name.starts_with("server/settings") || test_only {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        for asked in ["StoreKind::", "Backend::Redis", "Backend::Sqlite", "Backend::Memory"] {
            assert!(!code.contains(asked), "{} asks which backend runs ({asked})", relative.display());
        }
    }
}
