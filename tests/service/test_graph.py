"""The topology graph: the model, its text and SVG renderings, and `millstream graph`."""

from __future__ import annotations

import copy
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from pydantic import BaseModel

from millstream.cli.graph import graph_command
from millstream.cli.main import cli
from millstream.observe import Edge, to_svg, to_text, topology
from millstream.service._app import App
from millstream.service._context import Context

SVG = "{http://www.w3.org/2000/svg}"


class Probe(BaseModel):
    id: str
    seconds: float


def video_app() -> App:
    """Four services: a probe and a thumbnailer using the file store (exactly-once: the join
    that reads them keeps state), a stateful exactly-once join of three streams (``likes``
    declared up front as JSON) using a table, an indexer."""
    app = App("videos", partitions=4)
    app.stream("likes", dict)

    @app.service(inputs="uploads", outputs={"probes": Probe}, uses=["files"],
                 exactly_once=True)
    def probe(upload: bytes) -> None:
        """Probe each upload for its duration."""

    @app.service(inputs={"probes": Probe}, outputs="thumbs", uses=["files"],
                 exactly_once=True)
    def thumbnail(probe: Probe) -> None: ...

    @app.service(inputs=["probes", "thumbs", "likes"], outputs="catalog", stateful=True,
                 exactly_once=True, uses=["tables:videos"])
    def catalog(value: object, ctx: Context) -> None:
        """Join probes, thumbnails and likes into catalog entries."""

    @app.service(inputs="catalog", outputs="search-index")
    def indexer(entry: bytes) -> None: ...

    return app


VIDEO_TEXT = """\
videos: 4 services, 6 streams, 2 stores

layer 1
  uploads ─▶ [probe] ─▶ probes  (exactly-once)
      Probe each upload for its duration.
      uses files

layer 2
  probes ─▶ [thumbnail] ─▶ thumbs  (exactly-once)
      uses files

layer 3
  probes, thumbs, likes ─▶ [catalog] ─▶ catalog  (stateful, exactly-once)
      Join probes, thumbnails and likes into catalog entries.
      uses tables:videos

layer 4
  catalog ─▶ [indexer] ─▶ search-index

  stream        payload                 written by  read by
  likes         json, 4 partitions      —           catalog
  uploads       bytes, 4 partitions     —           probe
  probes        Probe v1, 4 partitions  probe       thumbnail, catalog
  thumbs        bytes, 4 partitions     thumbnail   catalog
  catalog       bytes, 4 partitions     catalog     indexer
  search-index  bytes, 4 partitions     indexer     —
"""


def edges_of(app: App, **options: bool) -> Counter[tuple[str, str, str]]:
    return Counter((e.kind, e.source, e.target)
                   for e in topology(app, **options).edges)


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return root


def arrows(root: ET.Element) -> list[tuple[str, str, str, str]]:
    """(stream, from, to, label) of every drawn arrow."""
    out = []
    for g in root.iter(f"{SVG}g"):
        if "edge" in g.get("class", "").split():
            label = g.find(f"{SVG}text[@class='stream-label']")
            assert label is not None
            assert g.find(f"{SVG}path[@class='stream']") is not None
            out.append((g.get("data-stream", ""), g.get("data-from", ""), g.get("data-to", ""),
                        label.text or ""))
    return out


# -- the model -------------------------------------------------------------------------------


def test_edges_are_exactly_the_declared_inputs_outputs_and_stores() -> None:
    assert edges_of(video_app()) == Counter({
        ("input", "stream:uploads", "service:probe"): 1,
        ("input", "stream:probes", "service:thumbnail"): 1,
        ("input", "stream:probes", "service:catalog"): 1,
        ("input", "stream:thumbs", "service:catalog"): 1,
        ("input", "stream:likes", "service:catalog"): 1,
        ("input", "stream:catalog", "service:indexer"): 1,
        ("output", "service:probe", "stream:probes"): 1,
        ("output", "service:thumbnail", "stream:thumbs"): 1,
        ("output", "service:catalog", "stream:catalog"): 1,
        ("output", "service:indexer", "stream:search-index"): 1,
        ("uses", "service:probe", "store:files"): 1,
        ("uses", "service:thumbnail", "store:files"): 1,
        ("uses", "service:catalog", "store:tables:videos"): 1,
    })


def test_nodes_carry_payload_partitions_marks_and_descriptions() -> None:
    topo = topology(video_app())
    assert [n.name for n in topo.of_kind("service")] == [
        "probe", "thumbnail", "catalog", "indexer"]
    assert [n.name for n in topo.of_kind("store")] == ["files", "tables:videos"]
    assert topo.node("stream:probes").detail == "Probe v1, 4 partitions"
    assert topo.node("stream:likes").detail == "json, 4 partitions"
    catalog = topo.node("service:catalog")
    assert catalog.detail == "stateful, exactly-once"
    assert catalog.description == "Join probes, thumbnails and likes into catalog entries."
    assert topo.node("service:indexer").detail == ""
    assert not any(n.platform for n in topo.nodes)


