"""``python -m rdcl``: the same as the ``rdcl`` command."""

from __future__ import annotations

import sys

from rdcl.cli import main

sys.exit(main())
