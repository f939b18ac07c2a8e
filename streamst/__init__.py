"""streamst: streaming simultaneous speech translation (SenseVoice encoder + Qwen decoder)."""

__version__ = "0.1.0"