def test_layers_are_the_longest_path_from_the_source_streams() -> None:
    layers = {n.id: n.layer for n in topology(video_app()).nodes}
    assert layers == {
        "stream:likes": 0, "stream:uploads": 0,
        "service:probe": 1, "stream:probes": 2,
        "service:thumbnail": 3, "stream:thumbs": 4,
        # probes (2) also feeds the join directly: the longest path, through thumbs, wins
        "service:catalog": 5, "stream:catalog": 6,
        "service:indexer": 7, "stream:search-index": 8,
        "store:files": None, "store:tables:videos": None,
    }


def test_platform_streams_are_outputs_of_every_service_only_when_asked() -> None:
    app = video_app()
    extra = edges_of(app, include_platform=True) - edges_of(app)
    services = ["probe", "thumbnail", "catalog", "indexer"]
    assert extra == Counter(
        [("output", f"service:{s}", "stream:millstream.metrics") for s in services]
        + [("output", f"service:{s}", "stream:millstream.exceptions") for s in services]
        + [("output", "service:catalog", "stream:millstream.checkpoints")]  # stateful only
    )
    topo = topology(app, include_platform=True)
    assert topo.node("stream:millstream.metrics").platform
    assert topo.node("stream:millstream.checkpoints").layer == 6


def test_a_cycle_is_cut_and_still_layered() -> None:
    app = App("loop")

    @app.service(inputs=["seeds", "feedback"], outputs="scored")
    def score(value: bytes) -> None: ...

    @app.service(inputs="scored", outputs=["feedback", "done"])
    def judge(value: bytes) -> None: ...

    topo = topology(app)
    assert Edge("output", "service:judge", "stream:feedback") in topo.edges
    assert {n.name: n.layer for n in topo.of_kind("service")} == {"score": 1, "judge": 3}
    assert topo.node("stream:feedback").layer == 4

    root = parse(to_svg(app))
    assert sorted(a[:3] for a in arrows(root)) == [
        ("done", "service:judge", "sink:done"),
        ("feedback", "service:judge", "service:score"),
        ("scored", "service:score", "service:judge"),
        ("seeds", "source:seeds", "service:score"),
    ]


# -- text ------------------------------------------------------------------------------------


def test_text_lists_services_by_layer_then_the_streams() -> None:
    assert to_text(video_app()) == VIDEO_TEXT


def test_text_with_platform_streams_shows_them_as_outputs() -> None:
    text = to_text(video_app(), include_platform=True)
    assert ("  probes, thumbs, likes ─▶ [catalog] ─▶ catalog, millstream.metrics, "
            "millstream.exceptions, millstream.checkpoints  (stateful, exactly-once)") in text
    rows = [line.split("  ") for line in text.splitlines()]
    assert [[c.strip() for c in row if c.strip()] for row in rows
            if "millstream.checkpoints" in row] == [
        ["millstream.checkpoints", "platform, 1 partition", "catalog", "—"]]


# -- SVG -------------------------------------------------------------------------------------


def test_svg_draws_boxes_cylinders_and_one_labelled_arrow_per_stream_hop() -> None:
    root = parse(to_svg(video_app()))
    rects = list(root.iter(f"{SVG}rect"))
    assert len(rects) == 4
    assert all("service" in r.get("class", "").split() for r in rects)
    stores = [p for p in root.iter(f"{SVG}path") if p.get("class") == "store"]
    assert len(stores) == 2
    assert [g.get("data-store") for g in root.iter(f"{SVG}g")
            if g.get("class") == "store"] == ["files", "tables:videos"]
    assert sorted(arrows(root)) == sorted([
        ("likes", "source:likes", "service:catalog", "likes"),
        ("uploads", "source:uploads", "service:probe", "uploads"),
        ("probes", "service:probe", "service:thumbnail", "probes"),
        ("probes", "service:probe", "service:catalog", "probes"),
        ("thumbs", "service:thumbnail", "service:catalog", "thumbs"),
        ("catalog", "service:catalog", "service:indexer", "catalog"),
        ("search-index", "service:indexer", "sink:search-index", "search-index"),
    ])
    uses = sorted((line.get("data-service"), line.get("data-store"))
                  for line in root.iter(f"{SVG}line"))
    assert uses == [("catalog", "tables:videos"), ("probe", "files"), ("thumbnail", "files")]
    circles = Counter(c.get("class") for c in root.iter(f"{SVG}circle"))
    assert circles == Counter({"source": 2, "sink": 1, "uses": 3})


def test_svg_columns_follow_the_layers_and_marks_show_on_the_boxes() -> None:
    root = parse(to_svg(video_app()))
    x = {}
    for g in root.iter(f"{SVG}g"):
        if g.get("class") == "service":
            rect = g.find(f"{SVG}rect")
            assert rect is not None
            x[g.get("data-service")] = float(rect.get("x", "nan"))
            if g.get("data-service") == "catalog":
                assert rect.get("class") == "service stateful exactly-once"
                texts = [t.text for t in g.iter(f"{SVG}text")]
                assert texts == ["catalog", "stateful · exactly-once"]
    assert x["probe"] < x["thumbnail"] < x["catalog"] < x["indexer"]


