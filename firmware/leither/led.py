# LED patterns the user reads: steady, pairing window, error, and the pairing code blinked out.
# Pure timing logic; the board port only switches the pin.
"""LED pattern driver."""

import asyncio

# (on ms, off ms) per step; a pattern repeats until replaced.
PATTERNS = {
    "off": None,
    "on": None,
    "pairing": ((500, 500),),  # 1 Hz blink: the pairing window is open
    "error": ((100, 100),),  # fast blink: pairing aborted or failed
    "claimed": ((60, 60), (60, 1000)),  # double flash: owner present
}
_DIGIT_ON_MS = 250
_DIGIT_OFF_MS = 250
_DIGIT_GAP_MS = 1200
_CODE_GAP_MS = 3000


def code_steps(code):
    """Blink a short authentication code: digit d as d flashes (0 as ten), gaps between digits."""
    steps = []
    for ch in code:
        n = int(ch) or 10
        for i in range(n):
            steps.append((_DIGIT_ON_MS, _DIGIT_GAP_MS if i == n - 1 else _DIGIT_OFF_MS))
    if steps:
        steps[-1] = (steps[-1][0], _CODE_GAP_MS)
    return tuple(steps)


class LED:
    """Runs one pattern at a time on a board's LED (set_level(bool)) and reports it."""

    def __init__(self, board):
        self.board = board
        self.pattern = "off"
        self._steps = None
        self._task = None

    def show(self, pattern, code=None):
        if pattern == self.pattern and code is None:
            return
        self.pattern = pattern if code is None else "code:" + code
        self._steps = code_steps(code) if code is not None else PATTERNS.get(pattern)
        self.board.led_pattern(self.pattern)
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._steps:
            self._task = asyncio.create_task(self._run(self._steps))
        else:
            self.board.set_led(pattern == "on")

    async def _run(self, steps):
        try:
            while True:
                for on_ms, off_ms in steps:
                    self.board.set_led(True)
                    await asyncio.sleep(on_ms / 1000)
                    self.board.set_led(False)
                    await asyncio.sleep(off_ms / 1000)
        except asyncio.CancelledError:
            pass

    def stop(self):
        if self._task is not None:
            self._task.cancel()
            self._task = None
