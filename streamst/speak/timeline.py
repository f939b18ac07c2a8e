"""Where spoken segments play, and the policy that keeps spoken lag bounded.

The output timeline is in source-stream milliseconds (what a listener hears while the
source is spoken in real time). A segment is *ready* when its text has committed and its
audio has been synthesised (``max(now, commit) + synthesis time``), and starts playing at
``max(ready, end of the previous segment)`` of its language: speech never overlaps itself.

When speech falls behind (the backlog, audio already scheduled beyond now, grows),
:class:`SpeechPolicy` applies, in order:

1. **speed up**: past ``catch_up_ms`` of backlog, the next segments are synthesised faster,
   linearly up to ``max_speed`` at ``max_backlog_ms``;
2. **merge**: more than ``merge_over`` segments waiting for synthesis are synthesised as
   one, up to ``merge_chars`` of text (one engine call, no pauses between them);
3. **skip**: while the backlog exceeds ``max_backlog_ms`` a segment is not spoken (its text
   was sent as text already; a ``skipped`` chunk says so).

So a segment never waits more than ``max_backlog_ms`` behind its ready time, whatever the
length of the talk; ``streamst bench speech`` measures the policy on a long talk.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SpeechPolicy:
    catch_up_ms: float = 1500.0  # backlog from which speech speeds up
    max_speed: float = 1.5  # fastest speech (espeak-ng stays intelligible well past this)
    max_backlog_ms: float = 6000.0  # backlog from which segments are skipped
    merge_over: int = 3  # segments waiting for synthesis beyond this are merged into one call
    merge_chars: int = 160  # ... up to this much text (a merged chunk stays a few seconds long)

    def __post_init__(self) -> None:
        if not (0 <= self.catch_up_ms < self.max_backlog_ms and self.max_speed >= 1.0 and self.merge_over >= 1):
            raise ValueError("need 0 <= catch_up_ms < max_backlog_ms, max_speed >= 1, merge_over >= 1")

    def speed(self, backlog_ms: float) -> float | None:
        """Speech speed for a segment planned with ``backlog_ms`` queued; None: skip it."""
        if backlog_ms > self.max_backlog_ms:
            return None
        if backlog_ms <= self.catch_up_ms:
            return 1.0
        over = (backlog_ms - self.catch_up_ms) / (self.max_backlog_ms - self.catch_up_ms)
        return round(1.0 + (self.max_speed - 1.0) * over, 3)


class Timeline:
    """One language's output timeline."""

    def __init__(self, policy: SpeechPolicy = SpeechPolicy()) -> None:
        self.policy = policy
        self.end_ms = 0.0  # where the audio scheduled so far ends

    def backlog_ms(self, now_ms: float) -> float:
        return max(0.0, self.end_ms - now_ms)

    def speed(self, now_ms: float) -> float | None:
        return self.policy.speed(self.backlog_ms(now_ms))

    def place(self, ready_ms: float, duration_ms: float) -> float:
        """Schedule audio of ``duration_ms`` ready at ``ready_ms``; its start."""
        start = max(ready_ms, self.end_ms)
        self.end_ms = start + duration_ms
        return start
