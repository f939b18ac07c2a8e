"""Byte-level BPE detokenisation that never shows half a character.

``ByteTable`` maps a token id to the bytes it stands for (GPT-2 byte alphabet, as in Qwen's
151k vocabulary); ``IncrementalDetokenizer`` feeds those bytes through an incremental UTF-8
decoder, so a CJK character split over two tokens appears only once complete.
"""

from __future__ import annotations

import codecs
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


class IncrementalDetokenizer:
    """Byte-level BPE ids -> text, emitting only whole characters.

    Each token maps to bytes (GPT-2 byte alphabet); a UTF-8 incremental decoder turns the
    byte stream into text and holds back a trailing incomplete character until the token
    that completes it arrives, so output never ends in half a character (a CJK character
    is often split over two tokens). Invalid byte sequences (only a broken or random
    model emits them) are dropped, never shown as U+FFFD. Special tokens are skipped.
    """

    def __init__(self, table: ByteTable):
        self._table = table
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="ignore")
        self.text = ""

    def push(self, token_id: int) -> str:
        """Feed one token; return the newly completed text (may be empty)."""
        piece = self._utf8.decode(self._table.bytes_of(token_id))
        self.text += piece
        return piece


class ByteTable:
    """Token id -> the bytes it stands for (byte-level BPE), memoised."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase):
        self._tok = tokenizer
        self._decoder = {c: b for b, c in _bytes_to_unicode().items()}
        self._special = {
            i for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items() if getattr(t, "special", False)
        }
        self._added = {i: t.content for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items()}
        self._memo: dict[int, bytes] = {}

    def bytes_of(self, token_id: int) -> bytes:
        b = self._memo.get(token_id)
        if b is None:
            if token_id in self._special:
                b = b""
            elif token_id in self._added:
                b = self._added[token_id].encode("utf-8")
            else:
                piece = self._tok.convert_ids_to_tokens(token_id)
                if piece is None:  # padding rows of the embedding beyond the tokenizer
                    b = b""
                else:
                    dec = self._decoder
                    b = bytes(dec[c] for c in piece if c in dec)
            self._memo[token_id] = b
        return b


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map used by byte-level BPE vocabularies."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))
