//! `rigger`: the command line over the facade — the detection report, single pipeline steps,
//! the whole pipeline with progress, the models each backend offers, and `pull` (hub models
//! into the local cache, with a progress bar).
//!
//! Exit codes (for scripts): 0 success; 2 usage error; 3 bad input or configuration; 4 backend
//! or model not available; 5 the model's output was malformed; 6 the backend failed while
//! generating (timeout, crash, rate limit, protocol).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::json;
use task_orchestrator::adapters::candle_adapter::{
    self as candle, CandleConfig, HubSettings, ModelFiles,
};
use task_orchestrator::adapters::provider_factory::{
    Provider, ProviderFactory, RolePlan, Vars, role_default,
};
use task_orchestrator::domain::model_role::ModelRole;
use task_orchestrator::domain::{Task, TaskId};
use task_orchestrator::pipeline::{PipelineEvent, PipelineRun, RoleVar, role_var};
use task_orchestrator::ports::{CallMetrics, ErrorKind, InferenceError, Outcome};

#[derive(Parser)]
#[command(
    name = "rigger",
    version,
    about = "Local-first LLM inference for task orchestration"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Print machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Report this machine, every backend (usable or not, and the fix), and each role's model.
    Doctor,
    /// Rewrite a task so it is clear and actionable (the Enhancer).
    Enhance(TaskArgs),
    /// Split a task into 3-5 subtasks (the Decomposer).
    Decompose(TaskArgs),
    /// The whole pipeline: route, then enhance and test, or decompose.
    Run(TaskArgs),
    /// The models each role uses, those each reachable backend offers, and the hub cache.
    Models(Choice),
    /// Download Candle hub models into the hub cache now (with progress), so later runs need no
    /// network: a model id, one role's model, or every role's (the default).
    Pull(PullArgs),
}

#[derive(Args)]
struct PullArgs {
    /// A hub id (owner/repo, owner/repo:file.gguf, owner/repo:Q8_0).
    #[arg(conflicts_with_all = ["role", "all"])]
    model: Option<String>,
    /// The Candle model this role runs (router, decomposer, enhancer, tester).
    #[arg(long, conflicts_with = "all")]
    role: Option<String>,
    /// Every role's Candle model (what `rigger pull` alone does).
    #[arg(long)]
    all: bool,
}

#[derive(Args, Clone, Default)]
struct Choice {
    /// Use this provider for every role (mlx, ollama, candle, openai, anthropic).
    #[arg(long)]
    provider: Option<String>,
    /// Use this model for every role.
    #[arg(long)]
    model: Option<String>,
}

#[derive(Args)]
struct TaskArgs {
    /// The task's title (or its whole text).
    task: String,
    /// A longer description.
    #[arg(long, short)]
    description: Option<String>,
    #[command(flatten)]
    choice: Choice,
}

/// A failure with the exit code it maps to.
struct Failure {
    code: u8,
    json: serde_json::Value,
    text: String,
}

fn exit_code(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::InvalidRequest | ErrorKind::ContextLengthExceeded | ErrorKind::Unsupported => 3,
        ErrorKind::NotAvailable
        | ErrorKind::ModelNotFound
        | ErrorKind::ModelLoadFailed
        | ErrorKind::Unauthorized => 4,
        ErrorKind::MalformedOutput => 5,
        _ => 6,
    }
}

/// The most of a model's raw answer the CLI prints (each of stdout's JSON and stderr's text):
/// enough to see what went wrong; a misbehaving server's megabytes are cut, and the output says
/// so.
const MAX_PRINTED_RAW: usize = 16 * 1024;

/// `raw` cut to [`MAX_PRINTED_RAW`] bytes at a character boundary, and whether it was cut.
fn printed_raw(raw: &str) -> (&str, bool) {
    if raw.len() <= MAX_PRINTED_RAW {
        return (raw, false);
    }
    let end = (0..=MAX_PRINTED_RAW)
        .rev()
        .find(|&i| raw.is_char_boundary(i))
        .unwrap_or(0);
    (&raw[..end], true)
}

fn error_json(e: &InferenceError) -> serde_json::Value {
    let raw = e.raw_output().map(printed_raw);
    json!({
        "kind": format!("{:?}", e.kind()),
        "backend": e.backend(),
        "code": e.code(),
        "message": e.message(),
        "hint": e.hint(),
        "retry_after_secs": e.retry_after().map(|d| d.as_secs()),
        "raw_output": raw.map(|(text, _)| text),
        "raw_output_truncated": raw.map(|(_, cut)| cut),
        "raw_output_bytes": e.raw_output().map(str::len),
    })
}

