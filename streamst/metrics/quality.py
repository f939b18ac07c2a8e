"""Translation quality: BLEU and chrF (sacrebleu), optional COMET, and quality retention.

Quality retention = quality(streaming) / quality(offline cascade) on the same audio.
Without references, the agreement chrF(streaming, cascade) -- the cascade output taken as
the reference -- is reported instead, as a *reference-free proxy*; :class:`QualityReport`
says which in its ``basis`` field.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from sacrebleu.metrics.bleu import BLEU
from sacrebleu.metrics.chrf import CHRF

from streamst.errors import UserError

log = logging.getLogger(__name__)

QualityBasis = Literal["reference", "cascade-agreement"]
BASIS_NOTE = {
    "reference": "scored against references",
    "cascade-agreement": "no references: chrF of streaming output against the offline cascade "
    "output (reference-free proxy, not a quality score)",
}


def bleu_tokenizer(tgt_lang: str | None) -> str:
    """The sacrebleu tokenizer for a target language.

    ``zh``/``yue`` -> ``zh``; ``ja`` -> ``ja-mecab`` when MeCab is importable, else
    ``char`` (said in the log); otherwise sacrebleu's default ``13a``.
    """
    lang = (tgt_lang or "").split("-")[0].lower()
    if lang in ("zh", "yue"):
        return "zh"
    if lang == "ja":
        if importlib.util.find_spec("MeCab") is not None and importlib.util.find_spec("ipadic") is not None:
            return "ja-mecab"
        log.info("MeCab is not installed: BLEU for Japanese uses the 'char' tokenizer")
        return "char"
    return "13a"


def bleu(hypotheses: Sequence[str], references: Sequence[str], *, tokenize: str = "13a") -> float:
    """Corpus BLEU (0-100), one reference per hypothesis, as SimulEval's ``BLEU`` scorer."""
    _same_length(hypotheses, references)
    return BLEU(tokenize=tokenize).corpus_score(list(hypotheses), [list(references)]).score


def chrf(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus chrF (0-100, sacrebleu defaults: character 6-grams, beta 2, no word n-grams)."""
    _same_length(hypotheses, references)
    return CHRF().corpus_score(list(hypotheses), [list(references)]).score


def comet(
    sources: Sequence[str],
    hypotheses: Sequence[str],
    references: Sequence[str],
    *,
    model_path: str | Path | None,
    batch_size: int = 8,
) -> float:
    """COMET system score from a *local* checkpoint; never downloads.

    Raises :class:`UserError` when the ``comet`` package (unbabel-comet) is missing or
    ``model_path`` is not an existing checkpoint file (``.../checkpoints/model.ckpt``).
    """
    if importlib.util.find_spec("comet") is None:
        raise UserError("COMET needs the 'unbabel-comet' package, which is not installed")
    if model_path is None or not Path(model_path).is_file():
        raise UserError(
            f"COMET needs a local checkpoint file (.../checkpoints/model.ckpt); got {model_path}"
        )
    _same_length(hypotheses, references)
    _same_length(sources, hypotheses)
    import comet as comet_lib  # optional dependency, imported only when asked for

    model = comet_lib.load_from_checkpoint(str(model_path))
    data = [{"src": s, "mt": h, "ref": r} for s, h, r in zip(sources, hypotheses, references)]
    out = model.predict(data, batch_size=batch_size, gpus=0, progress_bar=False)
    return float(out.system_score)


def retention(streaming: float, offline: float) -> float | None:
    """quality(streaming) / quality(offline); ``None`` when the offline score is 0."""
    return streaming / offline if offline > 0 else None


@dataclass(frozen=True)
class QualityReport:
    """Quality of one setting's streaming output, and of the cascade on the same audio.

    With ``basis == "reference"``: BLEU/chrF of both against the references and their
    ratios. With ``basis == "cascade-agreement"``: only ``agreement_chrf`` =
    chrF(streaming, cascade as reference), and ``retention_chrf`` = agreement / 100 as the
    reference-free proxy; BLEU fields are ``None``.
    """

    basis: QualityBasis
    tokenize: str
    bleu: float | None
    chrf: float | None
    cascade_bleu: float | None
    cascade_chrf: float | None
    retention_bleu: float | None
    retention_chrf: float | None
    agreement_chrf: float | None
    note: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def quality_report(
    streaming: Sequence[str],
    *,
    references: Sequence[str | None] | None,
    cascade: Sequence[str] | None,
    tgt_lang: str | None = None,
    tokenize: str | None = None,
) -> QualityReport:
    """Score ``streaming`` against ``references``, or against ``cascade`` when there are none.

    References count as absent unless every utterance has one. The tokenizer defaults to
    :func:`bleu_tokenizer` of ``tgt_lang``.
    """
    tok = tokenize or bleu_tokenizer(tgt_lang)
    have_refs = references is not None and all(r is not None for r in references)
    if have_refs:
        refs = [str(r) for r in references]  # type: ignore[union-attr]
        b, c = bleu(streaming, refs, tokenize=tok), chrf(streaming, refs)
        cb = cc = None
        if cascade is not None:
            cb, cc = bleu(cascade, refs, tokenize=tok), chrf(cascade, refs)
        return QualityReport(
            basis="reference", tokenize=tok, bleu=b, chrf=c, cascade_bleu=cb, cascade_chrf=cc,
            retention_bleu=retention(b, cb) if cb is not None else None,
            retention_chrf=retention(c, cc) if cc is not None else None,
            agreement_chrf=chrf(streaming, cascade) if cascade is not None else None,
            note=BASIS_NOTE["reference"],
        )
    if cascade is None:
        raise ValueError("quality needs references or the cascade output")
    agree = chrf(streaming, cascade)
    return QualityReport(
        basis="cascade-agreement", tokenize=tok, bleu=None, chrf=None, cascade_bleu=None,
        cascade_chrf=None, retention_bleu=None, retention_chrf=agree / 100.0,
        agreement_chrf=agree, note=BASIS_NOTE["cascade-agreement"],
    )


def _same_length(a: Sequence[Any], b: Sequence[Any]) -> None:
    if len(a) != len(b):
        raise ValueError(f"{len(a)} hypotheses but {len(b)} references")
