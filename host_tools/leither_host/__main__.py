# `python -m leither_host` is the `leither` command.
import sys

from leither_host.cli import main

sys.exit(main())
