"""Speech recognition: audio front end, VAD, streaming SenseVoice, punctuation."""
