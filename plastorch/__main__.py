"""``python -m plastorch`` is the ``plastorch`` command (see :mod:`plastorch.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
