"""Governance: who calls (identity and keys) and what they may do (policies, redaction)."""
