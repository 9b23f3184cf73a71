"""`make demo`: kvca end to end against the local Key Vault emulator (see run.py)."""
