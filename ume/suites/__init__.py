"""Benchmark suites: which tasks exist (the registry) and how their data is read (the loaders).

MMEB-V2, UVRB and the synthetic suite share one :class:`~ume.suites.registry.TaskSpec` per
task and one set of loaders per data layout; the synthetic suite's writer produces the same
layouts, read where users have them (VLM2Vec's table of local paths). Whether a task's data
is there is :func:`ume.suites.check.task_status`'s verdict, shared by evaluation and
``python -m ume check-data``. Nothing here runs a model: evaluation (:mod:`ume.eval`) and
the data stage (:mod:`ume.data`) build on it.
"""
