//! The architecture's invariants, checked on the real dependency graph (`cargo metadata`):
//!
//! - `rigger-domain` pulls in no async runtime or transport (no tokio, reqwest, hyper).
//! - `rigger-ports` pulls in no transport or engine (no reqwest, hyper, candle, pyo3).
//! - `rigger-pipeline` pulls in no transport, engine or runtime; `rigger-http-support` no engine.
//! - `rigger-cpu-engine` depends on candle-core, half, rayon and libc only (no port, runtime or
//!   tokenizer), so any frontend can drive it.
//! - no adapter depends on another adapter;
//! - only `rigger-provider-factory` and the facade depend on adapters (plus `rigger-benches`,
//!   which measures adapters directly);
//! - `xtask` depends on its allow-list only (clap, anyhow, cargo_metadata), so `cargo xtask ci`
//!   compiles no inference stack before `cargo fmt --check`;
//! - the facade names its adapters' items one by one (no glob re-export of an adapter crate,
//!   which would carry the `#[doc(hidden)]` `*_for_bench` hooks along), checked on its source.
//! - every adapter crate (`crates/*-adapter`) runs the shared conformance suite from
//!   `tests/conformance.rs`, and keeps its test server in `tests/support/` (no `tests/common/`).
//!
//! Only normal dependencies count: an adapter's tests may use anything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use cargo_metadata::{DependencyKind, MetadataCommand};

pub const ADAPTERS: [&str; 5] = [
    "rigger-mlx-adapter",
    "rigger-ollama-adapter",
    "rigger-candle-adapter",
    "rigger-openai-adapter",
    "rigger-anthropic-adapter",
];
const MAY_DEPEND_ON_ADAPTERS: [&str; 3] = [
    "rigger-provider-factory",
    "task-orchestrator",
    "rigger-benches",
];
/// The xtask's normal dependencies, all of them (rust-analyzer's rule: avoid adding more). A task
/// that needs more is a binary of its own crate that the xtask runs (the bench, gen-model).
const XTASK_MAY_DEPEND_ON: [&str; 3] = ["anyhow", "cargo_metadata", "clap"];
/// The facade's source, checked for glob re-exports of adapters and for bench hooks.
const FACADE_SOURCE: &str = "crates/task-orchestrator/src/lib.rs";
const DOMAIN_FORBIDS: [&str; 4] = ["tokio", "reqwest", "hyper", "mio"];
/// The pipeline reaches models only through the port: no transport, engine or runtime.
const PIPELINE_FORBIDS: [&str; 6] = [
    "reqwest",
    "hyper",
    "candle-core",
    "candle-transformers",
    "pyo3",
    "tokio",
];
/// Shared HTTP plumbing carries no engine.
const HTTP_SUPPORT_FORBIDS: [&str; 3] = ["candle-core", "candle-transformers", "pyo3"];
/// The CPU engine's whole list of normal dependencies.
const CPU_ENGINE_MAY_USE: [&str; 4] = ["candle-core", "half", "rayon", "libc"];
/// What the engine must not reach even through candle: ports, runtimes. (Not tokenizers:
/// candle-core itself depends on them; the list above keeps the engine from using them.)
const CPU_ENGINE_FORBIDS: [&str; 3] = ["rigger-ports", "tokio", "async-trait"];
const PORTS_FORBIDS: [&str; 6] = [
    "reqwest",
    "hyper",
    "candle-core",
    "candle-transformers",
    "pyo3",
    "tokio",
];

/// Package name → names of its normal (non-dev, non-build) dependencies.
pub type Graph = BTreeMap<String, BTreeSet<String>>;

