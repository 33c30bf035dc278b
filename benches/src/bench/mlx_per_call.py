# The spec's per-call-subprocess method: a fresh interpreter per call that imports mlx-lm, loads
# the model, generates and exits. Same prompt and forced token count as every other row.
import json
import resource
import sys
import time

started = time.perf_counter()
import mlx_lm  # noqa: E402  (the import is part of what each call pays)
from mlx_lm.sample_utils import make_sampler  # noqa: E402

cfg = json.loads(sys.stdin.read())
imported = time.perf_counter()
model, tok = mlx_lm.load(cfg["model"])
loaded = time.perf_counter()
prompt = tok.apply_chat_template(cfg["messages"], add_generation_prompt=True)
eos = list(getattr(tok, "eos_token_ids", None) or [tok.eos_token_id])


def no_eos(tokens, logits):
    logits[:, eos] = -float("inf")
    return logits


last, count = None, 0
for r in mlx_lm.stream_generate(model, tok, prompt, max_tokens=int(cfg["gen_tokens"]),
                                sampler=make_sampler(temp=0.0), logits_processors=[no_eos]):
    count += 1
    last = r
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({
    "import_seconds": imported - started,
    "load_seconds": loaded - imported,
    "prompt_tokens": int(last.prompt_tokens),
    "prompt_tps": float(last.prompt_tps),
    "generation_tps": float(last.generation_tps),
    "generated": count,
    "peak_rss_bytes": rss if sys.platform == "darwin" else rss * 1024,
}), flush=True)
