use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rigger_domain::{
    ComplexityScore, ComprehensionTest, Decomposition, Enhancement, ModelRole, Route,
    RoutingDecision, SubtaskDraft, Task,
};
use rigger_ports::{
    ChatMessage, ComprehensionTestPort, InferenceError, Outcome, TaskDecompositionPort,
    TaskEnhancementPort, TaskRouterPort,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::chain::ModelChain;
use crate::settings::RoleSettings;
use crate::structured::call_json;

type Clock = fn() -> DateTime<Utc>;

fn task_block(task: &Task) -> String {
    let description = if task.description.trim().is_empty() {
        "(none)"
    } else {
        task.description.trim()
    };
    format!(
        "Task title: {}\nTask description: {}",
        task.title.trim(),
        description
    )
}

/// The longest strings (in characters) the schemas allow. Bounded so that a model under
/// constrained decoding, even one that never chooses to close a string, reaches the end of the
/// grammar within the role's token budget (`RoleSettings::for_role`).
pub mod bounds {
    pub const REASON: u32 = 160;
    pub const TITLE: u32 = 80;
    pub const DESCRIPTION: u32 = 360;
    pub const SUBTASK_TITLE: u32 = 60;
    pub const SUBTASK_DESCRIPTION: u32 = 160;
    pub const QUESTION: u32 = 160;
    pub const OPTION: u32 = 60;
}

/// A bounded string with something besides whitespace in it (the domain trims and rejects blank
/// text; the schema lets a constrained model produce only text the domain keeps).
fn text(max_length: u32) -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": max_length, "pattern": "\\S"})
}

fn parse<T: for<'de> Deserialize<'de>>(value: Value) -> Result<T, String> {
    serde_json::from_value(value).map_err(|e| format!("the JSON has the wrong shape: {e}"))
}

/// What the Router does when its model fails: nothing (the error is returned), or — only when the
/// caller asks for it — the complexity heuristic, with the failure named in the decision's reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RouterFallback {
    #[default]
    None,
    Heuristic,
}

/// The Router: scores the task's complexity (1–10) and picks enhance or decompose. The heuristic
/// score goes into the prompt as a hint.
#[derive(Debug, Clone)]
pub struct LlmRouter {
    chain: ModelChain,
    settings: RoleSettings,
    fallback: RouterFallback,
}

impl LlmRouter {
    pub fn new(chain: ModelChain) -> Self {
        Self {
            chain,
            settings: RoleSettings::for_role(ModelRole::Router),
            fallback: RouterFallback::None,
        }
    }

    pub fn with_settings(mut self, settings: RoleSettings) -> Self {
        self.settings = settings;
        self
    }

    pub fn with_fallback(mut self, fallback: RouterFallback) -> Self {
        self.fallback = fallback;
        self
    }

    /// The reason comes first: a small model that has said why decides better. The route is an
    /// enum and every string is bounded, so a constrained model ends within the budget.
    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "reason": text(bounds::REASON),
                "complexity": {"type": "integer", "minimum": ComplexityScore::MIN, "maximum": ComplexityScore::MAX},
                "route": {"type": "string", "enum": ["enhance", "decompose"]}
            },
            "required": ["reason", "complexity", "route"],
            "additionalProperties": false
        })
    }
}

#[derive(Deserialize)]
struct RouterAnswer {
    complexity: i64,
    route: Route,
    reason: String,
}

#[async_trait]
impl TaskRouterPort for LlmRouter {
    async fn route(&self, task: &Task) -> Result<Outcome<RoutingDecision>, InferenceError> {
        let estimate = ComplexityScore::estimate(&task.text());
        let messages = vec![
            ChatMessage::system(format!(
                "You route tasks in a task manager. Rate how complex the task is from {} (trivial) \
                 to {} (a project), and choose \"decompose\" when it should be split into \
                 subtasks (usually complexity {} or more) or \"enhance\" when it only needs a \
                 clearer description. Answer with one JSON object: \
                 {{\"reason\": <one short sentence>, \"complexity\": <integer>, \"route\": \"enhance\"|\"decompose\"}}.",
                ComplexityScore::MIN,
                ComplexityScore::MAX,
                RoutingDecision::DECOMPOSE_AT
            )),
            ChatMessage::user(format!(
                "{}\nA word-count heuristic rates it {} out of {}.",
                task_block(task),
                estimate.get(),
                ComplexityScore::MAX
            )),
        ];
        let answer = call_json(
            &self.chain,
            ModelRole::Router,
            messages,
            "routing",
            Self::schema(),
            &self.settings,
            |value| {
                let answer: RouterAnswer = parse(value)?;
                let complexity =
                    ComplexityScore::new(answer.complexity).map_err(|e| e.to_string())?;
                let reason = answer.reason.trim();
                if reason.is_empty() {
                    return Err("the reason is empty".to_owned());
                }
                Ok(RoutingDecision {
                    route: answer.route,
                    complexity,
                    reason: reason.to_owned(),
                })
            },
        )
        .await;
        match (answer, self.fallback) {
            (Ok(outcome), _) => Ok(outcome),
            (Err(err), RouterFallback::Heuristic) => {
                tracing::warn!(error = %err, "router model failed; using the heuristic as asked");
                Ok(Outcome {
                    value: RoutingDecision::from_score(
                        estimate,
                        format!("heuristic fallback (the router model failed: {err})"),
                    ),
                    calls: Vec::new(),
                })
            }
            (Err(err), RouterFallback::None) => Err(err),
        }
    }
}

