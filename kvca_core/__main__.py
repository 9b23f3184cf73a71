"""`python -m kvca_core`: the same as the `kvca` console script."""

import sys

from kvca_core.cli import main

sys.exit(main())
