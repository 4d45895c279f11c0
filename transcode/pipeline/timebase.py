"""The time bases the pipeline converts between: milliseconds in (RTMP), 90 kHz video out."""

from fractions import Fraction

from ..types import VIDEO_TIMESCALE

MS = Fraction(1, 1000)
TB90K = Fraction(1, VIDEO_TIMESCALE)
