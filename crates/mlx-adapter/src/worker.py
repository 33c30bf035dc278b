# Rigger's MLX worker: one long-lived process that keeps mlx-lm models resident and serves
# generation requests as JSON lines (stdin: requests, stdout: replies), each an object tagged by
# "type" (the Rust side's wire.rs: Request and Reply). Prompts arrive as data, never as code.
# Protocol version below; the Rust side refuses a mismatch.
import json
import os
import queue
import sys
import threading
import time
import traceback

PROTOCOL = 3
# Deltas closer together than this go out as one line (the first always goes at once): each
# write wakes the reader, and on a 2-core machine those wake-ups cost ~10% of decode speed at
# ~1000 tokens/s. At 250 tokens/s or slower every token still goes out on its own.
COALESCE_S = 0.004
_out_lock = threading.Lock()


def emit(obj):
    line = json.dumps(obj, ensure_ascii=False)
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def fail(req_id, kind, message):
    emit({"type": "error", "id": req_id, "kind": kind, "message": message})


try:
    import mlx.core as mx
    import mlx_lm
    from mlx_lm.sample_utils import make_sampler
except Exception as e:  # reported in the handshake, so the Rust side can say what to install
    emit({"type": "unavailable", "protocol": PROTOCOL, "error": f"{type(e).__name__}: {e}"})
    sys.exit(3)

try:
    from importlib.metadata import version as _version
    MLX_VERSION, MLX_LM_VERSION = _version("mlx"), _version("mlx-lm")
except Exception:
    MLX_VERSION, MLX_LM_VERSION = getattr(mx, "__version__", "?"), getattr(mlx_lm, "__version__", "?")

# Constrained decoding (structured output) with llguidance, when the venv has it (setup-mlx
# installs it); without it the worker still serves text and says so in the handshake.
try:
    import numpy as np
    import llguidance
    import llguidance.hf
    import llguidance.numpy as llg_numpy
    LLGUIDANCE_VERSION = _version("llguidance")
except Exception:
    llguidance = None
    LLGUIDANCE_VERSION = None

models = {}  # model id -> (model, tokenizer, context_length)
guidance_tokenizers = {}  # model id -> llguidance.LLTokenizer (building one takes up to ~1 s)
grammars = {}  # (model id, format JSON) -> compiled grammar text, checked against the tokenizer
inbox = queue.Queue()
cancelled = set()


def reader():
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            msg = json.loads(line)
        except ValueError as e:
            fail(None, "protocol", f"not JSON: {e}")
            continue
        if msg.get("type") == "cancel":
            cancelled.add(msg.get("id"))
        else:
            inbox.put(msg)
    inbox.put(None)


def context_length(model):
    args = getattr(model, "args", None)
    for key in ("max_position_embeddings", "max_seq_len", "n_ctx"):
        value = getattr(args, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def load(req_id, model_id):
    if model_id in models:
        return models[model_id], None
    started = time.perf_counter()
    try:
        model, tokenizer = mlx_lm.load(model_id)
    except Exception as e:
        name = type(e).__name__
        text = str(e)
        missing = (
            not os.path.exists(model_id)
            and ("NotFound" in name or "not found" in text.lower() or "404" in text
                 or "offline" in text.lower() or "connect" in text.lower() or "resolve" in text.lower()
                 or isinstance(e, (FileNotFoundError, OSError)))
        )
        kind = "model_not_found" if missing else "model_load_failed"
        fail(req_id, kind, f"Failed to load model {model_id!r}: {name}: {text}")
        return None, None
    entry = (model, tokenizer, context_length(model))
    models[model_id] = entry
    return entry, time.perf_counter() - started


class StopMatcher:
    """Holds back text that could still become a stop sequence; never emits the stop itself."""

    def __init__(self, stops):
        self.stops = [s for s in stops if s]
        self.pending = ""

    def push(self, piece):
        if not self.stops:
            return piece, False
        self.pending += piece
        hits = [i for i in (self.pending.find(s) for s in self.stops) if i >= 0]
        if hits:
            text, self.pending = self.pending[: min(hits)], ""
            return text, True
        keep = 0
        for i in range(len(self.pending)):
            suffix = self.pending[i:]
            if any(s.startswith(suffix) for s in self.stops):
                keep = len(suffix)
                break
        text = self.pending[: len(self.pending) - keep]
        self.pending = self.pending[len(self.pending) - keep:]
        return text, False

    def finish(self):
        text, self.pending = self.pending, ""
        return text


def grammar_for(model_id, tokenizer, fmt):
    """The llguidance grammar for a request's format, compiled once per model and format.

    Returns (LLTokenizer, grammar) or raises ValueError saying what the grammar engine refused.
    Whitespace between JSON tokens is not allowed: with it, a weak model can spend its whole
    budget on blanks, and compact JSON is what every caller wants anyway.
    """
    lltok = guidance_tokenizers.get(model_id)
    if lltok is None:
        lltok = llguidance.hf.from_tokenizer(getattr(tokenizer, "_tokenizer", tokenizer))
        guidance_tokenizers[model_id] = lltok
    key = (model_id, json.dumps(fmt, sort_keys=True))
    grammar = grammars.get(key)
    if grammar is None:
        schema = fmt.get("schema") if fmt.get("type") == "json_schema" else {"type": "object"}
        grammar = llguidance.LLMatcher.grammar_from_json_schema(
            schema, defaults={"whitespace_flexible": False})
        is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar, lltok)
        if is_error:
            raise ValueError("; ".join(messages))
        grammars[key] = grammar
    return lltok, grammar


