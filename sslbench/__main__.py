"""``python -m sslbench`` runs the CLI."""

import sys

from sslbench.cli import main

sys.exit(main())
