"""The tamper-evident audit trail: canonical entries in an append-only RFC 6962 Merkle tree, with
Ed25519-signed checkpoints. See docs/audit.md for the design and the auditor's guide."""

__all__: list[str] = []