/// The Enhancer: rewrites a task's description so it is clear and actionable.
#[derive(Debug, Clone)]
pub struct LlmEnhancer {
    chain: ModelChain,
    settings: RoleSettings,
    clock: Clock,
}

#[derive(Deserialize)]
struct EnhancerAnswer {
    #[serde(default)]
    title: Option<String>,
    description: String,
}

impl LlmEnhancer {
    pub fn new(chain: ModelChain) -> Self {
        Self {
            chain,
            settings: RoleSettings::for_role(ModelRole::Enhancer),
            clock: Utc::now,
        }
    }

    pub fn with_settings(mut self, settings: RoleSettings) -> Self {
        self.settings = settings;
        self
    }
}

#[async_trait]
impl TaskEnhancementPort for LlmEnhancer {
    async fn enhance(&self, task: &Task) -> Result<Outcome<Enhancement>, InferenceError> {
        let schema = json!({
            "type": "object",
            "properties": {
                "title": text(bounds::TITLE),
                "description": text(bounds::DESCRIPTION)
            },
            "required": ["description"],
            "additionalProperties": false
        });
        let messages = vec![
            ChatMessage::system(
                "You improve tasks in a task manager. Rewrite the task so that someone else could \
                 start on it: state the goal, the expected result and any constraints, in a few \
                 sentences. Keep the user's intent; invent no requirements. Answer with one JSON \
                 object: {\"title\": <a clearer title, optional>, \"description\": <the rewritten description>}.",
            ),
            ChatMessage::user(task_block(task)),
        ];
        let now = (self.clock)();
        call_json(
            &self.chain,
            ModelRole::Enhancer,
            messages,
            "enhancement",
            schema,
            &self.settings,
            |value| {
                let answer: EnhancerAnswer = parse(value)?;
                Enhancement::new(
                    task.id.clone(),
                    answer.title.map(|t| t.trim().to_owned()),
                    answer.description.trim(),
                    now,
                )
                .map_err(|e| e.to_string())
            },
        )
        .await
    }
}

/// The Decomposer: splits a task into 3–5 subtasks.
#[derive(Debug, Clone)]
pub struct LlmDecomposer {
    chain: ModelChain,
    settings: RoleSettings,
}

impl LlmDecomposer {
    /// The number of subtasks asked for (the domain allows 1–8; the pipeline wants 3–5).
    pub const SUBTASKS: std::ops::RangeInclusive<usize> = 3..=5;

    pub fn new(chain: ModelChain) -> Self {
        Self {
            chain,
            settings: RoleSettings::for_role(ModelRole::Decomposer),
        }
    }

    pub fn with_settings(mut self, settings: RoleSettings) -> Self {
        self.settings = settings;
        self
    }

    /// The Decomposer's answer: an optional short plan first (it helps small models), then
    /// 3–5 subtasks with bounded titles and descriptions.
    pub fn schema() -> Value {
        let (min, max) = (*Self::SUBTASKS.start(), *Self::SUBTASKS.end());
        json!({
            "type": "object",
            "properties": {
                "plan": text(bounds::REASON),
                "subtasks": {
                    "type": "array",
                    "minItems": min,
                    "maxItems": max,
                    "items": {
                        "type": "object",
                        "properties": {
                            "title": text(bounds::SUBTASK_TITLE),
                            "description": text(bounds::SUBTASK_DESCRIPTION)
                        },
                        "required": ["title", "description"],
                        "additionalProperties": false
                    }
                }
            },
            "required": ["subtasks"],
            "additionalProperties": false
        })
    }
}

