# Entry point: MicroPython runs main.py after boot.py at every hard reset (not after a
# soft reset in the raw REPL, which is how mpremote keeps the board quiet while it works).
# Before the program starts, and before the watchdog that cannot be stopped again, a user
# can always get back to the REPL (docs/firmware.md, "Escape hatch"):
#   - a file named iotpipe.stop on the board's flash,
#   - the config's stop_pin held low (to GND) while the board powers up,
#   - Ctrl-C during the boot_delay_ms window announced below.
import time

import board
import boardconfig

config, problems = boardconfig.load_config()
why = boardconfig.stop_requested(config)
del boardconfig
board.forget("boardconfig", "netconfig")  # needed only until here
if why:
    print("iotpipe: not starting (%s); this is the REPL" % why)
else:
    if config["boot_delay_ms"]:
        print("iotpipe: starting in %d ms; Ctrl-C now for the REPL" % config["boot_delay_ms"])
        time.sleep_ms(config["boot_delay_ms"])
    import loop

    loop.main(config, problems)
