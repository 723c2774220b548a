# `python -m leither --root DIR ...` and `micropython -m leither --root DIR ...`
import sys

from .node import main

sys.exit(main())
