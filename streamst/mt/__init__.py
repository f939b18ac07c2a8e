"""Machine translation: the simultaneous Qwen decoder and the sentence-level path."""
