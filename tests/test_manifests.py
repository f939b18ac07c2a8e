"""``streamst manifest``: each public corpus layout, written small by the test in its real shape
(CoVoST 2 / Common Voice TSV + mp3 clips, FLEURS TSV + audio/, a Hugging Face dataset saved to
disk), becomes a manifest that ``streamst train`` accepts, with the right text, languages and
16 kHz audio; bad layouts are one line and exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streamst.cli import main
from streamst.training.data import read_train_manifest

CV_HEADER = ["client_id", "path", "sentence", "up_votes", "down_votes", "age", "gender", "accents", "locale", "segment"]


def tone(seconds: float, rate: int, freq: float, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    x = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def write_mp3(path: Path, seconds: float, freq: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), tone(seconds, 48000, freq, channels=2), 48000, format="MP3")  # Common Voice: 48 kHz mp3


def write_tsv(path: Path, header: list[str] | None, rows: list[list[str]]) -> Path:
    lines = (["\t".join(header)] if header else []) + ["\t".join(r) for r in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def rows_of(manifest: Path) -> list[dict]:
    return [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines()]


def check_audio(out: Path, row: dict, seconds: float, freq: float) -> None:
    x, rate = sf.read(str(out / row["audio"]), dtype="float32")
    assert rate == 16000 and x.ndim == 1
    assert abs(len(x) / rate - seconds) < 0.06, len(x) / rate
    spectrum = np.abs(np.fft.rfft(x))  # the clip's own content survived decode + resample
    assert abs(np.argmax(spectrum) * rate / len(x) - freq) < 5


@pytest.fixture()
def covost(tmp_path) -> Path:
    root = tmp_path / "cv-corpus" / "zh-CN"
    write_mp3(root / "clips" / "common_voice_zh-CN_1.mp3", 1.0, 440)
    write_mp3(root / "clips" / "common_voice_zh-CN_2.mp3", 1.5, 660)
    write_tsv(root / "covost_v2.zh-CN_en.train.tsv", ["path", "sentence", "translation", "client_id"], [
        ["common_voice_zh-CN_1.mp3", "我们明天开会。", "We meet tomorrow.", "c1"],
        ["common_voice_zh-CN_2.mp3", "他说“在北京工作”。", '"I work in Beijing," he said.', "c2"],
    ])
    return root


def test_covost2_tsv_over_mp3_clips(covost, tmp_path) -> None:
    out = tmp_path / "m"
    assert main(["manifest", str(covost / "covost_v2.zh-CN_en.train.tsv"), "--from", "covost2",
                 "--out", str(out), "--json"]) == 0
    rows = rows_of(out / "manifest.jsonl")
    assert [(r["id"], r["source"], r["reference"], r["src_lang"], r["tgt_lang"]) for r in rows] == [
        ("common_voice_zh-CN_1", "我们明天开会。", "We meet tomorrow.", "zh", "en"),
        ("common_voice_zh-CN_2", "他说“在北京工作”。", '"I work in Beijing," he said.', "zh", "en"),  # quotes kept
    ]
    check_audio(out, rows[0], 1.0, 440)
    check_audio(out, rows[1], 1.5, 660)
    items = read_train_manifest(out / "manifest.jsonl")  # what `streamst train` reads
    assert [i.reference for i in items] == ["We meet tomorrow.", '"I work in Beijing," he said.']


def test_covost2_release_tsv_with_split_column(covost, tmp_path) -> None:
    write_tsv(covost / "covost_v2.zh-CN_en.tsv", ["path", "sentence", "translation", "client_id", "split"], [
        ["common_voice_zh-CN_1.mp3", "我们明天开会。", "We meet tomorrow.", "c1", "train"],
        ["common_voice_zh-CN_2.mp3", "他在北京工作。", "He works in Beijing.", "c2", "dev"],
    ])
    out = tmp_path / "dev"
    assert main(["manifest", str(covost / "covost_v2.zh-CN_en.tsv"), "--from", "covost2", "--split", "dev",
                 "--out", str(out)]) == 0
    assert [r["reference"] for r in rows_of(out / "manifest.jsonl")] == ["He works in Beijing."]


def test_common_voice_folder_gives_transcription_rows(covost, tmp_path) -> None:
    write_tsv(covost / "train.tsv", CV_HEADER, [
        ["c1", "common_voice_zh-CN_2.mp3", "他在北京工作。", "2", "0", "", "", "", "zh-CN", ""],
    ])
    out = tmp_path / "cv"
    assert main(["manifest", str(covost), "--from", "commonvoice", "--out", str(out)]) == 0
    (row,) = rows_of(out / "manifest.jsonl")
    assert (row["source"], row["reference"], row["src_lang"], row["tgt_lang"]) == ("他在北京工作。", "他在北京工作。", "zh", "zh")
    check_audio(out, row, 1.5, 660)


def fleurs_tree(root: Path) -> Path:
    data = root / "fleurs" / "data"
    for lang, texts, base in (("cmn_hans_cn", {"101": "今天天气很好", "102": "我喜欢音乐"}, 0),
                              ("en_us", {"101": "The weather is nice today.", "103": "A third sentence."}, 10)):
        rows = []
        for k, (sid, text) in enumerate(texts.items()):
            name = f"{base + k}.wav"
            sf.write(str(_mk(data / lang / "audio" / "train" / name)), tone(0.8 + 0.2 * k, 16000, 300 + 100 * k),
                     16000, subtype="PCM_16")
            rows.append([sid, name, text, text.lower(), " ".join(text), str(16000), "FEMALE"])
        write_tsv(data / lang / "train.tsv", None, rows)
    return data.parent


def _mk(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_fleurs_pair_joined_by_sentence_id(tmp_path) -> None:
    root = fleurs_tree(tmp_path)
    out = tmp_path / "zh-en"
    assert main(["manifest", str(root), "--from", "fleurs", "--src-lang", "cmn_hans_cn", "--tgt-lang", "en_us",
                 "--out", str(out)]) == 0
    (row,) = rows_of(out / "manifest.jsonl")  # id 102 has no English recording: not a pair
    assert (row["source"], row["reference"], row["src_lang"], row["tgt_lang"]) == (
        "今天天气很好", "The weather is nice today.", "zh", "en")
    check_audio(out, row, 0.8, 300)
    out2 = tmp_path / "en-zh"  # the other direction, from the same tree, paths absolute (for cat)
    assert main(["manifest", str(root / "data"), "--from", "fleurs", "--src-lang", "en_us", "--tgt-lang", "cmn_hans_cn",
                 "--out", str(out2), "--absolute-paths"]) == 0
    (row,) = rows_of(out2 / "manifest.jsonl")
    assert (row["reference"], row["src_lang"], row["tgt_lang"]) == ("今天天气很好", "en", "zh")
    assert Path(row["audio"]).is_absolute() and Path(row["audio"]).is_file()
    both = tmp_path / "both.jsonl"  # two manifests concatenated: what a zh<->en run trains on
    zh_en = "".join(json.dumps(dict(r, audio=str((out / r["audio"]).resolve()))) + "\n" for r in rows_of(out / "manifest.jsonl"))
    both.write_text(zh_en + (out2 / "manifest.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
    assert [(i.src_lang, i.tgt_lang) for i in read_train_manifest(both)] == [("zh", "en"), ("en", "zh")]


def test_hf_dataset_saved_to_disk(tmp_path) -> None:
    datasets = pytest.importorskip("datasets", reason="datasets is not installed (pip install 'streamst[train]')")
    files = []
    for k, (rate, freq) in enumerate(((22050, 500), (16000, 700))):
        f = tmp_path / f"clip{k}.flac"
        sf.write(str(f), tone(1.0, rate, freq), rate)
        files.append(str(f))
    ds = datasets.Dataset.from_dict({"audio": files, "sentence": ["你好", "再见"], "translation": ["Hello.", "Goodbye."],
                                     "id": ["a", "b"]}).cast_column("audio", datasets.Audio())
    datasets.DatasetDict({"train": ds, "validation": ds.select([1])}).save_to_disk(str(tmp_path / "hf"))
    for f in files:
        Path(f).unlink()  # save_to_disk embedded the bytes: the originals are not needed
    out = tmp_path / "m"
    assert main(["manifest", str(tmp_path / "hf"), "--from", "hf-disk", "--split", "validation",
                 "--src-lang", "zh", "--tgt-lang", "en", "--out", str(out)]) == 0
    (row,) = rows_of(out / "manifest.jsonl")
    assert (row["id"], row["source"], row["reference"]) == ("b", "再见", "Goodbye.")
    check_audio(out, row, 1.0, 700)
    out = tmp_path / "m2"
    assert main(["manifest", str(tmp_path / "hf"), "--from", "hf-disk", "--src-lang", "zh", "--tgt-lang", "en",
                 "--out", str(out)]) == 0
    rows = rows_of(out / "manifest.jsonl")
    assert [r["reference"] for r in rows] == ["Hello.", "Goodbye."]
    check_audio(out, rows[0], 1.0, 500)  # 22.05 kHz resampled


@pytest.mark.parametrize("case,expect", [
    ("missing_column", "no column 'translation'"),
    ("missing_clip", "clip common_voice_zh-CN_9.mp3 not found"),
    ("unknown_language", "unknown language"),
    ("no_clips_folder", "no clips folder"),
    ("fleurs_language", "no FLEURS language folder 'de_de'"),
    ("hf_column", "no column 'translation'"),
])
def test_bad_layouts_are_one_line_exit_2(covost, tmp_path, capsys, case, expect) -> None:
    tsv = covost / "covost_v2.zh-CN_en.train.tsv"
    args = ["manifest", str(tsv), "--from", "covost2", "--out", str(tmp_path / "out")]
    if case == "missing_column":
        write_tsv(tsv, ["path", "sentence", "client_id"], [["common_voice_zh-CN_1.mp3", "我", "c"]])
    elif case == "missing_clip":
        write_tsv(tsv, ["path", "sentence", "translation"], [["common_voice_zh-CN_1.mp3", "我", "I"],
                                                            ["common_voice_zh-CN_9.mp3", "你", "You"]])
    elif case == "unknown_language":
        args[1] = str(tsv.rename(covost / "covost_v2.xx_en.train.tsv"))
    elif case == "no_clips_folder":
        args += ["--clips", str(tmp_path / "nowhere")]
    elif case == "fleurs_language":
        args = ["manifest", str(fleurs_tree(tmp_path)), "--from", "fleurs", "--src-lang", "de_de",
                "--out", str(tmp_path / "out")]
    elif case == "hf_column":
        datasets = pytest.importorskip("datasets", reason="datasets is not installed")
        datasets.Dataset.from_dict({"audio": [str(covost / "clips" / "common_voice_zh-CN_1.mp3")], "sentence": ["我"]}) \
            .cast_column("audio", datasets.Audio()).save_to_disk(str(tmp_path / "hf"))
        args = ["manifest", str(tmp_path / "hf"), "--from", "hf-disk", "--src-lang", "zh", "--tgt-lang", "en",
                "--out", str(tmp_path / "out")]
    capsys.readouterr()  # the test's own set-up output
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("streamst manifest: error:") and expect in err[0], err
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
