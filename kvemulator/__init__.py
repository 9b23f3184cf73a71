"""kvemulator: a local Azure Key Vault that the real Azure SDK clients talk to over HTTPS.

A dev and test tool for kvca; product code (kvca_core, function_app.py) never imports it.
"""

from kvemulator._fidelity import Fidelity
from kvemulator.emulator import AsyncEmulatorCredential, Emulator, EmulatorCredential

__all__ = ["AsyncEmulatorCredential", "Emulator", "EmulatorCredential", "Fidelity"]