class GrammarMask:
    """An mlx-lm logits processor that only lets through tokens the grammar allows.

    mlx-lm calls it with every token so far (prompt included) and the next logits; the tokens
    sampled since the last call are fed to the matcher, then the mask is computed into a numpy
    bitmask and applied: with llguidance's Metal kernel on a GPU, with numpy on the CPU.
    """

    def __init__(self, lltok, grammar, prompt_len):
        self.matcher = llguidance.LLMatcher(lltok, grammar, log_level=0)
        self.seen = prompt_len
        self.bitmask = llg_numpy.allocate_token_bitmask(1, lltok.vocab_size)
        self.apply_on_gpu = None
        if mx.default_device() == mx.gpu:
            # Its Metal kernel; imported once per generation, not per token. (A plain
            # `import llguidance.mlx` here would make `llguidance` local to this method.)
            from llguidance.mlx import apply_token_bitmask
            self.apply_on_gpu = apply_token_bitmask
        self.mask_seconds = []

    def __call__(self, tokens, logits):
        started = time.perf_counter()
        new = tokens[self.seen:].tolist() if tokens.size > self.seen else []
        for token in new:
            if not self.matcher.consume_token(int(token)):
                raise RuntimeError(f"the grammar refused token {token}: {self.matcher.get_error()}")
        self.seen += len(new)
        llg_numpy.fill_next_token_bitmask(self.matcher, self.bitmask, 0)
        if self.apply_on_gpu is not None:
            masked = self.apply_on_gpu(logits, self.bitmask)
        else:
            vocab = logits.shape[-1]
            allowed = np.unpackbits(self.bitmask.view(np.uint8), bitorder="little")[:vocab]
            if allowed.shape[0] < vocab:  # the model's rows past the tokenizer's vocabulary
                allowed = np.concatenate([allowed, np.zeros(vocab - allowed.shape[0], np.uint8)])
            masked = mx.where(mx.array(allowed.astype(bool)), logits, -float("inf"))
        self.mask_seconds.append(time.perf_counter() - started)
        return masked

    def figures(self):
        """Per-token mask time in ms: p50 and p99 (None before any token)."""
        if not self.mask_seconds:
            return None
        ordered = sorted(self.mask_seconds)
        pick = lambda q: 1000.0 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]
        return {"mask_p50_ms": pick(0.5), "mask_p99_ms": pick(0.99), "masked_tokens": len(ordered)}


