"""The Mosquitto configuration iotpipe owns, and the command that runs Mosquitto with it."""
