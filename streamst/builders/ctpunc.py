"""Build a tiny CT-Transformer punctuation directory in FunASR's real format, offline.

Same layout and config keys as the hub model ``ct-punc``
(``iic/punc_ct-transformer_cn-en-common-vocab471067-large``): ``config.yaml`` with
``model: CTTransformer``, ``encoder: SANMEncoder``, ``tokenizer: CharTokenizer`` and the
real ``punc_list``; ``tokens.json`` (a JSON list, one token per id); ``model.pt`` (a
state dict). Only the sizes are tiny (32-dim, one block, about 0.7M parameters, mostly
the embedding table) and the weights random (seeded), so the predicted punctuation is
meaningless; loading, tokenisation and inference are the real code paths. Two output
biases are set by hand: the ``<unk>`` label is never predicted (FunASR would print it into
the text) and "no punctuation" is favoured, so marks are sparse as in real text.

The real large model also ships a ``jieba_usr_dict`` for word segmentation; this one is
character-level (the layout of ``punc_ct-transformer_zh-cn-common-vocab272727``), so
nothing needs ``jieba``.

Vocabulary: every CJK Unified Ideograph (U+4E00..U+9FFF), hiragana and katakana, ASCII
letters and digits, common English words and ``<unk>``. Words outside it (any capitalised
English word, for instance) map to ``<unk>``, which the tokenizer handles.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

__all__ = ["BUILDERS", "build_tiny", "config", "vocabulary", "PUNC_LIST"]

# Label set of the real models: id 1 is "no punctuation", 3 is the sentence end.
PUNC_LIST = ["<unk>", "_", "，", "。", "？", "、"]

NO_PUNC_PRIOR = 1.5  # logit bonus of "_" so that random weights punctuate sparsely

# Common English words (lower case, as CharTokenizer looks them up verbatim).
_EN_WORDS = """
a about after again all also am an and any are as at be because been before being both
but by can could did do does doing down during each few for from further had has have
having he her here hers herself him himself his how i if in into is it its itself just
me more most my myself no nor not now of off on once only or other our ours ourselves
out over own same she should so some such than that the their theirs them themselves then
there these they this those through to too under until up very was we were what when
where which while who whom why will with would you your yours yourself yourselves
hello world good morning today tomorrow yesterday weather nice day time people year way
thing man woman child life work week month go get make know think take see come want
look use find give tell ask seem feel try leave call new first last long great little
old big high different small large next early young important public bad able
translation speech language model stream audio text test sentence chinese english
japanese korean please thank thanks yes okay ok right left one two three four five six
seven eight nine ten hundred thousand million
""".split()


def vocabulary() -> list[str]:
    """The token list written to ``tokens.json`` (ids are list positions)."""
    special = ["<blank>", "<s>", "</s>"]
    cjk = [chr(c) for c in range(0x4E00, 0xA000)]
    kana = [chr(c) for c in range(0x3041, 0x3097)] + [chr(c) for c in range(0x30A1, 0x30FB)]
    ascii_ = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    words = [w for w in dict.fromkeys(_EN_WORDS) if len(w) > 1]
    fullwidth_punc = ["，", "。", "？", "、", "！", "；", "："]
    return special + fullwidth_punc + cjk + kana + ascii_ + words + ["<unk>"]


def config(dim: int = 32, heads: int = 2, blocks: int = 1) -> dict:
    """The ``config.yaml`` contents: the real keys, tiny sizes."""
    return {
        "model": "CTTransformer",
        "model_conf": {
            "ignore_id": 0,
            "embed_unit": dim,
            "att_unit": dim,
            "dropout_rate": 0.1,
            "punc_list": list(PUNC_LIST),
            "punc_weight": [1.0] * len(PUNC_LIST),
            "sentence_end_id": 3,
        },
        "encoder": "SANMEncoder",
        "encoder_conf": {
            "input_size": dim,
            "output_size": dim,
            "attention_heads": heads,
            "linear_units": 2 * dim,
            "num_blocks": blocks,
            "dropout_rate": 0.1,
            "positional_dropout_rate": 0.1,
            "attention_dropout_rate": 0.0,
            "input_layer": "pe",
            "pos_enc_class": "SinusoidalPositionEncoder",
            "normalize_before": True,
            "kernel_size": 11,
            "sanm_shfit": 0,
            "selfattention_layer_type": "sanm",
            "padding_idx": 0,
        },
        "tokenizer": "CharTokenizer",
        "tokenizer_conf": {"unk_symbol": "<unk>"},
    }


def build_tiny(path: Path, seed: int = 0) -> None:
    """Write a tiny CT-Transformer directory to ``path`` (deterministic for a ``seed``).

    Instantiates FunASR's own ``CTTransformer`` from the config so the state dict has
    exactly the keys and shapes the loader expects. About a second after FunASR is imported.
    """
    import yaml
    from funasr.models.ct_transformer.model import CTTransformer

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    cfg = config()
    vocab = vocabulary()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CTTransformer(
            encoder=cfg["encoder"],
            encoder_conf=cfg["encoder_conf"],
            vocab_size=len(vocab),
            **cfg["model_conf"],
        )
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    # Label priors (a trained model's would be similar): never "<unk>", mostly "_" (none).
    bias = sd["decoder.bias"]  # (len(PUNC_LIST),)
    bias[PUNC_LIST.index("<unk>")] = -1e4
    bias[PUNC_LIST.index("_")] += NO_PUNC_PRIOR
    torch.save(sd, path / "model.pt")
    (path / "tokens.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    with open(path / "config.yaml", "w", encoding="utf-8") as f:
        yaml.safe_dump(cfg, f, sort_keys=False, allow_unicode=True)


BUILDERS = {"ct-punc-tiny": build_tiny}
