"""`python -m imnet` is the `imnet` command."""

import sys

from imnet.cli import main

sys.exit(main())
