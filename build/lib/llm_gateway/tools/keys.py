"""Client API keys: ``llm-gateway keys new CLIENT_ID`` makes one.

The gateway stores only the SHA-256 of a key (``clients.<id>.key_sha256``);
the key itself is printed once and never kept. ``hash`` prints the hash of
an existing key read from stdin, for importing keys made elsewhere.
"""

from __future__ import annotations

import argparse
import hashlib
import secrets
import sys
from typing import Any

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


def add_command(commands: Any) -> None:
    command = commands.add_parser(
        "keys", help="make a client API key", description=__doc__.split("\n\n")[1]
    )
    actions = command.add_subparsers(dest="action", required=True, metavar="ACTION")
    new = actions.add_parser("new", help="print a new key for CLIENT_ID and its hash")
    new.add_argument("client_id", metavar="CLIENT_ID")
    new.set_defaults(run=_run_new)
    hashed = actions.add_parser("hash", help="print the hash of a key read from stdin")
    hashed.set_defaults(run=_run_hash)


def _run_new(args: argparse.Namespace) -> int:
    if not args.client_id.strip():
        print("keys: CLIENT_ID is empty", file=sys.stderr)
        return 2
    sys.stdout.write(_new(args.client_id))
    return 0


def _run_hash(args: argparse.Namespace) -> int:
    key = sys.stdin.readline().strip()
    if not key:
        print("keys: no key on stdin", file=sys.stderr)
        return 2
    print(key_sha256(key))
    return 0
