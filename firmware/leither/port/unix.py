# The simulated board: the firmware on this machine (MicroPython unix port or CPython).
# Button: writing the file <root>/gpio/button is a press ("long" in it makes a long press);
# the LED's pattern is mirrored to <root>/gpio/led so tests and the CLI can read it.
"""Board port for the unix (simulated) board."""

import asyncio
import os

from ..compat import makedirs

_POLL_MS = 50  # button file poll period: a press is seen within 50 ms, at ~20 stats/s


class Board:
    name = "unix"

    def __init__(self, root, config=None):
        self.root = root
        self.gpio = root + "/gpio"
        makedirs(self.gpio)
        self.level = False
        self._button = self.gpio + "/button"
        self._led = self.gpio + "/led"
        # A press written while the node was down is stale: drop it at boot.
        try:
            os.remove(self._button)
        except OSError:
            pass
        self.led_pattern("off")

    def set_led(self, on):
        self.level = bool(on)

    def led_pattern(self, pattern):
        tmp = self._led + ".tmp"
        with open(tmp, "w") as f:
            f.write(pattern + "\n")
        os.rename(tmp, self._led)

    async def watch_button(self, on_press):
        """Call on_press("short" | "long") for each press; runs until cancelled."""
        while True:
            try:
                with open(self._button) as f:
                    text = f.read()
                os.remove(self._button)
            except OSError:
                text = None
            if text is not None:
                on_press("long" if "long" in text else "short")
            await asyncio.sleep(_POLL_MS / 1000)

    async def network_up(self):
        """The unix board uses the host's network as it is."""
        return True

    def free_heap(self):
        import gc

        if hasattr(gc, "mem_free"):
            gc.collect()  # free heap means live data only, not garbage awaiting collection
            return gc.mem_free()
        return None