impl From<InferenceError> for Failure {
    fn from(e: InferenceError) -> Self {
        let mut text = format!("error: {e}");
        if let Some(raw) = e.raw_output() {
            let (shown, cut) = printed_raw(raw);
            text.push_str(&format!("\nthe model's raw output was:\n{shown}"));
            if cut {
                text.push_str(&format!(
                    "\n[cut: {} of {} bytes shown]",
                    shown.len(),
                    raw.len()
                ));
            }
        }
        Failure {
            code: exit_code(e.kind()),
            json: json!({ "error": error_json(&e) }),
            text,
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: a log file or a pipe gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    let json = cli.json;
    let result = match cli.command {
        Command::Doctor => doctor(json).await,
        Command::Enhance(args) => enhance(args, json).await,
        Command::Decompose(args) => decompose(args, json).await,
        Command::Run(args) => run(args, json).await,
        Command::Models(choice) => models(choice, json).await,
        Command::Pull(args) => pull(args, json).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if json && !failure.json.is_null() {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&failure.json).unwrap_or_default()
                );
            }
            eprintln!("{}", failure.text);
            ExitCode::from(failure.code)
        }
    }
}

fn factory(choice: &Choice) -> Result<ProviderFactory, InferenceError> {
    let env = Vars::process_env();
    match (&choice.provider, &choice.model) {
        (Some(provider), model) => {
            ProviderFactory::new_with_vars(provider, model.as_deref().unwrap_or(""), env)
        }
        (None, Some(model)) => {
            // --model alone: every role's model, on whatever provider the rest chooses.
            let model = model.clone();
            let overrides: Vec<String> = ModelRole::ALL
                .iter()
                .map(|r| role_var(*r, RoleVar::Model))
                .collect();
            ProviderFactory::from_vars(Vars::from_fn(move |k| {
                if overrides.iter().any(|o| o == k) {
                    Some(model.clone())
                } else {
                    env.get(k)
                }
            }))
        }
        (None, None) => ProviderFactory::from_vars(env),
    }
}

fn task(args: &TaskArgs) -> Result<Task, InferenceError> {
    let invalid = |e: task_orchestrator::domain::DomainError| {
        InferenceError::invalid_request("rigger", e.to_string())
            .with_hint("give the task a non-empty title")
    };
    let id = TaskId::new("task-1").map_err(invalid)?;
    let mut task = Task::new(id, args.task.trim(), chrono::Utc::now()).map_err(invalid)?;
    if let Some(d) = &args.description {
        task = task.with_description(d.trim());
    }
    Ok(task)
}

/// A role's chain as `provider:model → provider:model`.
fn chain_text(plan: &RolePlan) -> String {
    let links: Vec<String> = plan
        .links
        .iter()
        .map(|l| format!("{}:{}", l.provider, l.model))
        .collect();
    links.join(" → ")
}

fn describe_calls(calls: &[CallMetrics]) -> String {
    let tokens: u32 = calls
        .iter()
        .map(|c| c.usage.prompt_tokens + c.usage.completion_tokens)
        .sum();
    let time: Duration = calls
        .iter()
        .map(|c| c.timings.prompt_duration + c.timings.generation_duration)
        .sum();
    let via: Vec<String> = calls
        .iter()
        .map(|c| format!("{}:{}", c.backend, c.model_id))
        .collect();
    let mut via = via;
    via.dedup();
    format!(
        "{} call(s), {tokens} tokens, {:.2} s via {}",
        calls.len(),
        time.as_secs_f64(),
        via.join(", ")
    )
}

