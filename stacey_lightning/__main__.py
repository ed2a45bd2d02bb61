"""``python -m stacey_lightning SUBCOMMAND ...`` (see stacey_lightning.cli.SUBCOMMANDS)."""

import sys

from stacey_lightning.cli import main

sys.exit(main())
