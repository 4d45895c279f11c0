"""AeThex Live media server: RTMP ingest, live registry and the ``aethex`` entry point."""

__version__ = "0.1.0"
