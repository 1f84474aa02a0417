"""Privacy: people and consent ledger, template vault, zones, audit, retention, compliance."""
