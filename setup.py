"""Only the compiled part of the build; everything else is in pyproject.toml.

The RTMP chunk layer in C (issue 14: ingest and restream CPU against nginx-rtmp). The
pure-Python classes in mediaserver/rtmp/chunk.py and chunk_out.py are its reference, and the
fallback for a checkout run without building it. setup.py rather than pyproject's
``ext-modules`` table, which setuptools still calls experimental.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "mediaserver.rtmp._chunks",
            sources=["mediaserver/rtmp/_chunks.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            # Not optional: a failed build must stop the install, not leave the previous
            # build (or none) in place unnoticed.
        )
    ]
)
