"""``streamst train --task mt``: train the simultaneous *text* decoder (the ``simul`` path's
Qwen) on source/reference pairs, with the inference prompt.

Examples are built with :class:`streamst.mt.qwen.PromptBuilder`, the prompt the simul path
decodes with: ChatML head, the source (or a source prefix), the fixed tail, then the target
and ``<|im_end|>``; the loss is on the target only. As in the end-to-end recipe
(:func:`streamst.training.data.build_examples`), each item also gives ``prefix_pairs``
*prefix pairs*: the first ``m`` source words with the first ``floor(m / M * units)`` target
units, which is what the decoder is asked mid-utterance.

**Vocabulary pruning** (why this trains in minutes on two cores): a synthetic corpus uses a
few thousand of Qwen's 151,936 tokens. Training runs on a model whose embedding (tied with
the output projection) holds only the tokens that occur in the training sequences; the loss
is the *full*-vocabulary cross-entropy of the saved model, in which every other token's
embedding row is zero, hence its logit exactly 0: ``logsumexp`` over the kept logits plus
``log(N_other)`` for the rest. The saved model is an ordinary full-vocabulary
``Qwen3ForCausalLM`` (rows scattered back), loaded and decoded by the unchanged inference code.

DIR gets ``model/``, ``profile.json`` (the base profile with ``mt`` = the trained model),
``train_log.jsonl``, ``loss.png`` and ``eval.json`` (greedy offline decoding of ``--eval``).
No checkpoints or resume: a run is minutes; an interrupted run leaves only ``DIR.partial``.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from streamst.errors import UserError
from streamst.text import join_units, split_units
from streamst.training.vocab import full_vocab_cross_entropy

IGNORE = -100


@dataclass(frozen=True)
class TextMTConfig:
    steps: int = 2000
    batch_size: int = 32
    lr: float | None = None  # None: 0.32 / hidden (as TrainConfig)
    warmup_steps: int = 100
    prefix_pairs: int = 2
    source_lm: float = 0.0  # source-continuation rows per pair (the reorder-aware policy's prompt)
    seed: int = 0
    arch: tuple[int, int] | None = None  # (hidden, layers): a fresh random model of that size; None: the profile's
    eval_limit: int | None = 200  # items of the eval manifest decoded at the end (None: all)
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.prefix_pairs < 0 or self.source_lm < 0:
            raise ValueError("--steps and --batch-size must be >= 1, --prefix-pairs and --source-lm >= 0")
        if self.arch is not None and (self.arch[0] % 32 or self.arch[1] < 1):
            raise ValueError(f"--mt-arch takes HIDDEN x LAYERS with HIDDEN a multiple of 32, got {self.arch}")


def parse_arch(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        h, layers = (int(x) for x in text.lower().split("x"))
    except ValueError as e:
        raise UserError(f"--mt-arch takes HIDDENxLAYERS such as 128x4, got {text!r}") from e
    return h, layers


@dataclass(frozen=True)
class Pair:
    src_lang: str
    tgt_lang: str
    source: str
    reference: str
    words: tuple[str, ...]  # source words (prefix cut points)
    reorder: int | None = None  # the item's longest reorder (source words), when the manifest has it


def read_pairs(path: str | Path) -> list[Pair]:
    """Text pairs from a manifest (``source``, ``reference``, ``src_lang``, ``tgt_lang``; ``words`` optional)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such manifest")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            src, ref = str(r["source"]), str(r["reference"])
            words = tuple(r.get("words") or split_units(src, r["src_lang"]))
            d = r.get("reorder_distance")
            out.append(Pair(r["src_lang"], r["tgt_lang"], src, ref, words, None if d is None else int(d)))
        except (ValueError, KeyError, TypeError) as e:
            raise UserError(f"{path}:{n}: a text pair needs source, reference, src_lang, tgt_lang ({e})") from e
    if not out:
        raise UserError(f"{path}: no pairs")
    return out


SOURCE_LM = "source"  # tgt_lang of a source-continuation row: the plain source, no chat template


