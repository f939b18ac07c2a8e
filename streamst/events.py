"""Value types that flow between the stages, and the events a session emits.

Every time is in milliseconds of *source audio* since the start of the stream, except
``elapsed_ms`` fields, which are wall-clock processing time (SimulEval's ``elapsed``).
Events are frozen dataclasses with ``to_dict()`` giving the JSON form used by the CLI
(``--json``) and by the websocket protocol (docs/protocol.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

TranscriptKind = Literal["partial", "stable", "final"]


@dataclass(frozen=True)
class Token:
    """One recognised token with its span in source audio."""

    text: str
    start_ms: int
    end_ms: int


@dataclass(frozen=True)
class TranscriptEvent:
    """A hypothesis of the current utterance.

    ``partial``: the whole current hypothesis (may still change after ``stable_text``).
    ``stable``: emitted when the stable prefix grew; ``stable_text`` never changes again
    except by growing. ``final``: the utterance ended (endpoint or end of stream);
    ``text`` is the final hypothesis and equals ``stable_text``.
    """

    kind: TranscriptKind
    utterance: int
    text: str
    stable_text: str
    tokens: tuple[Token, ...]
    language: str
    audio_ms: int  # source audio received when emitted
    start_ms: int  # utterance start in the stream
    end_ms: int  # end of the audio the hypothesis covers
    path: Literal["asr", "e2e"] = "asr"  # SenseVoice CTC, or the end-to-end model's own transcript
    speaker: int | None = None  # speaker label when speakers are on (streamst.speakers)

    type: Literal["transcript"] = field(default="transcript", init=False)

    def to_dict(self) -> dict[str, Any]:
        return _without_speaker(asdict(self))


@dataclass(frozen=True)
class TranslationEvent:
    """Target text of one utterance after a policy step.

    ``committed`` is the whole committed translation of the utterance so far: it only ever
    grows. ``new_units`` are the units this event committed, with for each one the source
    time at which it was committed (``delays_ms``, SimulEval ``delays``) and the wall-clock
    processing time spent up to then (``elapsed_ms``, for computation-aware latency).
    ``tentative`` is the uncommitted rest of the current proposal (may change).
    ``final`` marks the last translation event of the utterance.
    """

    utterance: int
    mode: Literal["e2e", "simul", "cascade"]  # which path produced it
    language: str
    committed: str
    new_units: tuple[str, ...]
    delays_ms: tuple[float, ...]
    elapsed_ms: tuple[float, ...]
    tentative: str
    final: bool
    audio_ms: int
    speaker: int | None = None  # speaker label of the utterance when speakers are on

    type: Literal["translation"] = field(default="translation", init=False)

    def to_dict(self) -> dict[str, Any]:
        return _without_speaker(asdict(self))


@dataclass(frozen=True)
class LatencyEvent:
    """Per-utterance latency figures, emitted after the utterance's final translation."""

    utterance: int
    language: str
    source_ms: float  # utterance duration
    metrics: dict[str, float]  # e.g. {"AL": .., "LAAL": .., "AL_CA": .., "LAAL_CA": ..}
    retention_proxy: float | None = None  # chrF(streaming output, cascade)/100 when both ran on the utterance
    mode: Literal["e2e", "simul"] = "simul"  # the streaming path these figures measure
    speaker: int | None = None  # speaker label of the utterance when speakers are on

    type: Literal["latency"] = field(default="latency", init=False)

    def to_dict(self) -> dict[str, Any]:
        return _without_speaker(asdict(self))


Event = TranscriptEvent | TranslationEvent | LatencyEvent


def _without_speaker(d: dict[str, Any]) -> dict[str, Any]:
    """``speaker`` appears only when known (speakers on): events stay as they were without."""
    if d.get("speaker") is None:
        d.pop("speaker", None)
    return d
