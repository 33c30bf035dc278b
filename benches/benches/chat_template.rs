//! Prompt rendering: the Candle adapter's chat-template rendering (minijinja) of a role
//! conversation, alone and followed by tokenization with the model's tokenizer — the work done
//! before the first forward pass of every request.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use rigger_candle_adapter::template::ChatTemplate;
use rigger_ports::ChatMessage;
use tokenizers::Tokenizer;

/// A ChatML-style template with a system default and a loop, the shape most hub models ship.
const CHATML: &str = "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// What the pipeline's Decomposer sends: a system prompt and a task of a few hundred characters.
fn conversation() -> Vec<ChatMessage> {
    vec![
        ChatMessage::system(
            "You split a task into 3 to 5 concrete subtasks. Answer with JSON only: \
             {\"subtasks\": [{\"title\": string, \"description\": string}]}.",
        ),
        ChatMessage::user(
            "Build a command-line tool that reads a CSV file of transactions, groups them by \
             month and category, flags outliers more than three standard deviations from the \
             mean of their category, and writes a Markdown report with one table per month.",
        ),
    ]
}

fn rendering(c: &mut Criterion) {
    let messages = conversation();
    let mut group = c.benchmark_group("chat_template");
    for (name, source) in [
        ("zephyr", rigger_model_gen::CHAT_TEMPLATE),
        ("chatml", CHATML),
    ] {
        let template = ChatTemplate::new(Some(source.to_owned()), "<s>".into(), "</s>".into())
            .expect("template compiles");
        group.bench_function(format!("render/{name}"), |b| {
            b.iter(|| template.render(black_box(&messages)).expect("renders").text)
        });
    }
    let dir = rigger_model_gen::tiny_model().expect("tiny model");
    let tokenizer = Tokenizer::from_file(dir.join("tokenizer.json")).expect("tokenizer");
    let template = ChatTemplate::new(
        Some(rigger_model_gen::CHAT_TEMPLATE.to_owned()),
        "<s>".into(),
        "</s>".into(),
    )
    .expect("template compiles");
    group.bench_function("render_and_tokenize/zephyr", |b| {
        b.iter(|| {
            let text = template.render(black_box(&messages)).expect("renders").text;
            tokenizer.encode(text, false).expect("encodes").len()
        })
    });
    group.finish();
}

criterion_group!(benches, rendering);
criterion_main!(benches);
