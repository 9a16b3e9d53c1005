#!/usr/bin/env python3
"""Write Tests/RematTests/Fixtures/minilm_long_text.json (deterministic; run once, output committed).

  scripts/fetch_minilm.sh                        # model folder -> .cache/minilm
  python3 scripts/make_minilm_long_fixture.py [MODEL_DIR]

A text longer than all-MiniLM-L6-v2's max_seq_length (256 tokens, sentence_bert_config.json) and
its sentence-transformers embedding: what `remat embed` must equal once it truncates as
sentence-transformers does (before, Remat truncated at 512 positions and differed).
Requires (never package dependencies): torch, sentence-transformers.
"""
import json
import os
import platform
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "RematTests", "Fixtures", "minilm_long_text.json")

PARAGRAPH = (
    "Activation checkpointing trades compute for memory: instead of keeping every intermediate tensor "
    "for the backward pass, a training step keeps a few and recomputes the rest when they are needed. "
    "Planners such as mu-TWO decide per operation what to keep, what to recompute, and what to move "
    "to slower memory, under a budget the user sets. "
)


def main():
    model_dir = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("REMAT_MINILM_DIR", os.path.join(ROOT, ".cache", "minilm"))
    import torch
    import sentence_transformers
    torch.set_grad_enabled(False)
    st = sentence_transformers.SentenceTransformer(model_dir, device="cpu")
    text = PARAGRAPH * 8
    tokens = len(st.tokenizer(text)["input_ids"])
    assert tokens > st.max_seq_length, (tokens, st.max_seq_length)
    emb = st.encode([text], convert_to_tensor=True, normalize_embeddings=True).float()[0]
    out = {
        "made_by": "scripts/make_minilm_long_fixture.py",
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "sentence_transformers": sentence_transformers.__version__},
        "max_seq_length": st.max_seq_length,
        "tokens": tokens,
        "text": text,
        "embedding": [float(f"{x:.7g}") for x in emb.tolist()],
    }
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"wrote {OUT}: {tokens} tokens, max_seq_length {st.max_seq_length}")


if __name__ == "__main__":
    main()
