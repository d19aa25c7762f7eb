"""``python -m aiodicom``: the same as the ``aiodicom`` command."""

import sys

from .cli import main

sys.exit(main())
