"""Client API keys: ``python -m src.keys new CLIENT_ID`` makes one.

The gateway stores only the SHA-256 of a key (``clients.<id>.key_sha256``);
the key itself is printed once and never kept. ``hash`` prints the hash of
an existing key read from stdin, for importing keys made elsewhere.
"""

from __future__ import annotations

import hashlib
import secrets
import sys

import orjson

KEY_PREFIX = "gwk-"


def new_key() -> str:
    """A new random key: 256 bits, URL-safe."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_sha256(key: str) -> str:
    """The lowercase hex SHA-256 of a key, as the config holds it."""
    return hashlib.sha256(key.encode()).hexdigest()


def _new(client_id: str) -> str:
    key = new_key()
    digest = key_sha256(key)
    snippet = orjson.dumps({client_id: {"key_sha256": digest}}).decode()[1:-1]
    return (
        f"client_id:  {client_id}\n"
        f"key:        {key}\n"
        f"key_sha256: {digest}\n"
        "\n"
        "Give the key to the client now: it is not stored and cannot be shown again.\n"
        'Add the client to the "clients" section of the config, then reload the gateway:\n'
        f"  {snippet}\n"
    )


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "new" and argv[1].strip():
        sys.stdout.write(_new(argv[1]))
        return 0
    if argv == ["hash"]:
        key = sys.stdin.readline().strip()
        if not key:
            print("keys: no key on stdin", file=sys.stderr)
            return 2
        print(key_sha256(key))
        return 0
    print(
        "usage: python -m src.keys new CLIENT_ID   print a new key and its hash\n"
        "       python -m src.keys hash            print the hash of a key read from stdin",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
