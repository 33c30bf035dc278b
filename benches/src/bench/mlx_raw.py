# Raw in-process mlx-lm, the reference the MLX adapter is held to: load once, warm up, then time
# stream_generate exactly as Rigger's worker runs it (greedy, EOS banned so exactly N tokens).
# Input: one JSON object on stdin. Output: one JSON object per line on stdout.
import json
import resource
import sys
import time

import mlx_lm
from mlx_lm.sample_utils import make_sampler

cfg = json.loads(sys.stdin.read())
n, runs = int(cfg["gen_tokens"]), int(cfg["runs"])


def emit(obj):
    print(json.dumps(obj), flush=True)


started = time.perf_counter()
model, tok = mlx_lm.load(cfg["model"])
load_seconds = time.perf_counter() - started
prompt = tok.apply_chat_template(cfg["messages"], add_generation_prompt=True)
eos = list(getattr(tok, "eos_token_ids", None) or [tok.eos_token_id])


def no_eos(tokens, logits):
    logits[:, eos] = -float("inf")
    return logits


def once():
    start = time.perf_counter()
    first, last, count = None, None, 0
    for r in mlx_lm.stream_generate(model, tok, prompt, max_tokens=n,
                                    sampler=make_sampler(temp=0.0), logits_processors=[no_eos]):
        count += 1
        if first is None:
            first = time.perf_counter() - start
        last = r
    return {
        "ttft": first,
        "wall": time.perf_counter() - start,
        "prompt_tokens": int(last.prompt_tokens),
        "prompt_tps": float(last.prompt_tps),
        "generation_tps": float(last.generation_tps),
        "generated": count,
    }


emit({"type": "loaded", "load_seconds": load_seconds, "prompt_tokens": len(prompt)})
emit({"type": "warmup", **once()})
for _ in range(runs):
    emit({"type": "run", **once()})
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
emit({"type": "done", "peak_rss_bytes": rss if sys.platform == "darwin" else rss * 1024})
