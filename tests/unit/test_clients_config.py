"""Client settings: a bad one names its field; one key hash for two clients is refused."""

from __future__ import annotations

import pytest

from src.config import ConfigError
from src.tools.keys import key_sha256, new_key
from tests.support.configs import make_config

KEY_A = new_key()


@pytest.mark.parametrize(
    ("client", "field"),
    [
        ({"key_sha256": "abc"}, "key_sha256"),
        ({"key_sha256": key_sha256(KEY_A), "allowed_models": ["nope"]}, "allowed_models"),
        ({"key_sha256": key_sha256(KEY_A), "api_key": "x"}, "api_key"),
        ({"key_sha256": key_sha256(KEY_A), "budget": {"usd_per_day": -1}}, "usd_per_day"),
    ],
)
def test_bad_client_config_names_the_field(tmp_path, client, field):
    with pytest.raises(ConfigError, match=field):
        make_config(tmp_path, clients={"x": client})


def test_one_key_hash_for_two_clients_is_refused(tmp_path):
    digest = key_sha256(KEY_A)
    with pytest.raises(ConfigError, match="same key hash"):
        make_config(tmp_path, clients={"x": {"key_sha256": digest}, "y": {"key_sha256": [digest]}})
