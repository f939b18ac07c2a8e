"""Language codes streamst accepts and their English names (used in decoder instructions).

No model code here: the wire protocol and the CLI validate languages without loading a backend.
"""

from __future__ import annotations

# Language codes accepted as targets (and sources) and the names instructions use.
LANGUAGES: dict[str, str] = {
    "zh": "Chinese",
    "yue": "Cantonese",
    "en": "English",
    "ja": "Japanese",
    "ko": "Korean",
    "de": "German",
    "fr": "French",
    "es": "Spanish",
    "it": "Italian",
    "pt": "Portuguese",
    "ru": "Russian",
}


# Sources SenseVoice recognises (its language tags); "auto" lets it detect the language.
ASR_LANGUAGES: tuple[str, ...] = ("zh", "en", "yue", "ja", "ko")
