"""The pieces of the clip smart cut (``transcode.smart_cut`` is the entry point).

``reader`` reads a recording's fMP4 files back into samples, ``plan`` decides per GOP what is
copied and what is re-encoded (pure), ``reencode`` does the PyAV work at the edges, ``mp4``
writes the progressive MP4 and ``output`` the HLS rendition set.
"""
