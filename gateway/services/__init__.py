"""Operations shared by the CLI, the signed MQTT commands and the daemon (explicit
dependencies, audited, one place per operation)."""
