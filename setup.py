"""Only the compiled part of the build; everything else is in pyproject.toml.

The RTMP chunk reader in C (issue 14: ingest CPU against nginx-rtmp). The pure-Python reader in
mediaserver/rtmp/chunk.py is its reference and the fallback where it is not built. setup.py
rather than pyproject's ``ext-modules`` table, which setuptools still calls experimental.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "mediaserver.rtmp._chunks",
            sources=["mediaserver/rtmp/_chunks.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            # Without a compiler the install still works, on the reference reader (the test
            # suite fails then: test_the_compiled_reader_is_built_and_used).
            optional=True,
        )
    ]
)