def examples(pairs: list[Pair], prefix_pairs: int, seed: int, source_lm: float = 0.0) -> list[tuple[Pair, str, str]]:
    """(pair, source text, target text): whole pairs, stratified prefix pairs and
    source-continuation rows.

    A prefix pair's target has no ``<|im_end|>`` (:class:`Encoded`): the proportional target
    prefix is where a proposal for that source prefix may go, not where the translation ends;
    training it to end there teaches the decoder to stop early on whole sentences too.

    ``source_lm``: per pair, that many rows (the fraction's expectation) of the *source alone*
    as plain text (:data:`SOURCE_LM`), the prompt :meth:`QwenTranslator.predict_source` samples
    continuations under, so the reorder-aware policy's predicted continuations are source text.
    A source text repeated in the manifest gives at most one such row."""
    rng = random.Random(seed)
    out = []
    lm_seen: set[str] = set()
    for p in pairs:
        out.append((p, p.source, p.reference))
        units = split_units(p.reference, p.tgt_lang)
        n = len(p.words)
        for j in range(prefix_pairs):
            if n < 2:
                break
            m = max(1, min(n - 1, int(n * (0.1 + 0.8 * (j + rng.random()) / prefix_pairs))))
            k = int(len(units) * m / n)
            if k:  # an empty target prefix has nothing to learn (and a batch of them no loss)
                out.append((p, join_units(list(p.words[:m]), p.src_lang), join_units(units[:k], p.tgt_lang)))
        if source_lm > 0 and p.source not in lm_seen and rng.random() < source_lm:
            lm_seen.add(p.source)
            out.append((Pair(p.src_lang, SOURCE_LM, p.source, "", p.words), p.source, ""))
    return out


