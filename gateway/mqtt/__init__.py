"""Anonymized events out, Ed25519-signed commands in, over MQTT (aiomqtt)."""
