"""``python -m jaxlr._cli``: the ``jaxlr`` command."""

import sys

from jaxlr._cli.commands import main

sys.exit(main())