pub fn check_workspace() -> anyhow::Result<Vec<String>> {
    let metadata = MetadataCommand::new()
        .manifest_path(crate::workspace::root().join("Cargo.toml"))
        .exec()?;
    let resolve = metadata
        .resolve
        .ok_or_else(|| anyhow::anyhow!("cargo metadata returned no dependency graph"))?;
    let name_of: BTreeMap<_, _> = metadata
        .packages
        .iter()
        .map(|p| (p.id.clone(), p.name.to_string()))
        .collect();
    let mut graph = Graph::new();
    for node in resolve.nodes {
        let deps = node
            .deps
            .iter()
            .filter(|d| d.dep_kinds.iter().any(|k| k.kind == DependencyKind::Normal))
            .filter_map(|d| name_of.get(&d.pkg).cloned())
            .collect();
        if let Some(name) = name_of.get(&node.id) {
            graph
                .entry(name.clone())
                .or_default()
                .extend::<BTreeSet<String>>(deps);
        }
    }
    let members: BTreeSet<String> = metadata
        .workspace_members
        .iter()
        .filter_map(|id| name_of.get(id).cloned())
        .collect();
    let mut violations = check(&graph, &members);
    let facade = crate::workspace::root().join(FACADE_SOURCE);
    let source = std::fs::read_to_string(&facade)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", facade.display()))?;
    violations.extend(check_facade_source(&source));
    violations.extend(check_adapter_tests(
        &crate::workspace::root().join("crates"),
    ));
    Ok(violations)
}

/// The facade re-exports each adapter's supported items by name: a glob (`pub use
/// rigger_x_adapter::*`) would re-export its `#[doc(hidden)]` bench hooks too.
pub fn check_facade_source(source: &str) -> Vec<String> {
    let mut violations = Vec::new();
    for adapter in ADAPTERS {
        let glob = format!("{}::*", adapter.replace('-', "_"));
        if source.contains(&glob) {
            violations.push(format!(
                "the facade ({FACADE_SOURCE}) re-exports {glob}; name the supported items, so that \
                 the adapter's #[doc(hidden)] bench hooks stay out"
            ));
        }
    }
    // Doc comments may name a hook: the facade's compile_fail doctests do, to prove it absent.
    let code = source.lines().filter(|l| !l.trim_start().starts_with("//"));
    if let Some(line) = code.into_iter().find(|l| l.contains("_for_bench")) {
        violations.push(format!(
            "the facade ({FACADE_SOURCE}) re-exports a bench hook: {}",
            line.trim()
        ));
    }
    violations
}

/// The call every adapter's `tests/conformance.rs` makes.
const CONFORMANCE_CALL: &str = "rigger_conformance::conformance_suite!";

/// One test layout in every adapter crate under `crates`: `tests/conformance.rs` runs the
/// conformance suite, and the test server lives in `tests/support/`, not `tests/common/`.
pub fn check_adapter_tests(crates: &Path) -> Vec<String> {
    let mut violations = Vec::new();
    let Ok(entries) = std::fs::read_dir(crates) else {
        return vec![format!("cannot list {}", crates.display())];
    };
    let mut adapters: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with("-adapter"))
        })
        .collect();
    adapters.sort();
    for adapter in adapters {
        let name = format!(
            "crates/{}",
            adapter.file_name().and_then(|n| n.to_str()).unwrap_or("?")
        );
        let tests = adapter.join("tests");
        match std::fs::read_to_string(tests.join("conformance.rs")) {
            Ok(text) if text.contains(CONFORMANCE_CALL) => {}
            Ok(_) => violations.push(format!(
                "{name}/tests/conformance.rs does not call {CONFORMANCE_CALL}"
            )),
            Err(_) => violations.push(format!(
                "{name} has no tests/conformance.rs running the conformance suite"
            )),
        }
        if tests.join("common").exists() {
            violations.push(format!(
                "{name}/tests/common/: the test server and fixtures live in tests/support/"
            ));
        }
    }
    violations
}

/// Everything `package` pulls in through normal dependencies.
fn closure(graph: &Graph, package: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![package.to_owned()];
    while let Some(p) = todo.pop() {
        for d in graph.get(&p).into_iter().flatten() {
            if seen.insert(d.clone()) {
                todo.push(d.clone());
            }
        }
    }
    seen
}

