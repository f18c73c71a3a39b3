"""MicroPython firmware, shipped as package data so the host tools can find and deploy it."""
