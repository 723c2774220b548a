# MicroPython board definition for a Leither ESP32 image: ESP32_GENERIC (ESP32-WROOM-32, 4 MB
# flash) with the node frozen in (../manifest.py) and ESP-IDF's own mDNS responder left out
# (mpconfigboard.h), so UDP 5353 is free for the node's. Build with
#   make -C <micropython>/ports/esp32 BOARD_DIR=<this directory>
# (`leither build --board esp32 --micropython-src <checkout>` prints the exact line).
include(${MICROPY_PORT_DIR}/boards/ESP32_GENERIC/mpconfigboard.cmake)
set(MICROPY_FROZEN_MANIFEST ${MICROPY_BOARD_DIR}/../manifest.py)
