"""The frontend of the SenseVoice encoder family (SenseVoice, and Fun-ASR-Nano whose encoder
is SenseVoice's), owned by those recognisers (``Recognizer.frontend``): 80-dim log-mel fbank (kaldi-native-fbank's online
extractor), low frame rate stacking (LFR m=7, n=6: one 560-dim frame per 60 ms) and CMVN
from ``am.mvn``.

Features are computed once per sample as audio arrives, never recomputed. LFR frame ``i``
stacks fbank frames ``6i-3 .. 6i+3`` (frame 0 repeated on the left, the last frame repeated
on the right at the end of the stream), which is exactly FunASR's ``apply_lfr`` on the whole
stream; frame ``i`` covers stream time ``[60 i, 60 (i+1))`` ms.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import kaldi_native_fbank as knf
import numpy as np

FRAME_MS = 60  # one LFR / encoder frame


@dataclass(frozen=True)
class FeatureConfig:
    n_mels: int = 80
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    window: str = "hamming"
    lfr_m: int = 7
    lfr_n: int = 6
    sample_scale: float = 32768.0  # FunASR's WavFrontend scales [-1, 1] samples to int16 range;
    # transformers' FunAsrNanoFeatureExtractor feeds them unscaled (1.0)

    @property
    def dim(self) -> int:
        return self.n_mels * self.lfr_m


def load_cmvn(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read Kaldi-nnet text CMVN (``<AddShift>`` then ``<Rescale>`` vectors) -> (shift, scale)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    vecs: dict[str, np.ndarray] = {}
    for i, line in enumerate(lines):
        head = line.split()[:1]
        if head and head[0] in ("<AddShift>", "<Rescale>") and i + 1 < len(lines):
            items = lines[i + 1].split()
            if items and items[0] == "<LearnRateCoef>":
                vecs[head[0]] = np.array(items[3:-1], dtype=np.float32)
    if set(vecs) != {"<AddShift>", "<Rescale>"}:
        raise ValueError(f"{path}: not a CMVN file (need <AddShift> and <Rescale>)")
    return vecs["<AddShift>"], vecs["<Rescale>"]


class StreamingFeatures:
    """Push samples in, pull finished LFR+CMVN frames out, with absolute frame indices.

    Memory: only the fbank frames still needed for future LFR frames (< 7) are kept.
    """

    def __init__(self, cmvn: tuple[np.ndarray, np.ndarray], config: FeatureConfig = FeatureConfig()) -> None:
        self.cfg = config
        self.dim = config.dim
        self.shift, self.scale = cmvn
        if self.shift.shape[0] != config.dim:
            raise ValueError(f"CMVN has {self.shift.shape[0]} dims, features have {config.dim}")
        self.reset()

    def reset(self) -> None:
        opts = knf.FbankOptions()
        opts.frame_opts.samp_freq = 16000
        opts.frame_opts.dither = 0.0  # deterministic: streaming must equal offline
        opts.frame_opts.window_type = self.cfg.window
        opts.frame_opts.frame_length_ms = self.cfg.frame_length_ms
        opts.frame_opts.frame_shift_ms = self.cfg.frame_shift_ms
        opts.frame_opts.snip_edges = True
        opts.mel_opts.num_bins = self.cfg.n_mels
        opts.energy_floor = 0.0
        self._fbank = knf.OnlineFbank(opts)
        self._popped = 0  # fbank frames discarded from the extractor
        self._next_lfr = 0  # absolute index of the next LFR frame to emit
        self._first: np.ndarray | None = None  # fbank frame 0 (left padding)
        self._finished = False

    @property
    def next_index(self) -> int:
        """Absolute index of the next LFR frame that will be returned."""
        return self._next_lfr

    def _frame(self, j: int) -> np.ndarray:
        if j <= 0:
            assert self._first is not None
            return self._first
        return np.asarray(self._fbank.get_frame(j), dtype=np.float32)  # knf indices stay absolute after pop()

    def accept(self, samples: np.ndarray) -> np.ndarray:
        """Feed 16 kHz float32 samples; return new LFR frames, shape (T_new, 560)."""
        if self._finished:
            raise RuntimeError("accept() after finish(); call reset()")
        if samples.size:
            self._fbank.accept_waveform(16000, np.ascontiguousarray(samples * self.cfg.sample_scale, dtype=np.float32))
        return self._drain(final=False)

    def finish(self) -> np.ndarray:
        """End of stream: flush the last LFR frames (right edge padded with the last frame)."""
        self._fbank.input_finished()
        out = self._drain(final=True)
        self._finished = True
        return out

    def _drain(self, final: bool) -> np.ndarray:
        m, n = self.cfg.lfr_m, self.cfg.lfr_n
        half = (m - 1) // 2
        total = self._fbank.num_frames_ready  # fbank frames so far (absolute, pop() keeps the count)
        if total and self._first is None:
            self._first = np.asarray(self._fbank.get_frame(0), dtype=np.float32)
        out = []
        limit = -(-total // n) if final else None  # ceil(T / n) frames in all at the end
        while True:
            i = self._next_lfr
            lo, hi = i * n - half, i * n - half + m - 1  # fbank frames stacked, inclusive
            if final:
                if i >= limit:
                    break
            elif hi >= total:
                break
            frames = [self._frame(min(max(j, 0), total - 1)) for j in range(lo, hi + 1)]
            out.append(np.concatenate(frames))
            self._next_lfr += 1
        # discard fbank frames no future LFR frame needs
        keep_from = max(0, self._next_lfr * n - half)
        drop = keep_from - self._popped
        if drop > 0 and not final:
            self._fbank.pop(drop)
            self._popped += drop
        if not out:
            return np.zeros((0, self.cfg.dim), dtype=np.float32)
        feats = np.stack(out)
        return (feats + self.shift) * self.scale
