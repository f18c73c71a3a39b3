"""The Mosquitto configuration iotpipe owns: its files, logins, ACL, TLS and reload."""