class Encoded:
    """Token sequences of the examples, in the pruned vocabulary's ids, grouped by direction.

    A row is the part after the prompt head (source, tail, target, ``<|im_end|>``); the head
    (system prompt and user header, the same for every example of a direction) is run once
    per batch and its K/V shared by the batch's rows (:func:`pruned_loss`)."""

    def __init__(self, tokenizer, exs: list[tuple[Pair, str, str]], im_end: int) -> None:
        from streamst.mt.prompt import encode_text
        from streamst.mt.qwen import PromptBuilder

        prompts: dict[tuple[str, str], Any] = {}
        rows: list[tuple[tuple[str, str], list[int], int]] = []  # (direction, full-vocab ids, target start)
        for p, src, tgt in exs:
            key = (p.src_lang, p.tgt_lang)
            if p.tgt_lang == SOURCE_LM:  # plain source text, loss on every token after the first
                prompts.setdefault(key, None)
                rows.append((key, encode_text(tokenizer, src, special=False) + [im_end], 1))
                continue
            if key not in prompts:
                prompts[key] = PromptBuilder(tokenizer, *key)
            pb = prompts[key]
            head = encode_text(tokenizer, src, special=False) + list(pb.tail.ids)
            whole = src == p.source and tgt == p.reference
            rows.append((key, head + encode_text(tokenizer, tgt, special=False) + ([im_end] if whole else []),
                         len(head)))
        ids = sorted({t for _, seq, _ in rows for t in seq}
                     | {t for pb in prompts.values() if pb is not None for t in pb.head.ids})
        self.kept = torch.tensor(ids, dtype=torch.long)  # pruned id -> full id
        self.index = {t: i for i, t in enumerate(ids)}
        self.heads = {k: torch.tensor([self.index[t] for t in pb.head.ids] if pb is not None else [], dtype=torch.long)
                      for k, pb in prompts.items()}
        self.rows = [(k, [self.index[t] for t in seq], start) for k, seq, start in rows]
        self.by_direction = {k: [i for i, r in enumerate(self.rows) if r[0] == k] for k in prompts}

    def batch(self, idx: list[int], pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(head ids (P,), rest ids (B, L), labels (B, L), attention mask (B, L)); one direction."""
        rows = [self.rows[i] for i in idx]
        keys = {k for k, _, _ in rows}
        if len(keys) != 1:
            raise ValueError("a batch holds one direction")
        length = max(len(s) for _, s, _ in rows)
        ids = torch.full((len(rows), length), pad, dtype=torch.long)
        labels = torch.full((len(rows), length), IGNORE, dtype=torch.long)
        att = torch.zeros(len(rows), length, dtype=torch.long)
        for r, (_, seq, start) in enumerate(rows):
            ids[r, : len(seq)] = torch.tensor(seq)
            labels[r, start : len(seq)] = torch.tensor(seq[start:])
            att[r, : len(seq)] = 1
        return self.heads[keys.pop()], ids, labels, att


def _config(base_config, arch: tuple[int, int] | None, vocab: int):
    from transformers import Qwen3Config

    d = base_config.to_dict()
    if arch is not None:
        h, layers = arch
        heads = max(2, h // 32)
        d.update(hidden_size=h, num_hidden_layers=layers, num_attention_heads=heads,
                 num_key_value_heads=max(1, heads // 2), head_dim=32, intermediate_size=3 * h,
                 max_window_layers=layers, initializer_range=0.02, layer_types=None)
    d.update(vocab_size=vocab, tie_word_embeddings=True)
    for k in ("architectures", "model_type", "transformers_version", "dtype", "torch_dtype"):
        d.pop(k, None)
    return Qwen3Config(**d)


def pruned_loss(model, head, ids, labels, att, n_other: int, shared: bool = True) -> tuple[torch.Tensor, int]:
    """Full-vocabulary cross-entropy of the target tokens (the pruned tokens' logits are 0).

    ``shared``: the head runs once (batch 1) and its K/V are repeated for the batch's rows, the
    same computation as running ``head + row`` per row (``tests/test_quality.py`` checks it)."""
    from transformers import DynamicCache

    b, n = ids.shape[0], head.numel()
    if shared and n:
        out = model.model(input_ids=head[None], use_cache=True, past_key_values=DynamicCache(config=model.config))
        cache = out.past_key_values
        cache.batch_repeat_interleave(b)
        full_att = torch.cat([torch.ones(b, n, dtype=att.dtype), att], dim=1)
        pos = torch.arange(n, n + ids.shape[1])[None].expand(b, -1)
        hidden = model.model(input_ids=ids, attention_mask=full_att, past_key_values=cache, position_ids=pos,
                             use_cache=True).last_hidden_state  # (B, L, H)
    else:
        full = torch.cat([head[None].expand(b, -1), ids], dim=1)
        full_att = torch.cat([torch.ones(b, n, dtype=att.dtype), att], dim=1)
        hidden = model.model(input_ids=full, attention_mask=full_att).last_hidden_state[:, n:]
    shifted = labels[:, 1:]
    keep = shifted != IGNORE
    logits = model.lm_head(hidden[:, :-1][keep]).float()  # (N, V_kept)
    return full_vocab_cross_entropy(logits, shifted[keep], n_other), int(keep.sum())


def expand(small, kept: torch.Tensor, full_vocab: int, base_config):
    """The full-vocabulary model: the small model's weights, embedding rows scattered back."""
    from transformers import Qwen3ForCausalLM

    cfg = _config(base_config, None, full_vocab)
    cfg.update({k: v for k, v in small.config.to_dict().items()
                if k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                         "head_dim", "intermediate_size", "max_window_layers", "layer_types")})
    with torch.device("meta"):
        full = Qwen3ForCausalLM(cfg)
    state = {k: v for k, v in small.state_dict().items() if "embed_tokens" not in k and "lm_head" not in k}
    emb = torch.zeros(full_vocab, small.config.hidden_size)
    emb[kept] = small.model.embed_tokens.weight.detach()
    state["model.embed_tokens.weight"] = emb
    full.load_state_dict(state, strict=False, assign=True)
    full.tie_weights()
    return full


def evaluate(model_dir: Path, pairs: list[Pair]) -> dict[str, Any]:
    """Greedy offline translation of every pair with the inference code (``QwenTranslator``)."""
    from streamst.metrics.quality import bleu, bleu_tokenizer, chrf
    from streamst.mt.qwen import QwenOptions, QwenTranslator
    from streamst.corpus.grammar import BUCKETS

    tr = QwenTranslator(str(model_dir), QwenOptions(local_files_only=True))
    rows = [{"src_lang": p.src_lang, "tgt_lang": p.tgt_lang, "source": p.source, "reference": p.reference,
             "hypothesis": tr.translate(p.source, p.src_lang, p.tgt_lang, max_new_tokens=96).strip()} for p in pairs]
    directions = {}
    for pair in sorted({f"{r['src_lang']}-{r['tgt_lang']}" for r in rows}):
        sel = [r for r in rows if f"{r['src_lang']}-{r['tgt_lang']}" == pair]
        hyps, refs = [r["hypothesis"] for r in sel], [r["reference"] for r in sel]
        directions[pair] = {"n": len(sel), "chrF": round(chrf(hyps, refs), 2),
                            "BLEU": round(bleu(hyps, refs, tokenize=bleu_tokenizer(sel[0]["tgt_lang"])), 2)}
    for r, p in zip(rows, pairs):
        r["reorder_distance"] = p.reorder
    for pair, d in directions.items():
        d["buckets"] = {}
        for name, lo, hi in BUCKETS:
            sel = [r for r in rows if f"{r['src_lang']}-{r['tgt_lang']}" == pair and r["reorder_distance"] is not None
                   and lo <= r["reorder_distance"] <= hi]
            if sel:
                d["buckets"][name] = {"n": len(sel), "chrF": round(chrf([r["hypothesis"] for r in sel],
                                                                        [r["reference"] for r in sel]), 2)}
    return {"decoding": "greedy, offline (whole sentence), QwenTranslator.translate", "n": len(rows),
            "chrF": round(chrf([r["hypothesis"] for r in rows], [r["reference"] for r in rows]), 2),
            "directions": directions, "utterances": rows}


def train(manifest: str | Path, profile: str, out: str | Path, config: TextMTConfig, *,
          eval_manifest: str | Path | None = None, force: bool = False,
          log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Train, save, evaluate and publish ``out``; return the summary."""
    from transformers import AutoTokenizer, Qwen3ForCausalLM

    from streamst.profiles import load_profile
    from streamst.training.artifacts import _absolute, plot_loss, save_model, write_json

    pairs = read_pairs(manifest)
    eval_pairs = read_pairs(eval_manifest) if eval_manifest else pairs
    prof = load_profile(profile)
    if prof.mt is None or prof.mt.kind != "qwen":
        raise UserError(f"profile '{prof.name}' has no qwen mt model to train (use --profile tiny)")
    source = prof.require(prof.mt)
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    if out.exists() and not force:
        raise UserError(f"{out} already exists; choose another --out, or --force to replace it")
    if config.threads:
        torch.set_num_threads(config.threads)
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(source)
    base = Qwen3ForCausalLM.from_pretrained(source, dtype=torch.float32)
    im_end = int(tokenizer.convert_tokens_to_ids("<|im_end|>"))
    data = Encoded(tokenizer, examples(pairs, config.prefix_pairs, config.seed, config.source_lm), im_end)
    full_vocab = base.config.vocab_size
    n_other = full_vocab - len(data.kept)
    cfg = _config(base.config, config.arch, len(data.kept))
    model = Qwen3ForCausalLM(cfg)
    if config.arch is None:  # start from the profile's weights
        state = {k: v for k, v in base.state_dict().items() if "embed_tokens" not in k and "lm_head" not in k}
        state["model.embed_tokens.weight"] = base.model.embed_tokens.weight.detach()[data.kept].clone()
        model.load_state_dict(state, strict=False)
        model.tie_weights()
    del base
    model.train()
    hidden = cfg.hidden_size
    peak = config.lr if config.lr is not None else 0.32 / hidden
    opt = torch.optim.AdamW(model.parameters(), lr=peak, weight_decay=0.0)
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"training {n_params:,} parameters (hidden {hidden}, {cfg.num_hidden_layers} layers, {len(data.kept)} of "
        f"{full_vocab} tokens kept) on {len(data.rows)} examples, {config.steps} steps, lr {peak:.3g}")
    g = torch.Generator().manual_seed(config.seed)
    directions = sorted(data.by_direction)
    orders: dict[tuple[str, str], list[list[int]]] = {k: [] for k in directions}
    pick = random.Random(config.seed)
    weights = [len(data.by_direction[k]) for k in directions]  # batches in proportion to the rows
    records = []
    pad = 0
    t0 = time.perf_counter()
    warm = min(config.warmup_steps, config.steps // 4)
    with open(partial / "train_log.jsonl", "w", encoding="utf-8") as flog:
        for step in range(config.steps):
            lr = peak * (step + 1) / (warm + 1) if step < warm else peak * max(0.0, 1 - (step - warm) / max(1, config.steps - warm))
            for group in opt.param_groups:
                group["lr"] = lr
            key = pick.choices(directions, weights)[0]  # one direction per batch (one shared head)
            if not orders[key]:
                orders[key] = _length_batches(data, key, config.batch_size, g)
            idx = orders[key].pop()
            loss, tokens = pruned_loss(model, *data.batch(idx, pad), n_other)
            if not tokens:  # cannot happen with the rows of examples(); never step on a NaN
                continue
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            rec = {"step": step + 1, "loss": round(float(loss), 6), "lr": lr,
                   "seconds": round(time.perf_counter() - t0, 3), "tokens": tokens}
            records.append(rec)
            flog.write(json.dumps(rec) + "\n")
            if (step + 1) % 100 == 0 or step == 0:
                flog.flush()
                log(f"step {step + 1}/{config.steps} loss {rec['loss']:.4f} ({rec['seconds']:.0f} s)")
    train_seconds = time.perf_counter() - t0
    model.eval()
    full = expand(model, data.kept, full_vocab, cfg)
    model_dir = partial / "model"
    save_model(full, tokenizer, source, model_dir, torch.float32)
    prof_json: dict[str, Any] = {"name": out.name, "description": (
        f"profile '{prof.name}' with its mt model trained by `streamst train --task mt` on {Path(manifest).resolve()} "
        f"({config.steps} steps); the other models are the base profile's")}
    for spec in prof.specs():
        prof_json[spec.role] = _absolute(spec)
    prof_json["mt"] = {"kind": "qwen", "source": str((out / "model").resolve())}
    write_json(partial / "profile.json", prof_json)
    plot_loss(records, partial / "loss.png", f"streamst train --task mt: {out.name}")
    sel = eval_pairs if config.eval_limit is None else _spread(eval_pairs, config.eval_limit)
    log(f"evaluating on {len(sel)} pairs (greedy offline decoding)")
    evaluation = evaluate(model_dir, sel)
    write_json(partial / "eval.json", evaluation)
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)
    # the profile names out/model: rewrite the saved config's path-free files only
    return {"type": "summary", "task": "mt", "out": str(out), "profile": str(out / "profile.json"),
            "steps": config.steps, "examples": len(data.rows), "params": n_params, "kept_tokens": len(data.kept),
            "loss_first": records[0]["loss"], "loss_last": records[-1]["loss"],
            "train_seconds": round(train_seconds, 1), "config": asdict(config),
            "eval": {k: evaluation[k] for k in ("n", "chrF", "directions")}}


def _length_batches(data: Encoded, key: tuple[str, str], size: int, g: torch.Generator) -> list[list[int]]:
    """One epoch of ``key``'s rows as batches of similar length (less padding): shuffled,
    sorted by length within chunks of 50 batches, the batches shuffled again."""
    pool = data.by_direction[key]
    perm = [pool[i] for i in torch.randperm(len(pool), generator=g).tolist()]
    batches = []
    chunk = 50 * size
    for c in range(0, len(perm), chunk):
        part = sorted(perm[c : c + chunk], key=lambda i: len(data.rows[i][1]))
        batches += [part[i : i + size] for i in range(0, len(part), size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]


def _spread(pairs: list[Pair], n: int) -> list[Pair]:
    """``n`` pairs spread evenly over the list (both directions of a two-direction manifest)."""
    if len(pairs) <= n:
        return pairs
    step = len(pairs) / n
    return [pairs[int(i * step)] for i in range(n)]
