"""Fun-ASR-Nano's own transcription as the streaming recogniser (asr kind ``fun-asr-nano``).

The end-to-end model (:class:`~streamst.e2e.funasr_nano.FunAsrNanoSpeech`, transformers) run
with task ``transcribe`` ("语音转写成英文：" / "语音转写：") behind the
:class:`~streamst.asr.base.Recognizer` interface, so the ``simul`` and ``cascade`` paths can
use an LLM recogniser (Fun-ASR-Nano-2512, or the 31-language Fun-ASR-MLT-Nano-2512 of profile
``multilingual``) instead of SenseVoice, with the same streaming layer:

* **features**: the model's own (Kaldi fbank on unscaled samples, LFR 7/6, no CMVN), one
  frame per 60 ms, from :meth:`NanoRecognizer.frontend`;
* **decoding**: a batch of windows is encoded at once (``get_audio_features``) and decoded
  greedily at once (:meth:`~streamst.mt.kv.CachedDecoder.decode_batch`); each window's budget
  is ``max_tokens_per_s`` of its audio (a random-weight model never stops by itself);
* **token spans**: an LLM gives no alignment, so the window's frames are spread evenly over
  its tokens. Local agreement compares token ids, which is exact; the stable point (the end
  of the last committed token) is an estimate, which is why the streaming layer's left
  context (``context_ms``) matters more with this kind;
* **language**: a language the model hears names the transcription; under ``auto`` the
  language of each window's transcript is identified by py3langid among the languages the
  profile says this model hears.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from streamst.asr.base import CtcToken, Recognition
from streamst.asr.features import StreamingFeatures
from streamst.languages import base

# py3langid's codes where they differ from the table's
_LANGID_CODE = {"fil": "tl"}


class NanoRecognizer:
    """A loaded Fun-ASR-Nano as a shared recogniser (stateless between calls)."""

    def __init__(self, speech, languages: Sequence[str], *, max_tokens_per_s: float = 8.0) -> None:
        """``speech``: a :class:`~streamst.e2e.funasr_nano.FunAsrNanoSpeech`; ``languages``:
        those the profile says it hears (language ID under ``auto`` picks among them)."""
        from streamst.e2e.funasr_nano import SpeechPrompt

        self.speech = speech
        self.languages = tuple(languages)
        self.frame_ms = int(speech.frame_ms)
        self.max_tokens_per_s = max_tokens_per_s
        self.source = speech.source
        self._prompts = {lang: SpeechPrompt(speech.tokenizer, "transcribe", lang, lang)
                         for lang in ("auto", *self.languages)}
        self._lid = None
        self._lid_lock = threading.Lock()

    def frontend(self) -> StreamingFeatures:
        cfg = self.speech.feature_config
        ident = (np.zeros(cfg.dim, np.float32), np.ones(cfg.dim, np.float32))
        return StreamingFeatures(ident, cfg)

    def recognize(self, windows: list[np.ndarray], language: str = "auto") -> list[Recognition]:
        from streamst.mt.kv import CachedDecoder
        from streamst.mt.detok import IncrementalDetokenizer

        if not windows:
            return []
        lang = base(language) if base(language) in self.languages else "auto"
        prompt = self._prompts[lang]
        speech = self.speech.encode(windows, [("asr-window", i) for i in range(len(windows))])
        budget = max(4, int(max(w.shape[0] for w in windows) * self.frame_ms / 1000 * self.max_tokens_per_s) + 1)
        cap = self.speech.options.max_target_tokens
        decoder = CachedDecoder(self.speech.lm, kv_reuse=False)
        outs = decoder.decode_batch([prompt.build(s, "", max_target_tokens=cap) for s in speech], max_new_tokens=budget)
        results = []
        for window, emb, out in zip(windows, speech, outs):
            detok = IncrementalDetokenizer(self.speech.lm.bytes)
            ids = [t for t in out.token_ids if t not in self.speech.lm.stop_ids]
            pieces = [detok.push(t) for t in ids]
            text = "".join(pieces)
            detected = lang if lang != "auto" else self.identify(text)
            results.append(Recognition(tokens=_spread(ids, pieces, window.shape[0]), language=detected,
                                       hidden=emb.embeds.float().cpu()))
        return results

    def identify(self, text: str) -> str:
        """The language of ``text`` among those this recogniser hears ("unknown" when there is
        nothing to tell from)."""
        if not text.strip() or not self.languages:
            return "unknown"
        with self._lid_lock:
            if self._lid is None:
                from py3langid.langid import MODEL_FILE, LanguageIdentifier

                lid = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
                known = set(lid.nb_classes)
                lid.set_languages(sorted({_LANGID_CODE.get(c, c) for c in self.languages} & known))
                self._lid = lid
            code, _ = self._lid.classify(text)
        back = {v: k for k, v in _LANGID_CODE.items()}
        return back.get(code, code)


def _spread(ids: list[int], pieces: list[str], frames: int) -> tuple[CtcToken, ...]:
    """Tokens with the window's frames spread evenly over them (an LLM gives no alignment)."""
    n = len(ids)
    out = []
    for i, (tid, piece) in enumerate(zip(ids, pieces)):
        start, end = i * frames // n, max((i + 1) * frames // n, i * frames // n + 1)
        out.append(CtcToken(tid, piece, min(start, max(frames - 1, 0)), min(end, frames)))
    return tuple(out)
