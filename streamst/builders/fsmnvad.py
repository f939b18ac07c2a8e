"""Build an FSMN-VAD model directory in FunASR's real format, offline, with random weights.

The directory holds what ``funasr.AutoModel(model=DIR)`` reads for the hub model
``fsmn-vad`` (``iic/speech_fsmn_vad_zh-cn-16k-common-pytorch``): ``config.yaml`` (frontend
``WavFrontendOnline``, model ``FsmnVADStreaming``, encoder ``FSMN``), ``model.pt`` (a state
dict) and ``am.mvn`` (Kaldi-nnet CMVN text). The real architecture is small (0.4M
parameters), so the real sizes are kept; only the weights differ.

Random weights would call every frame speech (the silence posterior of an untrained
248-way softmax is about 1/248), which makes the state machine degenerate: one segment
that never ends. So on top of the seeded random init, one path through the network is set
by hand: channel 0/1 of every layer carry ``clamp(mean log-mel - threshold, 0, cap)`` and
the silence logit decreases with it. Segments then follow loudness (about -45 dBFS and
up is speech), which keeps the streaming state machine exercised with realistic
alternations. It is still not a trained model: use it for code paths and timing only.
The loudness measure is the mean log-mel, which favours broadband sound: white noise
counts as speech from about -55 dBFS, a pure tone only from about -15 dBFS.
"""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["BUILDERS", "build_tiny", "CONFIG"]

N_MELS = 80
LFR_M = 5
INPUT_DIM = N_MELS * LFR_M  # 400: five stacked 80-bin log-mel frames

CONFIG: dict = {
    "frontend": "WavFrontendOnline",
    "frontend_conf": {
        "fs": 16000,
        "window": "hamming",
        "n_mels": N_MELS,
        "frame_length": 25,
        "frame_shift": 10,
        "dither": 0.0,
        "lfr_m": LFR_M,
        "lfr_n": 1,
    },
    "model": "FsmnVADStreaming",
    "model_conf": {  # the real hub values (funasr/fsmn-vad config.yaml)
        "sample_rate": 16000,
        "detect_mode": 1,
        "snr_mode": 0,
        "max_end_silence_time": 800,
        "max_start_silence_time": 3000,
        "do_start_point_detection": True,
        "do_end_point_detection": True,
        "window_size_ms": 200,
        "sil_to_speech_time_thres": 150,
        "speech_to_sil_time_thres": 150,
        "speech_2_noise_ratio": 1.0,
        "do_extend": 1,
        "lookback_time_start_point": 200,
        "lookahead_time_end_point": 100,
        "max_single_segment_time": 60000,
        "snr_thres": -100.0,
        "noise_frame_num_used_for_snr": 100,
        "decibel_thres": -100.0,
        "speech_noise_thres": 0.6,
        "fe_prior_thres": 0.0001,
        "silence_pdf_num": 1,
        "sil_pdf_ids": [0],
        "speech_noise_thresh_low": -0.1,
        "speech_noise_thresh_high": 0.3,
        "output_frame_probs": False,
        "frame_in_ms": 10,
        "frame_length_ms": 25,
    },
    "encoder": "FSMN",
    "encoder_conf": {
        "input_dim": INPUT_DIM,
        "input_affine_dim": 140,
        "fsmn_layers": 4,
        "linear_dim": 250,
        "proj_dim": 128,
        "lorder": 20,
        "rorder": 0,
        "lstride": 1,
        "rstride": 0,
        "output_affine_dim": 140,
        "output_dim": 248,
    },
}

# CMVN written to am.mvn: features become (log_mel + SHIFT) * SCALE.
CMVN_SHIFT = -8.0
CMVN_SCALE = 0.25
# Hand-set energy path (in log-mel units, before CMVN): mean log-mel over the 5x80 window
# above SPEECH_LOGMEL counts as speech (measured: white noise at -55 dBFS gives 12.5, at
# -60 dBFS 11.4; a pure tone at -20 dBFS 10.7, at -10 dBFS 13.0), saturating CAP_LOGMEL above.
SPEECH_LOGMEL = 12.0
CAP_LOGMEL = 4.0
SIL_BIAS = 8.0  # silence logit when quiet: posterior about 0.9, well above the 0.2 cut
SIL_SLOPE = 6.0  # silence logit drop per log-mel unit above threshold (saturates at cap)


