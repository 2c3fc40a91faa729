"""Benchmark suites: which tasks exist (the registry) and how their data is read (the loaders).

MMEB-V2, UVRB and the synthetic suite share one :class:`~ume.suites.registry.TaskSpec` per
task and one set of loaders per data layout; the synthetic suite's writer produces the same
layouts. Nothing here runs a model: evaluation (:mod:`ume.eval`) and the data stage
(:mod:`ume.data`) build on it.
"""
