"""A synthetic zh<->en corpus with long-range reordering, spoken by espeak-ng (issue 21).

:mod:`~streamst.corpus.lexicon` (the words), :mod:`~streamst.corpus.grammar` (sentences and
their reorder distance), :mod:`~streamst.corpus.build` (splits, manifests, speech).
"""
