"""``python -m mediaserver`` is the ``aethex`` command."""

import sys

from mediaserver.cli import main

sys.exit(main())