def _write_cmvn(path: Path, dim: int) -> None:
    """Write ``am.mvn`` in the Kaldi nnet1 text layout FunASR's ``load_cmvn`` parses."""
    shift = " ".join([f"{CMVN_SHIFT:g}"] * dim)
    scale = " ".join([f"{CMVN_SCALE:g}"] * dim)
    text = (
        "<Nnet>\n"
        f"<Splice> {dim} {dim}\n"
        "[ 0 ]\n"
        f"<AddShift> {dim} {dim}\n"
        f"<LearnRateCoef> 0 [ {shift} ]\n"
        f"<Rescale> {dim} {dim}\n"
        f"<LearnRateCoef> 0 [ {scale} ]\n"
        "</Nnet>\n"
    )
    path.write_text(text, encoding="utf-8")


def _set_energy_path(sd: dict[str, torch.Tensor], enc: dict) -> None:
    """Overwrite a few rows so channel 0/1 carry a clamped loudness and drive the silence logit.

    Channel 0 carries ``relu(e)`` and channel 1 ``relu(e - cap)`` with ``e`` the mean
    normalised log-mel above threshold; their difference is ``clamp(e, 0, cap)``.
    The FSMN memory taps of these channels are zeroed so they pass through unchanged.
    """
    thr = (SPEECH_LOGMEL + CMVN_SHIFT) * CMVN_SCALE  # threshold in normalised units
    cap = CAP_LOGMEL * CMVN_SCALE
    w = sd["encoder.in_linear1.linear.weight"]  # (140, 400)
    b = sd["encoder.in_linear1.linear.bias"]
    w[:2].zero_()
    w[:2] += 1.0 / enc["input_dim"]  # mean over the window
    b[0], b[1] = -thr, -thr - cap

    def passthrough(prefix: str) -> None:
        w = sd[f"{prefix}.weight"]
        w[:2].zero_()
        w[:, :2].zero_()
        w[0, 0] = w[1, 1] = 1.0
        bias = sd.get(f"{prefix}.bias")
        if bias is not None:
            bias[:2].zero_()

    passthrough("encoder.in_linear2.linear")
    for i in range(enc["fsmn_layers"]):
        passthrough(f"encoder.fsmn.{i}.linear.linear")
        sd[f"encoder.fsmn.{i}.fsmn_block.conv_left.weight"][:2].zero_()  # identity memory
        passthrough(f"encoder.fsmn.{i}.affine.linear")
    passthrough("encoder.out_linear1.linear")
    # Silence logit: SIL_BIAS - SIL_SLOPE/CMVN_SCALE * clamp(e, 0, cap); others ignore 0/1.
    w = sd["encoder.out_linear2.linear.weight"]  # (248, 140)
    b = sd["encoder.out_linear2.linear.bias"]
    w[:, :2].zero_()
    w[0].zero_()
    slope = SIL_SLOPE / CMVN_SCALE
    w[0, 0], w[0, 1] = -slope, slope
    b[0] = SIL_BIAS


def build_tiny(path: Path, seed: int = 0) -> None:
    """Write an FSMN-VAD directory (real format and size, seeded weights) to ``path``.

    Deterministic: the same ``seed`` gives byte-identical tensors. Takes well under a second.
    """
    import yaml
    from funasr.models.fsmn_vad_streaming.encoder import FSMN

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    enc = CONFIG["encoder_conf"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = FSMN(**enc)
    sd = {f"encoder.{k}": v.detach().clone() for k, v in encoder.state_dict().items()}
    _set_energy_path(sd, enc)
    torch.save(sd, path / "model.pt")
    _write_cmvn(path / "am.mvn", enc["input_dim"])
    with open(path / "config.yaml", "w", encoding="utf-8") as f:
        yaml.safe_dump(CONFIG, f, sort_keys=False, allow_unicode=True)


BUILDERS = {"fsmn-vad-tiny": build_tiny}
