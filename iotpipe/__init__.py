"""iotpipe: MicroPython sensor boards → serial → MQTT → live charts in a browser."""

__version__ = "0.1.0"
