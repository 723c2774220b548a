# MicroPython freeze manifest: the Leither node frozen into an ESP32 firmware image, and into
# the 32-bit unix "stand-in" that `leither build --board esp32` builds to run and measure it
# here (options.standin). One manifest for both, so the stand-in's heap is the board's heap.
# Frozen bytecode runs from flash: only the node's objects live in the ~110 KB heap.
#
# Which modules: every firmware module but the other boards' ports and the host-only ones,
# read from board.json beside this file ("manifest": {"exclude_ports", "exclude_modules"}), the
# same list `leither build --board esp32` compiles into the .mpy/ROMFS bundle. The stand-in has
# no ESP32 pins or Wi-Fi, so it swaps port/esp32.py for port/unix.py (files for button and LED)
# and has port/posix.py (file modes for secrets) too.
#
# `leither build --board esp32` prints the command for a real image when it finds a
# MicroPython checkout with ports/esp32 (see boards/esp32/README.md).
import json
import os

options.defaults(standin=False)  # noqa: F821 - `options` is given by MicroPython's manifestfile

# A manifest runs with the current directory set to its own: board.json is beside it.
with open("board.json") as _f:
    _rules = json.load(_f).get("manifest", {})
_skip_ports = set(_rules.get("exclude_ports", []))
_skip_modules = set(_rules.get("exclude_modules", []))
if options.standin:  # noqa: F821
    _skip_ports = (_skip_ports | {"esp32"}) - {"unix", "posix"}

_firmware = os.path.abspath("../../firmware")
_files = []
for _dir, _subdirs, _names in os.walk(os.path.join(_firmware, "leither")):
    _subdirs.sort()
    for _name in sorted(_names):
        if not _name.endswith(".py"):
            continue
        _rel = os.path.relpath(os.path.join(_dir, _name), _firmware)
        _mod = _rel[:-3].replace(os.sep, ".")
        _parts = _mod.split(".")
        if _mod in _skip_modules or (_parts[1:2] == ["port"] and _parts[-1] in _skip_ports):
            continue
        _files.append(_rel[len("leither/"):])

if options.standin:  # noqa: F821
    include("$(MPY_DIR)/extmod/asyncio")  # noqa: F821 - what the ESP32 port's manifest brings
else:
    include("$(PORT_DIR)/boards/manifest.py")  # noqa: F821 - asyncio, neopixel, ...
package("leither", files=_files, base_path=_firmware, opt=1)  # noqa: F821
