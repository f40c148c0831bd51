"""``rxalpaca.notebook`` views of what is not a record: plain values, dicts, bad fields.

(The views in a real kernel: tests/test_notebooks.py.) Outside IPython a view has
no output area but follows its source all the same.
"""

from __future__ import annotations

import pytest
import reactivex

from rxalpaca import models
from rxalpaca.errors import ConfigurationError
from rxalpaca.notebook import live_log, live_table


def test_plain_values_show_as_one_value_column_and_the_view_ends_with_its_source() -> None:
    view = live_log(reactivex.of(1, [2, 3]), lines=5)
    try:
        assert view.snapshot() == (["value"], [["1"], ["2, 3"]])
        assert view._status() == "2 records · ended"
    finally:
        view.stop()


def test_dicts_show_their_keys_and_a_missing_key_is_blank() -> None:
    view = live_log(reactivex.of({"a": 1, "b": "x"}, {"a": 2}))
    try:
        assert view.snapshot() == (["a", "b"], [["1", "x"], ["2", ""]])
    finally:
        view.stop()


def test_a_malformed_timestamp_shows_as_its_error_and_a_failed_source_says_so() -> None:
    import msgspec

    bad = models.Trade(symbol="AAPL", raw_time=msgspec.Raw(b'"yesterday"'), id=1, price=1.0, size=1)
    source = reactivex.concat(reactivex.of(bad), reactivex.throw(RuntimeError("gone")))
    view = live_table(source, columns=["timestamp", "price"])
    try:
        columns, rows = view.snapshot()
        assert columns == ["symbol", "timestamp", "price"]
        assert rows == [["AAPL", "<ValueError>", "1.0"]]
        assert view._status() == "1 records · ended with RuntimeError: gone"
    finally:
        view.stop()


def test_bad_options_are_one_sentence() -> None:
    with pytest.raises(ConfigurationError, match="rows must be"):
        from rxalpaca.notebook import LiveView

        LiveView(reactivex.empty(), rows="all")
    with pytest.raises(ConfigurationError, match="interval must be"):
        live_log(reactivex.empty(), lines=0)
