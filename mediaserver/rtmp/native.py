"""The compiled half of the RTMP core (``_chunks.c``): the chunk reader and the chunker.

Issue 14: ingest and restreaming used twice nginx-rtmp's CPU, and most of it was the chunk
layer running in the interpreter. ``_chunks`` is built by ``make`` (setup.py); the pure-Python
classes in chunk.py and chunk_out.py stay as the reference it is tested against, and as the
fallback where it is not built. ``AETHEX_RTMP_PURE=1`` selects them anyway (to measure one
against the other in the same checkout).
"""

from __future__ import annotations

import os
from types import ModuleType


def _load() -> ModuleType | None:
    if os.environ.get("AETHEX_RTMP_PURE", "") == "1":
        return None
    try:
        from . import _chunks  # noqa: PLC0415 - optional: built by make, may be missing
    except ImportError:  # not built: a source checkout run without `make`
        return None
    return _chunks


NATIVE = _load()

__all__ = ["NATIVE"]
