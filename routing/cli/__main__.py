"""``python -m routing.cli``: the same as the ``crisis-dispatch`` command."""

import sys

from routing.cli import main

sys.exit(main())
