# One module per `leither` verb: each defines register(subparsers) and sets func on its parser.