async fn doctor(json: bool) -> Result<(), Failure> {
    let factory = ProviderFactory::from_env();
    // Building the factory probed the backends already when it had to auto-detect: reuse that.
    let report = match factory.as_ref().ok().and_then(|f| f.detection().cloned()) {
        Some(report) => report,
        None => ProviderFactory::detect().await,
    };
    if json {
        let plans = factory.as_ref().ok().map(|f| f.plans().to_vec());
        let hub_cache: Vec<serde_json::Value> = factory
            .as_ref()
            .map(|f| {
                f.plans()
                    .iter()
                    .flat_map(|p| {
                        hub_links(p, f.vars()).into_iter().map(|(model, cached)| {
                            json!({"role": p.role, "model": model, "cached": cached})
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let value = json!({
            "hub_models": hub_cache,
            "version": env!("CARGO_PKG_VERSION"),
            "os": std::env::consts::OS,
            "arch": std::env::consts::ARCH,
            "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
            "backends": report.backends,
            "auto_selected": report.chosen().map(|b| b.provider),
            "roles": plans,
            "error": factory.as_ref().err().map(error_json),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
    } else {
        println!("rigger {}", env!("CARGO_PKG_VERSION"));
        println!(
            "machine: {} {}, {} logical CPUs",
            std::env::consts::OS,
            std::env::consts::ARCH,
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        println!("\nbackends:");
        print!("{report}");
        match &factory {
            Ok(f) => {
                if let Some(c) = f.config() {
                    println!("\nconfig: {}", c.path.display());
                }
                println!("\nroles:");
                for plan in f.plans() {
                    let chain = chain_text(plan);
                    println!(
                        "  {:<11}{}  ({})",
                        plan.role.as_str(),
                        chain,
                        plan.provider_source
                    );
                    for (model, cached) in hub_links(plan, f.vars()) {
                        let state = match cached {
                            Some(path) => format!("cached at {}", path.display()),
                            None => {
                                "not cached: downloaded on first use (or `rigger pull`)".to_owned()
                            }
                        };
                        println!("  {:<11}  {model}: {state}", "");
                    }
                }
            }
            Err(e) => println!("\nroles: none can be set up: {e}"),
        }
    }
    if report.backends.iter().any(|b| b.usable) {
        Ok(())
    } else {
        Err(Failure {
            code: 4,
            // The report above is the JSON document; a second one would break parsers.
            json: serde_json::Value::Null,
            text: "no backend is usable on this machine: follow one of the fixes above".into(),
        })
    }
}

fn progress(
    factory: &ProviderFactory,
    json: bool,
) -> task_orchestrator::pipeline::ProgressObserver {
    let chains: Vec<(ModelRole, String)> = factory
        .plans()
        .iter()
        .map(|p| {
            let chain = chain_text(p);
            (p.role, chain)
        })
        .collect();
    Arc::new(move |event: &PipelineEvent<'_>| {
        if json {
            return;
        }
        match event {
            PipelineEvent::StepStarted { role } => {
                let chain = chains
                    .iter()
                    .find(|(r, _)| r == role)
                    .map_or("", |(_, c)| c.as_str());
                eprintln!("… {role:<11}on {chain}");
            }
            PipelineEvent::StepFinished { role, calls } => {
                eprintln!("✓ {role:<11}{}", describe_calls(calls));
            }
            PipelineEvent::StepFailed { role, error } => {
                eprintln!("✗ {role:<11}{}", error.kind());
            }
        }
    })
}

async fn enhance(args: TaskArgs, json: bool) -> Result<(), Failure> {
    let factory = factory(&args.choice)?;
    let task = task(&args)?;
    let enhancer = factory.create_enhancement_adapter()?;
    let observer = progress(&factory, json);
    let outcome = run_step(ModelRole::Enhancer, &observer, enhancer.enhance(&task)).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&outcome).unwrap_or_default()
        );
    } else {
        let e = &outcome.value;
        println!(
            "{}\n\n{}",
            e.title.as_deref().unwrap_or(&task.title),
            e.description
        );
    }
    Ok(())
}

async fn decompose(args: TaskArgs, json: bool) -> Result<(), Failure> {
    let factory = factory(&args.choice)?;
    let task = task(&args)?;
    let decomposer = factory.create_task_decomposition_adapter()?;
    let observer = progress(&factory, json);
    let outcome = run_step(
        ModelRole::Decomposer,
        &observer,
        decomposer.decompose(&task),
    )
    .await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&outcome).unwrap_or_default()
        );
    } else {
        for (n, s) in outcome.value.subtasks().iter().enumerate() {
            println!("{}. {}\n   {}", n + 1, s.title, s.description);
        }
    }
    Ok(())
}

/// Runs one pipeline step outside the orchestrator, reporting progress as the orchestrator does.
async fn run_step<T>(
    role: ModelRole,
    observer: &task_orchestrator::pipeline::ProgressObserver,
    step: impl std::future::Future<Output = Result<Outcome<T>, InferenceError>>,
) -> Result<Outcome<T>, Failure> {
    observer(&PipelineEvent::StepStarted { role });
    match step.await {
        Ok(outcome) => {
            observer(&PipelineEvent::StepFinished {
                role,
                calls: &outcome.calls,
            });
            Ok(outcome)
        }
        Err(error) => {
            observer(&PipelineEvent::StepFailed {
                role,
                error: &error,
            });
            let calls = task_orchestrator::pipeline::step_calls(&error).to_vec();
            let mut failure = Failure::from(error);
            failure.json["calls"] = serde_json::to_value(&calls).unwrap_or_default();
            Err(failure)
        }
    }
}

fn print_run(run: &PipelineRun) {
    let t = &run.task;
    println!("task {} — {} [{}]", t.id, t.title, t.status);
    if let Some(r) = &run.routing {
        println!(
            "routing: complexity {} → {:?}: {}",
            r.complexity.get(),
            r.route,
            r.reason
        );
    }
    if let Some(e) = &run.enhancement {
        println!(
            "enhanced: {}\n  {}",
            e.title.as_deref().unwrap_or(&t.title),
            e.description
        );
    }
    if let Some(q) = &run.comprehension_test {
        println!("comprehension test: {}", q.question);
        for o in &q.options {
            let mark = if q.answer.as_deref() == Some(o.as_str()) {
                "*"
            } else {
                " "
            };
            println!("  {mark} {o}");
        }
    }
    for s in &run.subtasks {
        println!("subtask {}: {}\n  {}", s.id, s.title, s.description);
    }
    for step in &run.steps {
        println!("{:<11}{}", step.role.as_str(), describe_calls(&step.calls));
    }
}

async fn run(args: TaskArgs, json: bool) -> Result<(), Failure> {
    let factory = factory(&args.choice)?;
    let task = task(&args)?;
    let orchestrator = factory
        .orchestrator()?
        .with_observer(progress(&factory, json));
    match orchestrator.run(task).await {
        Ok(run) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&run).unwrap_or_default());
            } else {
                print_run(&run);
            }
            Ok(())
        }
        Err(failure) => {
            if !json {
                print_run(&failure.partial);
            }
            let mut out = Failure::from(failure.error);
            out.json["failed_step"] = json!(failure.role);
            out.json["partial"] = serde_json::to_value(&*failure.partial).unwrap_or_default();
            out.text = format!(
                "the {} step failed: {}",
                failure.role,
                out.text.trim_start_matches("error: ")
            );
            Err(out)
        }
    }
}

