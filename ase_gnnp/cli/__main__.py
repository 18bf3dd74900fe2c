"""``python -m ase_gnnp.cli`` is ``ase-gnnp``."""

import sys

from ase_gnnp.cli import main

sys.exit(main())
