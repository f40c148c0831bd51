"""The option records: flat keyword options and records build the same server."""

from __future__ import annotations

import pytest

from rxalpaca.testing import (
    AlpacaStreamServer,
    AuthConfig,
    DeliveryConfig,
    LogConfig,
    ProtocolConfig,
    ServerConfig,
    StreamsConfig,
)


def test_replace_routes_each_option_to_its_record() -> None:
    cfg = ServerConfig().replace(
        connection_limit=2, lag_messages=3, batch_size=10, closed_logs=None, test_stream=False
    )
    assert cfg == ServerConfig(
        auth=AuthConfig(connection_limit=2),
        protocol=ProtocolConfig(lag_messages=3),
        delivery=DeliveryConfig(batch_size=10),
        logs=LogConfig(closed_logs=None),
        streams=StreamsConfig(test_stream=False),
    )


def test_records_are_frozen_and_normalised() -> None:
    cfg = ServerConfig().replace(symbol_limit_channels=["trades"], batch_size=0)
    assert cfg.protocol.symbol_limit_channels == ("trades",)
    assert cfg.delivery.batch_size == 1
    with pytest.raises(AttributeError):
        cfg.auth.connection_limit = 3  # type: ignore[misc]


def test_an_unknown_option_names_the_valid_ones() -> None:
    with pytest.raises(
        TypeError, match=r"'conection_limit' is not a server option.*connection_limit"
    ):
        ServerConfig().replace(conection_limit=2)
    with pytest.raises(TypeError, match="not a server option"):
        AlpacaStreamServer(conection_limit=2)  # type: ignore[call-arg]


def test_the_server_takes_records_and_flat_options_flat_last() -> None:
    server = AlpacaStreamServer(
        auth=AuthConfig(connection_limit=5, auth_timeout=1.0),
        config=ServerConfig(logs=LogConfig(sent_log_size=0)),
        connection_limit=2,
    )
    assert server.config.auth == AuthConfig(connection_limit=2, auth_timeout=1.0)
    assert server.config.logs.sent_log_size == 0


def test_set_options_changes_the_config_and_rejects_unknown_names() -> None:
    with AlpacaStreamServer(test_stream=False) as server:
        server.set_options(connection_limit=3, timestamp_width="cycle")
        assert server.config.auth.connection_limit == 3
        assert server.config.delivery.timestamp_width == "cycle"
        with pytest.raises(AttributeError, match="not a server option"):
            server.set_options(nope=1)  # type: ignore[call-arg]
        assert server.config.auth.connection_limit == 3
