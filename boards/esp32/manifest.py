# MicroPython freeze manifest for an ESP32 firmware image with Leither built in.
# Frozen bytecode runs from flash, so the ~150 KB the modules take in RAM when imported from
# .mpy files stays free for data: the way to run a full node in an ESP32-WROOM's ~110 KB heap.
# Build (in a MicroPython checkout, ports/esp32):
#   make BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/leither/boards/esp32/manifest.py \
#        CFLAGS_EXTRA="-DMICROPY_HW_ENABLE_MDNS_QUERIES=0 -DMICROPY_HW_ENABLE_MDNS_RESPONDER=0"
# The two flags keep ESP-IDF's own mDNS responder off UDP 5353 (see firmware/leither/port/net.py).
include("$(PORT_DIR)/boards/manifest.py")
package("leither", base_path="../../firmware", opt=1)
