"""Transitional re-export: the offline switches now live in :mod:`ume.offline`.

Kept only so that ``ume/config.py`` (being rewritten in parallel) imports until it reads
``from ume.offline import looks_like_hub_id``; delete this file then. New code imports
:mod:`ume.offline`.
"""

from ume.offline import OFFLINE_ENV, looks_like_hub_id, set_offline_env

__all__ = ["OFFLINE_ENV", "looks_like_hub_id", "set_offline_env"]