def generate(msg):
    req_id = msg["id"]
    received = time.perf_counter()
    entry, load_seconds = load(req_id, msg["model"])
    if entry is None:
        return
    model, tokenizer, ctx = entry
    emit({"type": "loaded", "id": req_id, "context_length": ctx, "load_seconds": load_seconds})
    try:
        prompt = tokenizer.apply_chat_template(msg["messages"], add_generation_prompt=True)
    except Exception as e:
        fail(req_id, "invalid_request", f"the chat template rejected the messages: {e}")
        return
    budget = int(msg["max_tokens"])
    if ctx is not None and len(prompt) + budget > ctx:
        fail(req_id, "context_length_exceeded",
             f"the prompt has {len(prompt)} tokens and the budget asks for {budget} more, "
             f"but {msg['model']} holds {ctx}")
        return
    if msg.get("seed") is not None:
        mx.random.seed(int(msg["seed"]))
    temp = msg.get("temperature")
    sampler = make_sampler(
        temp=0.0 if temp is None else float(temp),
        top_p=float(msg.get("top_p") or 0.0),
        top_k=int(msg.get("top_k") or 0),
    )
    processors = []
    exact = bool(msg.get("exact"))
    fmt = msg.get("format")
    grammar_mask = None
    if fmt is not None:
        if llguidance is None:
            fail(req_id, "unsupported",
                 "structured output needs llguidance in the worker's Python; "
                 "run `cargo xtask setup-mlx` or `pip install llguidance`")
            return
        if exact:
            fail(req_id, "invalid_request",
                 "an exact token budget cannot be combined with structured output: "
                 "the grammar ends the answer where the JSON ends")
            return
        try:
            lltok, grammar = grammar_for(msg["model"], tokenizer, fmt)
        except Exception as e:
            fail(req_id, "invalid_request",
                 f"the grammar engine (llguidance) cannot compile this JSON schema: {e}")
            return
        grammar_mask = GrammarMask(lltok, grammar, len(prompt))
        processors.append(grammar_mask)
    if exact:
        eos = list(getattr(tokenizer, "eos_token_ids", None) or [tokenizer.eos_token_id])

        def no_eos(tokens, logits):
            logits[:, eos] = -float("inf")
            return logits

        processors.append(no_eos)
        # mlx-lm stops on EOS ids itself; with them banned, only the budget ends generation.
    stops = StopMatcher([] if exact else msg.get("stop") or [])
    n = 0
    finish = "length"
    last = None
    first_token = None
    held = []  # text not yet sent (see COALESCE_S)
    sent_at = None

    def send():
        nonlocal sent_at
        if held:
            emit({"type": "delta", "id": req_id, "text": "".join(held)})
            held.clear()
            sent_at = time.perf_counter()

    for response in mlx_lm.stream_generate(
        model, tokenizer, prompt, max_tokens=budget, sampler=sampler, logits_processors=processors
    ):
        if req_id in cancelled:
            cancelled.discard(req_id)
            emit({"type": "cancelled", "id": req_id})
            return
        last = response
        if response.finish_reason == "stop" and response.token in (
            getattr(tokenizer, "eos_token_ids", None) or [tokenizer.eos_token_id]
        ):
            n += 1
            finish = "stop"
            break
        n += 1
        if first_token is None:
            first_token = time.perf_counter() - received
        text, stopped = stops.push(response.text)
        if text:
            held.append(text)
            if sent_at is None or time.perf_counter() - sent_at >= COALESCE_S:
                send()
        if stopped:
            finish = "stop_sequence"
            break
        if response.finish_reason is not None:
            finish = "stop" if response.finish_reason == "stop" else "length"
    rest = stops.finish()
    if rest:
        held.append(rest)
    send()
    if last is None:
        fail(req_id, "internal", "mlx-lm produced no tokens")
        return
    emit({
        "type": "done",
        "id": req_id,
        "stats": {
            "finish_reason": finish,
            "prompt_tokens": int(last.prompt_tokens),
            "prompt_tps": float(last.prompt_tps),
            "generation_tokens": n,
            "mlx_generation_tokens": int(last.generation_tokens),
            "generation_tps": float(last.generation_tps),
            "peak_memory_gb": float(getattr(last, "peak_memory", 0.0)),
            "time_to_first_token": first_token,
            "constraint": grammar_mask.figures() if grammar_mask is not None else None,
        },
    })


def main():
    threading.Thread(target=reader, daemon=True).start()
    emit({
        "type": "hello",
        "protocol": PROTOCOL,
        "mlx": MLX_VERSION,
        "mlx_lm": MLX_LM_VERSION,
        "device": str(mx.default_device()),
        "python": sys.version.split()[0],
        "llguidance": LLGUIDANCE_VERSION,
    })
    while True:
        msg = inbox.get()
        if msg is None:
            return
        kind = msg.get("type")
        try:
            if kind == "generate":
                if msg.get("id") in cancelled:
                    cancelled.discard(msg.get("id"))
                    continue
                generate(msg)
            elif kind == "load":
                entry, load_seconds = load(msg.get("id"), msg["model"])
                if entry is not None:
                    emit({"type": "loaded", "id": msg.get("id"), "context_length": entry[2],
                          "load_seconds": load_seconds})
            else:
                fail(msg.get("id"), "protocol", f"unknown request type {kind!r}")
        except Exception as e:
            print(traceback.format_exc(), file=sys.stderr, flush=True)
            fail(msg.get("id"), "internal", f"ERROR: {type(e).__name__}: {e}")


if __name__ == "__main__":
    main()
