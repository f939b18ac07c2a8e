"""SenseVoiceSmall behind a narrow, batched, stateless interface.

The model is loaded with ``funasr.AutoModel`` from a hub id or a local directory (the same
code path either way) and shared by every session. ``recognize`` runs the encoder and the
CTC head on a batch of feature windows (LFR+CMVN frames, see ``features.py``) and returns,
per window, greedy CTC tokens with their frame spans, the language tag, and the encoder
hidden states (for a later end-to-end mode that feeds them to the Qwen decoder).

SenseVoice prepends four query embeddings to the features (language, event, emotion, text
normalisation); output frames 0..3 answer those queries (frame 0: ``<|zh|>``-style language
tag), frames 4.. are speech frames, one per 60 ms LFR frame.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from streamst.asr.base import _TAG, CtcToken, Recognition, pieces_to_text  # noqa: F401 (re-exported)
from streamst.asr.features import FRAME_MS, StreamingFeatures
from streamst.asr.funasr_load import load_auto_model

log = logging.getLogger(__name__)

N_QUERIES = 4
LANGS = ("zh", "en", "yue", "ja", "ko")


@dataclass(frozen=True)
class SenseVoiceOptions:
    device: str = "cpu"
    use_itn: bool = False  # inverse text normalisation (numbers as digits, punctuation)
    dtype: torch.dtype = torch.float32
    # "int8": torch dynamic int8 quantisation of the encoder's Linear layers (CPU only);
    # changes outputs slightly, `streamst bench asr --quantize int8` measures it
    quantize: str = "none"


class SenseVoiceASR:
    """A loaded SenseVoice model (stateless between calls; thread-safe for inference)."""

    def __init__(self, source: str, options: SenseVoiceOptions = SenseVoiceOptions(), *, hint: str = "") -> None:
        auto = load_auto_model(source, what="SenseVoice model", hint=hint or "see `streamst models list`",
                               device=options.device, log_level="ERROR")
        self.source = source
        self.options = options
        self.model = auto.model.to(options.dtype)
        self.model.eval()
        if options.quantize == "int8":
            import warnings

            if not str(options.device).startswith("cpu"):
                raise ValueError("SenseVoiceOptions.quantize='int8' is a CPU option")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.ao's notice that it moves to torchao
                torch.ao.quantization.quantize_dynamic(self.model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
        elif options.quantize != "none":
            raise ValueError(f"SenseVoiceOptions.quantize must be 'none' or 'int8', got {options.quantize!r}")
        self.device = torch.device(auto.kwargs["device"])
        tok = auto.kwargs["tokenizer"]
        self.sp = tok.sp
        frontend = auto.kwargs["frontend"]
        cmvn = frontend.cmvn.numpy()
        self.cmvn = (cmvn[0].astype(np.float32), cmvn[1].astype(np.float32))
        self.blank_id = self.model.blank_id
        self.hidden_size = self.model.encoder_output_size
        self._lang_ids = {self.sp.piece_to_id(f"<|{lang}|>"): lang for lang in LANGS}
        self._lang_ids.pop(self.sp.unk_id(), None)

    frame_ms = FRAME_MS  # one LFR frame, one encoder frame, one CTC step

    def frontend(self) -> StreamingFeatures:
        """SenseVoice's features for one session: fbank, LFR 7/6 (560 dims), CMVN from ``am.mvn``."""
        return StreamingFeatures(self.cmvn)

    def piece(self, token_id: int) -> str:
        return self.sp.id_to_piece(token_id)

    @torch.inference_mode()
    def recognize(self, windows: list[np.ndarray], language: str = "auto") -> list[Recognition]:
        """Encode and greedily CTC-decode a batch of windows.

        windows: each (T_i, 560) float32 LFR+CMVN frames. Returns one Recognition per window.
        """
        if not windows:
            return []
        m = self.model
        lengths = torch.tensor([w.shape[0] for w in windows], dtype=torch.long)
        tmax = int(lengths.max())
        feats = torch.zeros(len(windows), tmax, windows[0].shape[1], dtype=self.options.dtype)
        for b, w in enumerate(windows):
            feats[b, : w.shape[0]] = torch.from_numpy(w)
        feats = feats.to(self.device)  # (B, T, 560)
        b = feats.shape[0]
        lid = m.lid_dict.get(language, 0)
        textnorm = m.textnorm_dict["withitn" if self.options.use_itn else "woitn"]
        q_lang = m.embed(torch.tensor([[lid]], device=self.device)).repeat(b, 1, 1)  # (B, 1, 560)
        q_event_emo = m.embed(torch.tensor([[1, 2]], device=self.device)).repeat(b, 1, 1)  # (B, 2, 560)
        q_norm = m.embed(torch.tensor([[textnorm]], device=self.device)).repeat(b, 1, 1)  # (B, 1, 560)
        x = torch.cat([q_lang, q_event_emo, q_norm, feats], dim=1)  # (B, 4 + T, 560)
        enc, enc_lens = m.encoder(x, (lengths + N_QUERIES).to(self.device))  # (B, 4 + T, D)
        if isinstance(enc, tuple):
            enc = enc[0]
        best = m.ctc.log_softmax(enc).argmax(dim=-1).cpu()  # (B, 4 + T)
        out = []
        for i in range(b):
            n = int(lengths[i])
            ids = best[i, : N_QUERIES + n].tolist()
            detected = self._lang_ids.get(ids[0])
            lang = detected or (language if language != "auto" else "unknown")
            out.append(Recognition(tokens=self._collapse(ids[N_QUERIES:]), language=lang,
                                   hidden=enc[i, N_QUERIES : N_QUERIES + n].float().cpu()))
        return out

    def _collapse(self, ids: list[int]) -> tuple[CtcToken, ...]:
        """Greedy CTC: merge repeats, drop blanks and tags; keep each token's frame span."""
        tokens: list[CtcToken] = []
        prev = None
        for t, tid in enumerate(ids):
            if tid == prev:
                if tokens and tokens[-1].id == tid and tokens[-1].end_frame == t:
                    last = tokens[-1]
                    tokens[-1] = CtcToken(last.id, last.piece, last.start_frame, t + 1)
                continue
            prev = tid
            if tid == self.blank_id:
                continue
            piece = self.sp.id_to_piece(tid)
            if _TAG.fullmatch(piece) or self.sp.is_control(tid):
                continue
            tokens.append(CtcToken(tid, piece, t, t + 1))
        return tuple(tokens)
