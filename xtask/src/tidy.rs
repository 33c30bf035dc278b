//! The architecture's invariants, checked on the real dependency graph (`cargo metadata`):
//!
//! - `rigger-domain` pulls in no async runtime or transport (no tokio, reqwest, hyper).
//! - `rigger-ports` pulls in no transport or engine (no reqwest, hyper, candle, pyo3).
//! - `rigger-pipeline` pulls in no transport, engine or runtime; `rigger-http-support` no engine.
//! - `rigger-cpu-engine` depends on candle-core, half, rayon and libc only (no port, runtime or
//!   tokenizer), so any frontend can drive it.
//! - no adapter depends on another adapter;
//! - only `rigger-provider-factory` and the facade depend on adapters (plus the tooling crates,
//!   `xtask` and `rigger-benches`, which measure adapters directly).
//!
//! Only normal dependencies count: an adapter's tests may use anything.

use std::collections::{BTreeMap, BTreeSet};

use cargo_metadata::{DependencyKind, MetadataCommand};

pub const ADAPTERS: [&str; 5] = [
    "rigger-mlx-adapter",
    "rigger-ollama-adapter",
    "rigger-candle-adapter",
    "rigger-openai-adapter",
    "rigger-anthropic-adapter",
];
const MAY_DEPEND_ON_ADAPTERS: [&str; 4] = [
    "rigger-provider-factory",
    "task-orchestrator",
    "xtask",
    "rigger-benches",
];
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
        .manifest_path(super::ci::workspace_root().join("Cargo.toml"))
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
    Ok(check(&graph, &members))
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
        // The pipeline inherits reqwest and candle-core from ports in this graph.
        assert_eq!(v.len(), 10, "{v:#?}");
    }
}
