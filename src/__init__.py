"""The governed LLM gateway.

Installed, the package is ``llm_gateway`` and its command ``llm-gateway``; in the
repository it is also importable as ``src`` (``uvicorn src.app:app``). Every import
inside it is relative, so both names run the same code.
"""

__version__ = "0.2.0"
