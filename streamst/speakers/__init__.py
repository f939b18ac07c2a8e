"""Speaker turns: who is speaking, per utterance (issue 23).

* :mod:`.embed`: the speaker model (CAM++ through FunASR) that turns windows of audio into
  unit-length speaker embeddings.
* :mod:`.cluster`: online clustering of one session's utterance embeddings into stable
  speaker labels.
* :mod:`.turns`: the per-session hook the pipeline calls: it keeps a bounded buffer of the
  session's audio, embeds the windows of each utterance as they complete and puts a
  ``speaker`` on every utterance-level event.
* :mod:`.train`: trains the tiny CAM++ on synthetic espeak-ng voices (random weights do
  not separate voices), cached by content hash.
* :mod:`.dialogue` / :mod:`.bench`: synthetic multi-voice dialogues and the attribution
  measure (``streamst bench speakers``).
"""