def test_svg_platform_streams_are_optional_and_dashed() -> None:
    plain = arrows(parse(to_svg(video_app())))
    full = arrows(parse(to_svg(video_app(), include_platform=True)))
    added = Counter(a[0] for a in full) - Counter(a[0] for a in plain)
    assert added == Counter({"millstream.metrics": 4, "millstream.exceptions": 4,
                             "millstream.checkpoints": 1})
    root = parse(to_svg(video_app(), include_platform=True))
    platform = [g for g in root.iter(f"{SVG}g") if g.get("class") == "edge platform"]
    assert len(platform) == 9


def test_svg_escapes_every_text() -> None:
    app = App("shop")

    # a service name cannot hold markup (it is refused: test_service_names.py); its
    # description, the title and a store's name can
    @app.service(name="a_b-c", inputs="orders", uses=["tables:<x>"])
    def handler(order: bytes) -> None:
        """Runs <script>alert("doc")</script> & more."""

    svg = to_svg(app, title='<script>alert("title")</script>')
    assert "<script" not in svg
    root = parse(svg)
    assert not list(root.iter(f"{SVG}script"))
    title = root.find(f"{SVG}title")
    assert title is not None
    assert title.text == '<script>alert("title")</script>'
    service = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "service")
    assert service.get("data-service") == "a_b-c"
    tip = service.find(f"{SVG}title")
    assert tip is not None
    assert tip.text == 'a_b-c — Runs <script>alert("doc")</script> & more.'
    store = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "store")
    assert store.get("data-store") == "tables:<x>"


def test_svg_of_an_app_without_services_is_still_a_document() -> None:
    root = parse(to_svg(App("empty")))
    assert not list(root.iter(f"{SVG}rect"))
    assert to_text(App("empty")) == "empty: 0 services, 0 streams, 0 stores\n"


# -- the command -----------------------------------------------------------------------------


def with_graph() -> click.Group:
    """The top-level command with `graph` on it (its own copy until main.py registers it), so
    errors go through the same one-red-line handling as every command."""
    if "graph" in cli.commands:
        return cli
    group = copy.copy(cli)
    group.commands = {**cli.commands, "graph": graph_command}
    return group


@pytest.fixture
def app_module(tmp_path: Path) -> Iterator[str]:
    """A module `graphed_videos.py` in the (temporary) current directory holding the app."""
    (tmp_path / "graphed_videos.py").write_text(
        "from tests.service.test_graph import video_app\n\napp = video_app()\nnot_an_app = 3\n"
    )
    yield "graphed_videos"
    sys.modules.pop("graphed_videos", None)
    if str(tmp_path) in sys.path:
        sys.path.remove(str(tmp_path))


def invoke(*args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(with_graph(), ["graph", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == code, (result.stdout, result.stderr)
    return result


def test_graph_prints_the_text_by_default(app_module: str) -> None:
    result = invoke(f"{app_module}:app")
    assert result.stdout == VIDEO_TEXT
    assert result.stderr == ""


def test_graph_prints_svg_to_stdout(app_module: str) -> None:
    for args in (["--format", "svg"], ["--svg", "-"]):
        result = invoke(f"{app_module}:app", *args)
        root = parse(result.stdout)
        assert len(list(root.iter(f"{SVG}rect"))) == 4


def test_graph_writes_svg_to_a_file_with_platform_streams(app_module: str,
                                                          tmp_path: Path) -> None:
    out = tmp_path / "videos.svg"
    result = invoke(f"{app_module}:app", "--svg", str(out), "--platform")
    assert result.stdout == (f"wrote the graph of app 'videos' to {out} "
                             "(4 services, 9 streams, 2 stores)\n")
    assert out.read_text() == to_svg(video_app(), include_platform=True)


def test_graph_refuses_svg_file_with_text_format(app_module: str) -> None:
    result = invoke(f"{app_module}:app", "--svg", "x.svg", "--format", "text", code=2)
    assert "--svg writes SVG" in result.stderr
    assert not Path("x.svg").exists()


def test_graph_reports_an_unwritable_file_in_one_line(app_module: str,
                                                       tmp_path: Path) -> None:
    result = invoke(f"{app_module}:app", "--svg", str(tmp_path / "no" / "such" / "g.svg"),
                    code=1)
    assert "Could not open file" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("nosuchmodule:app", "error: module 'nosuchmodule' of app reference "
                             "'nosuchmodule:app' was not found from "),
        (":app", "error: app reference ':app' names no module; write module:app"),
    ],
)
def test_graph_of_a_bad_reference_is_one_red_line(reference: str, message: str) -> None:
    result = invoke(reference, code=1)
    assert result.stdout == ""
    assert result.stderr.startswith(message)
    assert len(result.stderr.splitlines()) == 1


def test_graph_of_something_that_is_not_an_app(app_module: str) -> None:
    result = invoke(f"{app_module}:not_an_app", code=1)
    assert result.stderr.startswith(f"error: {app_module}.not_an_app is int, not a millstream App")
