"""A service is named as its function is written: ``def fix_totals`` is ``fix_totals``, in
its group (``<app>.fix_totals``), in the graph and on the command line; ``@app.service("name",
...)`` names it otherwise. A name that cannot name a consumer group and its retry stream is
refused, and asking for ``fix-totals`` says which service was meant."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import BaseModel

from millstream.cli.main import cli
from millstream.errors import InvalidRequestError
from millstream.observe import to_text
from millstream.service import App


class Order(BaseModel):
    id: int


def shop() -> App:
    app = App("shop")

    @app.service(inputs={"orders": Order})
    def fix_totals(order: Order) -> None:
        """Fixes totals."""

    @app.service("send-invoices", inputs={"orders": Order})
    def sender(order: Order) -> None: ...

    return app


def refusal(action: Any) -> str:
    with pytest.raises(InvalidRequestError) as caught:
        action()
    return str(caught.value)


def test_a_service_is_named_as_its_function_is_written() -> None:
    app = shop()
    assert list(app.services) == ["fix_totals", "send-invoices"]
    assert app.get("fix_totals").group == "shop.fix_totals"
    assert app.get("send-invoices").group == "shop.send-invoices"
    assert "fix_totals" in to_text(app)


def test_a_near_miss_names_the_service_that_was_meant() -> None:
    app = shop()
    assert refusal(lambda: app.get("fix-totals")) == (
        "app 'shop' has no service 'fix-totals'; did you mean 'fix_totals'? (a service is "
        "named as its function is written); its services: fix_totals, send-invoices")
    assert refusal(lambda: app.get("send_invoices")) == (
        "app 'shop' has no service 'send_invoices'; did you mean 'send-invoices'? (a service "
        "is named as its function is written); its services: fix_totals, send-invoices")


def test_a_name_that_cannot_name_a_group_is_refused() -> None:
    app = App("shop")

    def named(name: str) -> None:
        app.service(name, inputs={"orders": Order})(lambda order: None)

    advice = ("cannot name a consumer group and its retry stream: use up to 100 letters, "
              "digits, '_' and '-', starting with a letter or digit;")
    assert refusal(lambda: named("a<b>&c")) == f"service name 'a<b>&c' {advice} choose another"
    assert refusal(lambda: named("-x")) == f"service name '-x' {advice} choose another"
    assert refusal(lambda: named("x" * 101)).startswith(f"service name '{'x' * 101}' {advice}")
    assert refusal(lambda: app.service(inputs={"orders": Order})(lambda order: None)) == (
        f"service name '<lambda>' {advice} give the service a name: "
        "@app.service('my-service', inputs=...)")
    assert app.services == {}


@pytest.fixture
def shop_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    (tmp_path / "named_shop.py").write_text(
        "from tests.service.test_service_names import shop\n\napp = shop()\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "named_shop"
    sys.modules.pop("named_shop", None)


def test_the_command_line_names_the_service_that_was_meant(shop_module: str) -> None:
    result = CliRunner().invoke(cli, ["run", f"{shop_module}:app", "fix-totals"])
    assert result.exit_code != 0
    assert "app 'shop' has no service 'fix-totals'; did you mean 'fix_totals'?" in " ".join(
        result.stderr.split())
