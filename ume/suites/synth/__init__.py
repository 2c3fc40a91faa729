"""The synthetic suite: a small world of coloured shapes, event videos and document pages.

:mod:`~ume.suites.synth.scenes` draws it (pure functions, no randomness). The synthetic
benchmark (the embedded default's evaluation data) is written from it in the real MMEB-V2
and UVRB layouts, so the loaders of :mod:`ume.suites` read it like the real suites; the
training-pair generator (:mod:`ume.data`) and the oracle annotator (:mod:`ume.annotate`)
draw on the same world.
"""
