# `python -m leither --root DIR ...` and `micropython -m leither --root DIR ...`
import sys

from leither.node import main

sys.exit(main())
