"""The one language table: every language streamst hears or writes, and what follows from it.

Each row says how a language is written (script, direction, how text splits into *units*:
words, characters, or words found by a segmenter) and how it orders a clause (SVO, SOV, VSO,
V2). Everything language-specific elsewhere is derived from this table: the decoder
instructions (English names), the Fun-ASR instructions (Chinese names), the pickers of the
page (native names), the unit segmentation and the written punctuation (full-width for
zh/yue/ja) of :mod:`streamst.text`, the right-to-left
captions, and the per-pair policy defaults (:func:`pair_defaults`). Which languages a model
*hears* is declared by the profile (``languages`` of a model entry), with the model kind's
defaults below.

No model code here: the wire protocol and the CLI validate languages without loading a backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Unit = Literal["word", "char", "seg"]  # spaces | one character each | a word segmenter
Order = Literal["SVO", "SOV", "VSO", "V2"]


@dataclass(frozen=True)
class Language:
    code: str  # ISO 639-1 where there is one, else 639-3 (yue, fil)
    name: str  # English name, as decoder instructions spell it
    native: str  # the name in the language itself (pickers)
    script: str  # ISO 15924
    order: Order = "SVO"  # basic clause order; SOV sources put the verb last
    unit: Unit = "word"
    rtl: bool = False
    zh: str = ""  # Chinese name as Fun-ASR instructions spell it ("英文"); "" = not known to it
    # rough parallel-text length prior (policy ratio): units of this language per English word;
    # only the languages whose units differ clearly from English words are set
    units_per_en_word: float = 1.0
    # how its output writes , . ? ! : ; ( ): the full-width marks in that order, "" = ASCII as
    # written (streamst.text.output_units applies it to every target text streamst emits)
    fullwidth_punctuation: str = ""


def _t(*rows: Language) -> dict[str, Language]:
    return {r.code: r for r in rows}


L = Language
_ZH_MARKS = "，。？！：；（）"  # , . ? ! : ; ( ) as Chinese writes them
TABLE: dict[str, Language] = _t(
    # East Asian
    L("zh", "Chinese", "中文", "Hans", unit="char", zh="中文", units_per_en_word=1.6, fullwidth_punctuation=_ZH_MARKS),
    L("yue", "Cantonese", "粵語", "Hant", unit="char", zh="粤语", units_per_en_word=1.6, fullwidth_punctuation=_ZH_MARKS),
    L("en", "English", "English", "Latn", zh="英文"),
    L("ja", "Japanese", "日本語", "Jpan", "SOV", unit="char", zh="日文", units_per_en_word=2.2,
      fullwidth_punctuation="、。？！：；（）"),  # Japanese commas are 、
    L("ko", "Korean", "한국어", "Kore", "SOV", zh="韩文", units_per_en_word=0.75),
    # South-East Asian
    L("vi", "Vietnamese", "Tiếng Việt", "Latn", zh="越南语"),
    L("id", "Indonesian", "Bahasa Indonesia", "Latn", zh="印尼语"),
    L("ms", "Malay", "Bahasa Melayu", "Latn", zh="马来语"),
    L("fil", "Filipino", "Filipino", "Latn", "VSO", zh="菲律宾语"),
    L("th", "Thai", "ไทย", "Thai", unit="seg", zh="泰语"),
    L("lo", "Lao", "ລາວ", "Laoo", unit="seg"),
    L("km", "Khmer", "ខ្មែរ", "Khmr", unit="seg"),
    L("my", "Burmese", "မြန်မာ", "Mymr", "SOV", unit="seg"),
    # South Asian
    L("hi", "Hindi", "हिन्दी", "Deva", "SOV", zh="印地语"),
    L("ur", "Urdu", "اردو", "Arab", "SOV", rtl=True),
    L("bn", "Bengali", "বাংলা", "Beng", "SOV"),
    L("mr", "Marathi", "मराठी", "Deva", "SOV"),
    L("ne", "Nepali", "नेपाली", "Deva", "SOV"),
    L("pa", "Punjabi", "ਪੰਜਾਬੀ", "Guru", "SOV"),
    L("gu", "Gujarati", "ગુજરાતી", "Gujr", "SOV"),
    L("ta", "Tamil", "தமிழ்", "Taml", "SOV"),
    L("te", "Telugu", "తెలుగు", "Telu", "SOV"),
    L("kn", "Kannada", "ಕನ್ನಡ", "Knda", "SOV"),
    L("ml", "Malayalam", "മലയാളം", "Mlym", "SOV"),
    L("si", "Sinhala", "සිංහල", "Sinh", "SOV"),
    # Middle East, Caucasus, Central Asia
    L("ar", "Arabic", "العربية", "Arab", "VSO", rtl=True, zh="阿拉伯语"),
    L("fa", "Persian", "فارسی", "Arab", "SOV", rtl=True),
    L("he", "Hebrew", "עברית", "Hebr", rtl=True),
    L("tr", "Turkish", "Türkçe", "Latn", "SOV"),
    L("az", "Azerbaijani", "Azərbaycanca", "Latn", "SOV"),
    L("kk", "Kazakh", "Қазақша", "Cyrl", "SOV"),
    L("uz", "Uzbek", "Oʻzbekcha", "Latn", "SOV"),
    L("ky", "Kyrgyz", "Кыргызча", "Cyrl", "SOV"),
    L("hy", "Armenian", "Հայերեն", "Armn", "SOV"),
    L("ka", "Georgian", "ქართული", "Geor", "SOV"),
    L("am", "Amharic", "አማርኛ", "Ethi", "SOV"),
    # European: the 19 of Fun-ASR-MLT-Nano first
    L("bg", "Bulgarian", "Български", "Cyrl", zh="保加利亚语"),
    L("hr", "Croatian", "Hrvatski", "Latn", zh="克罗地亚语"),
    L("cs", "Czech", "Čeština", "Latn", zh="捷克语"),
    L("da", "Danish", "Dansk", "Latn", "V2", zh="丹麦语"),
    L("nl", "Dutch", "Nederlands", "Latn", "V2", zh="荷兰语"),
    L("et", "Estonian", "Eesti", "Latn", "V2", zh="爱沙尼亚语"),
    L("fi", "Finnish", "Suomi", "Latn", zh="芬兰语"),
    L("el", "Greek", "Ελληνικά", "Grek", zh="希腊语"),
    L("hu", "Hungarian", "Magyar", "Latn", zh="匈牙利语"),
    L("ga", "Irish", "Gaeilge", "Latn", "VSO", zh="爱尔兰语"),
    L("lv", "Latvian", "Latviešu", "Latn", zh="拉脱维亚语"),
    L("lt", "Lithuanian", "Lietuvių", "Latn", zh="立陶宛语"),
    L("mt", "Maltese", "Malti", "Latn", zh="马耳他语"),
    L("pl", "Polish", "Polski", "Latn", zh="波兰语"),
    L("pt", "Portuguese", "Português", "Latn", zh="葡萄牙文"),
    L("ro", "Romanian", "Română", "Latn", zh="罗马尼亚语"),
    L("sk", "Slovak", "Slovenčina", "Latn", zh="斯洛伐克语"),
    L("sl", "Slovenian", "Slovenščina", "Latn", zh="斯洛文尼亚语"),
    L("sv", "Swedish", "Svenska", "Latn", "V2", zh="瑞典语"),
    # European: more that Qwen3 writes
    L("de", "German", "Deutsch", "Latn", "V2", zh="德文"),
    L("fr", "French", "Français", "Latn", zh="法文"),
    L("es", "Spanish", "Español", "Latn", zh="西班牙文"),
    L("it", "Italian", "Italiano", "Latn", zh="意大利文"),
    L("ru", "Russian", "Русский", "Cyrl", zh="俄文"),
    L("uk", "Ukrainian", "Українська", "Cyrl"),
    L("be", "Belarusian", "Беларуская", "Cyrl"),
    L("sr", "Serbian", "Српски", "Cyrl"),
    L("bs", "Bosnian", "Bosanski", "Latn"),
    L("mk", "Macedonian", "Македонски", "Cyrl"),
    L("sq", "Albanian", "Shqip", "Latn"),
    L("no", "Norwegian", "Norsk", "Latn", "V2"),
    L("is", "Icelandic", "Íslenska", "Latn", "V2"),
    L("ca", "Catalan", "Català", "Latn"),
    L("gl", "Galician", "Galego", "Latn"),
    L("eu", "Basque", "Euskara", "Latn", "SOV"),
    L("cy", "Welsh", "Cymraeg", "Latn", "VSO"),
    L("lb", "Luxembourgish", "Lëtzebuergesch", "Latn", "V2"),
    # Africa
    L("sw", "Swahili", "Kiswahili", "Latn"),
    L("af", "Afrikaans", "Afrikaans", "Latn", "V2"),
    L("yo", "Yoruba", "Yorùbá", "Latn"),
    L("zu", "Zulu", "isiZulu", "Latn"),
)
del L

# Language codes accepted as targets (and sources) and the names instructions use.
LANGUAGES: dict[str, str] = {code: lang.name for code, lang in TABLE.items()}

# What each recogniser / speech model kind hears by default (a profile entry's
# ``languages`` replaces it). SenseVoiceSmall: its five language tags. Fun-ASR-Nano-2512:
# Chinese (with Cantonese among its dialects), English, Japanese. Fun-ASR-MLT-Nano-2512
# (profile ``multilingual``): 31 languages, per its model card.
SENSEVOICE_LANGUAGES: tuple[str, ...] = ("zh", "en", "yue", "ja", "ko")
FUNASR_NANO_LANGUAGES: tuple[str, ...] = ("zh", "en", "yue", "ja")
MLT_LANGUAGES: tuple[str, ...] = (
    "zh", "en", "yue", "ja", "ko", "vi", "id", "th", "ms", "fil", "ar", "hi",
    "bg", "hr", "cs", "da", "nl", "et", "fi", "el", "hu", "ga", "lv", "lt", "mt", "pl", "pt",
    "ro", "sk", "sl", "sv",
)
HEARS_BY_KIND: dict[str, tuple[str, ...]] = {
    "sensevoice": SENSEVOICE_LANGUAGES,
    "fun-asr-nano": FUNASR_NANO_LANGUAGES,
}

# Sources SenseVoice recognises (its language tags); "auto" lets it detect the language.
ASR_LANGUAGES: tuple[str, ...] = SENSEVOICE_LANGUAGES


def base(code: str) -> str:
    """``"zh-CN"`` -> ``"zh"``; ``"EN"`` -> ``"en"``."""
    return code.split("-")[0].lower()


def lookup(code: str) -> Language | None:
    """The table row of ``code`` (a region suffix is ignored), or None."""
    return TABLE.get(base(code))


def is_rtl(code: str) -> bool:
    lang = lookup(code)
    return bool(lang and lang.rtl)


def unit_kind(code: str) -> Unit:
    lang = lookup(code)
    return lang.unit if lang else "word"


def native_name(code: str) -> str:
    lang = lookup(code)
    return lang.native if lang else code


# -- per-pair policy defaults, derived from the table ----------------------------------------
# Character sources wait k=3 characters with max_lag=10, word (and segmented) sources k=2
# words with max_lag=6: both about 0.6 s and 2 s of speech. A verb-final (SOV) source into a
# target that does not put the verb last holds the verb back to the end of the clause, so the
# reorder-aware policy may wait half as long again before it writes anyway (max_lag x 1.5);
# between two verb-final languages, or into one, the order mostly carries over.
VERB_FINAL_LAG = 1.5


def default_ratio(src_lang: str, tgt_lang: str) -> float:
    """Expected target units per source unit: ``units_per_en_word`` of the target over the
    source's (zh->en 0.625, en->zh 1.6, ja->en 0.455); 1.0 for languages not in the table."""

    def per_word(code: str) -> float:
        lang = lookup(code)
        return lang.units_per_en_word if lang else 1.0

    return round(per_word(tgt_lang) / per_word(src_lang), 3)


def reorders(src_lang: str, tgt_lang: str) -> bool:
    """True when the source puts the verb last and the target does not (ja->en, hi->en, tr->fr)."""
    src, tgt = lookup(src_lang), lookup(tgt_lang)
    return bool(src and tgt and src.order == "SOV" and tgt.order != "SOV")


def pair_defaults(src_lang: str, tgt_lang: str) -> dict[str, float | int]:
    """``k``, ``max_lag`` and ``ratio`` of the policy for one pair, from the table."""
    k, max_lag = (3, 10) if unit_kind(src_lang) == "char" else (2, 6)
    if reorders(src_lang, tgt_lang):
        max_lag = round(max_lag * VERB_FINAL_LAG)
    return {"k": k, "max_lag": max_lag, "ratio": default_ratio(src_lang, tgt_lang)}
