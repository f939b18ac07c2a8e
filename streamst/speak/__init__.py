"""Spoken output: the committed translation read aloud, per target language.

* :mod:`.engine`: the :class:`~.engine.Synthesizer` interface and the engine kinds a profile's
  ``tts`` role names (``espeak-ng``: offline, the default; ``kokoro``: neural, ONNX on CPU).
* :mod:`.segments`: committed text cut into speakable segments at clause / sentence ends.
* :mod:`.timeline`: where each segment plays on the output timeline, and the policy that
  keeps spoken lag bounded when speech falls behind (speed up, merge, skip).
* :mod:`.speaker`: one session's speech: segments queued per target, synthesised off the
  event loop, delivered as :class:`~.speaker.SpeechChunk` in order.

docs/protocol.md ("Spoken output") and docs/architecture.md describe the wire forms and the policy.
"""

from streamst.speak.engine import OUTPUT_RATE, Synthesizer, load_synthesizer
from streamst.speak.segments import Segment, Segmenter
from streamst.speak.speaker import Speaker, SpeechChunk, render_offline
from streamst.speak.timeline import SpeechPolicy, Timeline

__all__ = ["OUTPUT_RATE", "Segment", "Segmenter", "Speaker", "SpeechChunk", "SpeechPolicy", "Synthesizer",
           "Timeline", "load_synthesizer", "render_offline"]