#[derive(Deserialize)]
struct DecomposerAnswer {
    subtasks: Vec<SubtaskDraft>,
}

#[async_trait]
impl TaskDecompositionPort for LlmDecomposer {
    async fn decompose(&self, task: &Task) -> Result<Outcome<Decomposition>, InferenceError> {
        let (min, max) = (*Self::SUBTASKS.start(), *Self::SUBTASKS.end());
        let schema = Self::schema();
        let messages = vec![
            ChatMessage::system(format!(
                "You plan work in a task manager. Split the task into {min} to {max} subtasks that \
                 together complete it, in the order they should be done. Each subtask has a short \
                 distinct title and a one- or two-sentence description. Answer with one JSON \
                 object: {{\"plan\": <optional, one short sentence>, \"subtasks\": [{{\"title\": ..., \"description\": ...}}, ...]}}."
            )),
            ChatMessage::user(task_block(task)),
        ];
        call_json(
            &self.chain,
            ModelRole::Decomposer,
            messages,
            "decomposition",
            schema,
            &self.settings,
            |value| {
                let answer: DecomposerAnswer = parse(value)?;
                if !Self::SUBTASKS.contains(&answer.subtasks.len()) {
                    return Err(format!(
                        "expected {min} to {max} subtasks, got {}",
                        answer.subtasks.len()
                    ));
                }
                Decomposition::new(task.id.clone(), answer.subtasks).map_err(|e| e.to_string())
            },
        )
        .await
    }
}

/// The Tester: writes one multiple-choice question that checks the task was understood.
#[derive(Debug, Clone)]
pub struct LlmComprehensionTester {
    chain: ModelChain,
    settings: RoleSettings,
    clock: Clock,
}

impl LlmComprehensionTester {
    pub fn new(chain: ModelChain) -> Self {
        Self {
            chain,
            settings: RoleSettings::for_role(ModelRole::Tester),
            clock: Utc::now,
        }
    }

    pub fn with_settings(mut self, settings: RoleSettings) -> Self {
        self.settings = settings;
        self
    }
}

#[derive(Deserialize)]
struct TesterAnswer {
    question: String,
    options: Vec<String>,
    /// The correct option's number, from 1: a number the schema can bound, where the option's
    /// text could not be constrained to repeat one of the options.
    answer: usize,
}

impl LlmComprehensionTester {
    /// The number of options asked for (the domain allows 2–6).
    pub const OPTIONS: usize = 4;

    pub fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "question": text(bounds::QUESTION),
                "options": {"type": "array", "minItems": Self::OPTIONS, "maxItems": Self::OPTIONS, "items": text(bounds::OPTION)},
                "answer": {"type": "integer", "minimum": 1, "maximum": Self::OPTIONS}
            },
            "required": ["question", "options", "answer"],
            "additionalProperties": false
        })
    }
}

#[async_trait]
impl ComprehensionTestPort for LlmComprehensionTester {
    async fn comprehension_test(
        &self,
        task: &Task,
    ) -> Result<Outcome<ComprehensionTest>, InferenceError> {
        let options = Self::OPTIONS;
        let schema = Self::schema();
        let messages = vec![
            ChatMessage::system(format!(
                "You check that people understood a task before they start it. Write one \
                 multiple-choice question about the task's goal or constraints, with {options} \
                 distinct options, exactly one of them correct. Answer with one JSON object: \
                 {{\"question\": ..., \"options\": [...], \"answer\": <the number of the correct option, from 1>}}."
            )),
            ChatMessage::user(task_block(task)),
        ];
        let now = (self.clock)();
        call_json(
            &self.chain,
            ModelRole::Tester,
            messages,
            "comprehension_test",
            schema,
            &self.settings,
            |value| {
                let answer: TesterAnswer = parse(value)?;
                let correct = answer
                    .answer
                    .checked_sub(1)
                    .and_then(|i| answer.options.get(i))
                    .cloned()
                    .ok_or_else(|| {
                        format!(
                            "the answer is option {}, but there are {} options",
                            answer.answer,
                            answer.options.len()
                        )
                    })?;
                ComprehensionTest::new(
                    task.id.clone(),
                    answer.question.trim(),
                    answer.options,
                    Some(correct),
                    now,
                )
                .map_err(|e| e.to_string())
            },
        )
        .await
    }
}