/// The Candle hub models of a role's chain, and where each is cached (None: not cached).
fn hub_links(plan: &RolePlan, vars: &Vars) -> Vec<(String, Option<std::path::PathBuf>)> {
    let hub = HubSettings::from_vars(&vars.lookup());
    plan.links
        .iter()
        .filter(|l| l.provider == Provider::Candle)
        .filter_map(|l| {
            candle::cached_weights(&l.model, &hub)
                .ok()
                .map(|cached| (l.model.clone(), cached))
        })
        .collect()
}

/// The Candle model `role` runs: its chain's Candle link, else `CANDLE_MODEL`, else the
/// built-in default.
fn candle_model_for(role: ModelRole, factory: Option<&ProviderFactory>, vars: &Vars) -> String {
    factory
        .and_then(|f| {
            f.plan(role)
                .links
                .iter()
                .find(|l| l.provider == Provider::Candle)
                .map(|l| l.model.clone())
        })
        .or_else(|| vars.get(candle::MODEL_VAR))
        .or_else(|| role_default(Provider::Candle, role).map(str::to_owned))
        .unwrap_or_default()
}

async fn pull(args: PullArgs, json: bool) -> Result<(), Failure> {
    let vars = Vars::process_env();
    let models: Vec<String> = match (&args.model, &args.role) {
        (Some(model), _) => vec![model.clone()],
        (None, Some(role)) => {
            let role: ModelRole = role.parse().map_err(|_| {
                InferenceError::invalid_request(
                    "rigger",
                    format!("unknown role {role:?}; use router, decomposer, enhancer or tester"),
                )
            })?;
            let factory = ProviderFactory::from_vars(vars.clone()).ok();
            vec![candle_model_for(role, factory.as_ref(), &vars)]
        }
        (None, None) => {
            let factory = ProviderFactory::from_vars(vars.clone()).ok();
            let mut all: Vec<String> = ModelRole::ALL
                .iter()
                .map(|r| candle_model_for(*r, factory.as_ref(), &vars))
                .collect();
            all.dedup();
            all.sort();
            all.dedup();
            all
        }
    };
    let mut pulled = Vec::new();
    for model in models {
        let mut config = CandleConfig::from_vars(&|k| {
            if k == candle::MODEL_VAR {
                Some(model.clone())
            } else {
                vars.get(k)
            }
        })?;
        config.model = model.clone();
        let progress = if json {
            candle::no_progress()
        } else {
            candle::stderr_progress()
        };
        let files = candle::pull(&config, progress).await?;
        let path = match &files {
            ModelFiles::Gguf { weights, .. } => weights.clone(),
            ModelFiles::Safetensors { config, .. } => config.clone(),
        };
        if !json {
            println!("{model}: {}", path.display());
        }
        pulled.push(json!({"model": model, "path": path}));
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "pulled": pulled })).unwrap_or_default()
        );
    }
    Ok(())
}

