"""What a training run leaves behind: the merged model directory, its profile, the loss
plot and the final evaluation.

* ``model/``: a full ``save_pretrained`` directory of ``FunAsrNanoForConditionalGeneration``
  with the LoRA adapters merged into the decoder weights (in the base checkpoint's dtype), plus
  the base directory's tokenizer and processor files, so the loader (and transformers alone)
  reads it exactly as it reads the base model.
* ``profile.json``: the base profile with ``e2e`` pointing at ``model/``; every other role
  keeps its model with an absolute source, so ``--profile DIR/profile.json`` works from any
  directory with every command.
* ``loss.png``: training loss per step. ``eval.json``: chrF/BLEU of greedy offline decoding.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from streamst.profiles import ModelSpec, Profile
from streamst.sources import local_path

# Files of a save_pretrained directory that the trained model's own save replaces.
WEIGHT_FILES = ("config.json", "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def save_model(model, tokenizer, source: str, dest: Path, dtype) -> None:
    """Write ``model`` (cast to ``dtype``) with the base source's side files to ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    src = local_path(source)
    if src is not None and src.is_dir():
        for f in sorted(src.iterdir()):
            if f.is_file() and f.name not in WEIGHT_FILES and not f.name.startswith("model-"):
                shutil.copyfile(f, dest / f.name)
    else:  # a hub id: the tokenizer from the loaded object, the processor configs from the cache
        tokenizer.save_pretrained(dest)
        from transformers.utils import cached_file

        for name in ("preprocessor_config.json", "processor_config.json", "generation_config.json"):
            path = cached_file(source, name, _raise_exceptions_for_missing_entries=False)
            if path:
                shutil.copyfile(path, dest / name)
    model.to(dtype)
    model.save_pretrained(dest)
    model.float()


def _absolute(spec: ModelSpec) -> dict[str, Any]:
    source = spec.source
    if spec.is_store:
        source = str(Path(spec.resolve()).resolve())
    elif source and local_path(source) is not None:
        source = str(local_path(source).resolve())
    out: dict[str, Any] = {"kind": spec.kind, "source": source}
    if spec.options:
        out["options"] = dict(spec.options)
    return out


def trained_profile(base: Profile, model_dir: Path, *, name: str, description: str) -> dict[str, Any]:
    """The profile of a trained model: ``base`` with e2e = ``model_dir``, sources absolute."""
    assert base.e2e is not None
    out: dict[str, Any] = {"name": name, "description": description}
    for spec in base.specs():
        out[spec.role] = _absolute(spec)
    out["e2e"] = {"kind": base.e2e.kind, "source": str(model_dir.resolve()), "tasks": ["transcribe", "translate"]}
    if base.e2e.options:
        out["e2e"]["options"] = dict(base.e2e.options)
    return out


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def plot_loss(records: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    """Training loss per step (log scale) with its running mean over 10 steps."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    steps = [r["step"] for r in records]
    loss = [r["loss"] for r in records]
    fig = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(steps, loss, lw=0.8, alpha=0.5, label="batch loss")
    if len(loss) >= 10:
        mean = [sum(loss[max(0, i - 9) : i + 1]) / len(loss[max(0, i - 9) : i + 1]) for i in range(len(loss))]
        ax.plot(steps, mean, lw=1.6, label="mean of 10 steps")
    ax.set_xlabel("step")
    ax.set_ylabel("target-token cross-entropy")
    if loss and min(loss) > 0:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(str(path))


def evaluate_offline(speech, items, *, max_new_tokens: int) -> dict[str, Any]:
    """Greedy offline decoding (``FunAsrNanoSpeech.generate``) of every item, scored against
    its reference: chrF over all lines, chrF and BLEU per direction."""
    from streamst.metrics.quality import bleu, bleu_tokenizer, chrf
    from streamst.training.data import load_samples

    rows = []
    for item in items:
        hyp = speech.generate(load_samples(item), "translate", item.src_lang, item.tgt_lang,
                              max_new_tokens=max_new_tokens).strip()
        rows.append({"id": item.id, "src_lang": item.src_lang, "tgt_lang": item.tgt_lang, "reference": item.reference,
                     "hypothesis": hyp})
    directions: dict[str, dict[str, Any]] = {}
    for pair in sorted({f"{r['src_lang']}-{r['tgt_lang']}" for r in rows}):
        sel = [r for r in rows if f"{r['src_lang']}-{r['tgt_lang']}" == pair]
        hyps, refs = [r["hypothesis"] for r in sel], [r["reference"] for r in sel]
        tok = bleu_tokenizer(sel[0]["tgt_lang"])
        directions[pair] = {"n": len(sel), "chrF": round(chrf(hyps, refs), 2),
                            "BLEU": round(bleu(hyps, refs, tokenize=tok), 2), "sacrebleu_tokenizer": tok}
    return {
        "decoding": "greedy, offline (whole utterance), FunAsrNanoSpeech.generate",
        "n": len(rows),
        "chrF": round(chrf([r["hypothesis"] for r in rows], [r["reference"] for r in rows]), 2),
        "directions": directions,
        "utterances": rows,
    }
