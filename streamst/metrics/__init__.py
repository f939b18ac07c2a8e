"""Metering and evaluation: SimulEval latency, quality, and the ``instances.log`` format.

* :mod:`streamst.metrics.latency` -- AL, LAAL, DAL, AP, StartOffset, EndOffset (and ``_CA``),
  flicker and retractions;
* :mod:`streamst.metrics.quality` -- BLEU, chrF, optional COMET, quality retention;
* :mod:`streamst.metrics.instances` -- read/write SimulEval's ``instances.log``.
"""