pub fn check(graph: &Graph, members: &BTreeSet<String>) -> Vec<String> {
    let mut violations = Vec::new();
    for (package, forbidden) in [
        ("rigger-domain", &DOMAIN_FORBIDS[..]),
        ("rigger-ports", &PORTS_FORBIDS[..]),
        ("rigger-pipeline", &PIPELINE_FORBIDS[..]),
        ("rigger-http-support", &HTTP_SUPPORT_FORBIDS[..]),
        ("rigger-cpu-engine", &CPU_ENGINE_FORBIDS[..]),
    ] {
        if !graph.contains_key(package) {
            violations.push(format!("{package} is missing from the workspace"));
            continue;
        }
        let pulled = closure(graph, package);
        for f in forbidden {
            if pulled.contains(*f) {
                violations.push(format!("{package} depends (transitively) on {f}"));
            }
        }
    }
    for dep in graph.get("rigger-cpu-engine").into_iter().flatten() {
        if !CPU_ENGINE_MAY_USE.contains(&dep.as_str()) {
            violations.push(format!(
                "rigger-cpu-engine depends on {dep}; the engine may use only {}",
                CPU_ENGINE_MAY_USE.join(", ")
            ));
        }
    }
    if let Some(direct) = graph.get("xtask") {
        for dep in direct {
            if !XTASK_MAY_DEPEND_ON.contains(&dep.as_str()) {
                violations.push(format!(
                    "xtask depends on {dep}; the xtask stays light (allowed: {}): a task that \
                     needs more is a binary of its own crate that the xtask runs",
                    XTASK_MAY_DEPEND_ON.join(", ")
                ));
            }
        }
    }
    for member in members {
        let direct = graph.get(member).cloned().unwrap_or_default();
        for adapter in ADAPTERS {
            if !direct.contains(adapter) {
                continue;
            }
            if ADAPTERS.contains(&member.as_str()) {
                violations.push(format!(
                    "adapter {member} depends on adapter {adapter}; share code through ports or a support crate"
                ));
            } else if !MAY_DEPEND_ON_ADAPTERS.contains(&member.as_str()) {
                violations.push(format!(
                    "{member} depends on {adapter}; only the provider factory and the facade may"
                ));
            }
        }
        if ADAPTERS.contains(&member.as_str()) {
            let pulled = closure(graph, member);
            for other in ADAPTERS.iter().filter(|a| **a != member.as_str()) {
                if pulled.contains(*other) && !direct.contains(*other) {
                    violations.push(format!(
                        "adapter {member} pulls in adapter {other} indirectly"
                    ));
                }
            }
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &str)]) -> (Graph, BTreeSet<String>) {
        let mut g = Graph::new();
        for (a, b) in edges {
            g.entry(a.to_string()).or_default().insert(b.to_string());
            g.entry(b.to_string()).or_default();
        }
        let members = g
            .keys()
            .filter(|k| !k.starts_with("ext:"))
            .cloned()
            .collect();
        (g, members)
    }

    #[test]
    fn the_workspace_holds_every_invariant() {
        let violations = check_workspace().expect("cargo metadata");
        assert!(violations.is_empty(), "{violations:#?}");
    }

    #[test]
    fn the_checker_catches_each_kind_of_violation() {
        let (g, m) = graph(&[
            ("rigger-domain", "serde"),
            ("serde", "reqwest"),
            ("rigger-ports", "rigger-domain"),
            ("rigger-ports", "candle-core"),
            ("rigger-ollama-adapter", "rigger-openai-adapter"),
            ("rigger-pipeline", "rigger-candle-adapter"),
            ("rigger-provider-factory", "rigger-mlx-adapter"),
            ("rigger-http-support", "reqwest"),
            ("rigger-pipeline", "rigger-ports"),
            ("rigger-pipeline", "tokio"),
            ("xtask", "clap"),
            ("xtask", "tokio"),
            ("xtask", "rigger-candle-adapter"),
            ("rigger-cpu-engine", "candle-core"),
            ("rigger-cpu-engine", "rayon"),
            ("rigger-cpu-engine", "tokio"),
        ]);
        let v = check(&g, &m);
        let has = |s: &str| v.iter().any(|x| x.contains(s));
        assert!(
            has("rigger-domain depends (transitively) on reqwest"),
            "{v:#?}"
        );
        assert!(
            has("rigger-ports depends (transitively) on candle-core"),
            "{v:#?}"
        );
        assert!(has(
            "adapter rigger-ollama-adapter depends on adapter rigger-openai-adapter"
        ));
        assert!(has("rigger-pipeline depends on rigger-candle-adapter"));
        assert!(
            has("rigger-pipeline depends (transitively) on tokio"),
            "{v:#?}"
        );
        assert!(
            has("rigger-cpu-engine depends (transitively) on tokio"),
            "{v:#?}"
        );
        assert!(
            has("rigger-cpu-engine depends on tokio; the engine may use only"),
            "{v:#?}"
        );
        assert!(!has("rigger-cpu-engine depends on rayon"), "{v:#?}");
        assert!(!has("rigger-http-support"), "reqwest is its job: {v:#?}");
        assert!(!has("rigger-provider-factory"), "{v:#?}");
        assert!(
            has("rigger-ports depends (transitively) on reqwest"),
            "inherited from domain"
        );
        assert!(has("xtask depends on tokio"), "{v:#?}");
        assert!(!has("xtask depends on clap"), "{v:#?}");
        // The xtask may not depend on an adapter: outside its allow-list, and no longer a
        // tooling crate that may measure adapters.
        assert!(
            has("xtask depends on rigger-candle-adapter; the xtask"),
            "{v:#?}"
        );
        assert!(
            has("xtask depends on rigger-candle-adapter; only the provider factory"),
            "{v:#?}"
        );
        // The pipeline inherits reqwest and candle-core from ports in this graph.
        assert_eq!(v.len(), 13, "{v:#?}");
    }

    #[test]
    fn the_facade_names_adapter_items_and_no_bench_hook() {
        let named = "pub mod candle_adapter { pub use rigger_candle_adapter::{CandleAdapter}; }";
        assert!(check_facade_source(named).is_empty());
        let glob = "pub mod openai_adapter { pub use rigger_openai_adapter::*; }";
        let v = check_facade_source(glob);
        assert_eq!(v.len(), 1, "{v:#?}");
        assert!(v[0].contains("rigger_openai_adapter::*"), "{v:#?}");
        let hook = "pub use rigger_ollama_adapter::{decode_lines_for_bench};";
        assert_eq!(check_facade_source(hook).len(), 1);
        let doctest =
            "/// use task_orchestrator::adapters::ollama_adapter::decode_lines_for_bench;";
        assert!(check_facade_source(doctest).is_empty());
    }

    #[test]
    fn the_layout_rule_catches_an_adapter_without_the_suite() {
        let crates = std::env::temp_dir().join(format!("rigger-tidy-{}", std::process::id()));
        let write = |path: &str, text: &str| {
            let path = crates.join(path);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        };
        write(
            "good-adapter/tests/conformance.rs",
            "rigger_conformance::conformance_suite!(x, target: t);",
        );
        write("silent-adapter/tests/conformance.rs", "// nothing here");
        write("missing-adapter/tests/other.rs", "");
        write(
            "common-adapter/tests/conformance.rs",
            "rigger_conformance::conformance_suite!(x, target: t);",
        );
        write("common-adapter/tests/common/mod.rs", "");
        write("not-an-adaptor/tests/other.rs", "");
        let v = check_adapter_tests(&crates);
        let _ = std::fs::remove_dir_all(&crates);
        let has = |s: &str| v.iter().any(|x| x.contains(s));
        assert!(
            has("silent-adapter/tests/conformance.rs does not call"),
            "{v:#?}"
        );
        assert!(has("missing-adapter has no tests/conformance.rs"), "{v:#?}");
        assert!(has("common-adapter/tests/common/"), "{v:#?}");
        assert_eq!(v.len(), 3, "{v:#?}");
    }
}
