# Leither for boards: the core that runs unchanged on MicroPython and CPython.
# Importing the package costs nothing on a board: every feature lives in its own module.
"""Leither node core: MiMei storage, discovery, RPC and paired backup."""

FIRMWARE_VERSION = "0.1.0"
PROTOCOL_VERSION = 1