async fn models(choice: Choice, json: bool) -> Result<(), Failure> {
    let factory = factory(&choice)?;
    let listed = task_orchestrator::adapters::provider_factory::list_models(factory.vars()).await;
    let hub = HubSettings::from_vars(&factory.vars().lookup());
    let cached = candle::cached_repos(&hub).await;
    if json {
        let value = json!({
            "hub_cache": match &cached {
                Ok(repos) => json!({
                    "dir": hub.cache_dir,
                    "repos": repos.iter().map(|r| json!({
                        "repo": r.repo,
                        "files": r.files.iter().map(|(f, size)| json!({"file": f, "bytes": size})).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                }),
                Err(e) => json!({"dir": hub.cache_dir, "error": error_json(e)}),
            },
            "roles": factory.plans(),
            "backends": listed.iter().map(|(p, r)| match r {
                Ok(models) => json!({"provider": p, "models": models}),
                Err(e) => json!({"provider": p, "error": error_json(e)}),
            }).collect::<Vec<_>>(),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
        return Ok(());
    }
    println!("roles:");
    for plan in factory.plans() {
        let chain = chain_text(plan);
        println!("  {:<11}{}", plan.role.as_str(), chain);
    }
    println!("\nbackends:");
    for (provider, result) in listed {
        match result {
            Ok(models) if models.is_empty() => println!("  {provider:<10}(no models)"),
            Ok(models) => {
                println!("  {provider}:");
                for m in models {
                    println!("    {m}");
                }
            }
            Err(e) => println!("  {provider:<10}unavailable: {e}"),
        }
    }
    println!("\nhub cache ({}):", hub.cache_dir.display());
    match cached {
        Ok(repos) if repos.is_empty() => println!("  (empty)"),
        Ok(repos) => {
            for repo in repos {
                for (file, size) in repo.files {
                    println!(
                        "  {}:{file}  {:.1} MB",
                        repo.repo,
                        size as f64 / 1_000_000.0
                    );
                }
            }
        }
        Err(e) => println!("  unreadable: {e}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_raw_answer_is_cut_where_printed_and_says_so() {
        let raw = "é".repeat(3 * MAX_PRINTED_RAW);
        let e = InferenceError::new(ErrorKind::MalformedOutput, "test", "not JSON")
            .with_raw_output(raw.clone());
        let failure = Failure::from(e);
        assert!(
            failure.text.len() < MAX_PRINTED_RAW + 1024,
            "stderr text is bounded"
        );
        assert!(
            failure
                .text
                .contains(&format!("of {} bytes shown]", raw.len()))
        );
        let error = &failure.json["error"];
        assert_eq!(error["raw_output_truncated"], true);
        assert_eq!(error["raw_output_bytes"], raw.len());
        let shown = error["raw_output"].as_str().unwrap_or_default();
        assert!(shown.len() <= MAX_PRINTED_RAW && raw.starts_with(shown));
    }

    #[test]
    fn a_short_raw_answer_is_printed_whole() {
        let e = InferenceError::new(ErrorKind::MalformedOutput, "test", "not JSON")
            .with_raw_output("{oops".to_owned());
        let failure = Failure::from(e);
        assert!(failure.text.ends_with("{oops"));
        assert_eq!(failure.json["error"]["raw_output"], "{oops");
        assert_eq!(failure.json["error"]["raw_output_truncated"], false);
    }

    #[test]
    fn a_servers_retry_after_reaches_the_message_and_the_json() {
        let e = InferenceError::new(ErrorKind::RateLimited, "openai", "429 Too Many Requests")
            .with_retry_after(Duration::from_secs(3600));
        let failure = Failure::from(e);
        assert!(
            failure.text.contains("retry after 3600 s"),
            "{}",
            failure.text
        );
        assert_eq!(failure.json["error"]["retry_after_secs"], 3600);
    }
}
