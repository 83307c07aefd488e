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


def drawn_edges(root: ET.Element) -> Counter[tuple[str, str, str]]:
    """(kind, from, to) of every drawn edge, each with its route."""
    out: Counter[tuple[str, str, str]] = Counter()
    for g in root.iter(f"{SVG}g"):
        if "edge" in g.get("class", "").split():
            assert g.find(f"{SVG}path[@class='route']") is not None
            assert g.get("data-id") == f"{g.get('data-from')}>{g.get('data-to')}"
            out[g.get("data-kind", ""), g.get("data-from", ""), g.get("data-to", "")] += 1
    return out


def drawn_nodes(root: ET.Element) -> dict[str, ET.Element]:
    """Each drawn node's group by its id."""
    return {g.get("data-id", ""): g for g in root.iter(f"{SVG}g")
            if "node" in g.get("class", "").split()}


def box(g: ET.Element) -> tuple[float, float, float, float]:
    rect = g.find(f"{SVG}rect")
    assert rect is not None
    return tuple(float(rect.get(a, "nan")) for a in ("x", "y", "width", "height"))  # type: ignore[return-value]


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
    assert drawn_edges(root) == edges_of(app)
    # the edge that closes the cycle runs backwards: from feedback's left side to the right
    # side of score
    back = next(g for g in root.iter(f"{SVG}g")
                if g.get("data-id") == "stream:feedback>service:score")
    path = back.find(f"{SVG}path")
    assert path is not None
    steps = path.get("d", "").split()
    start, end = float(steps[0][1:].split(",")[0]), float(steps[-1].split(",")[0])
    nodes = drawn_nodes(root)
    feedback, scorer = box(nodes["stream:feedback"]), box(nodes["service:score"])
    assert (start, end) == (feedback[0], scorer[0] + scorer[2])


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


def test_svg_draws_every_node_and_edge_of_the_model_once() -> None:
    app = video_app()
    root = parse(to_svg(app))
    nodes = drawn_nodes(root)
    assert list(nodes) == [n.id for n in topology(app).nodes]
    assert drawn_edges(root) == edges_of(app)
    assert Counter(g.get("class") for g in nodes.values()) == Counter({
        "node service exactly-once": 2, "node service stateful exactly-once": 1,
        "node service": 1, "node stream source": 2, "node stream": 3, "node stream sink": 1,
        "node store": 2})
    # each node: one box (a rect) and its name; a stream its payload and partitions too
    assert [[t.text for t in g.iter(f"{SVG}text")] for g in nodes.values()] == [
        ["probe", "exactly-once"], ["thumbnail", "exactly-once"],
        ["catalog", "stateful · exactly-once"], ["indexer"],
        ["likes", "json, 4 partitions"], ["uploads", "bytes, 4 partitions"],
        ["probes", "Probe v1, 4 partitions"], ["thumbs", "bytes, 4 partitions"],
        ["catalog", "bytes, 4 partitions"], ["search-index", "bytes, 4 partitions"],
        ["files"], ["tables:videos"]]
    assert all(len(g.findall(f"{SVG}rect")) == 1 for g in nodes.values())
    # inputs and outputs are arrows, a store's use a line without a head
    for g in root.iter(f"{SVG}g"):
        if "edge" in g.get("class", "").split():
            path = g.find(f"{SVG}path")
            assert path is not None
            assert (path.get("marker-end") is None) == (g.get("data-kind") == "uses")


def test_svg_layers_run_left_to_right_and_nothing_overlaps() -> None:
    root = parse(to_svg(video_app()))
    nodes = drawn_nodes(root)
    x = {i.split(":", 1)[1]: box(g)[0] for i, g in nodes.items() if i.startswith("service:")}
    assert x["probe"] < x["thumbnail"] < x["catalog"] < x["indexer"]
    rects = [box(g) for g in nodes.values()]
    assert not overlapping(rects)


def overlapping(rects: list[tuple[float, float, float, float]]
                ) -> list[tuple[tuple[float, ...], tuple[float, ...]]]:
    """The pairs of rectangles (x, y, width, height) that share more than an edge."""
    return [(a, b) for i, a in enumerate(rects) for b in rects[i + 1:]
            if a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3]
            and b[1] < a[1] + a[3]]


def test_svg_platform_streams_are_optional_and_dashed() -> None:
    plain = drawn_edges(parse(to_svg(video_app())))
    root = parse(to_svg(video_app(), include_platform=True))
    added = drawn_edges(root) - plain
    assert Counter(to for _, _, to in added) == Counter({
        "stream:millstream.metrics": 4, "stream:millstream.exceptions": 4,
        "stream:millstream.checkpoints": 1})
    platform = [g for g in root.iter(f"{SVG}g") if g.get("class") == "edge output platform"]
    assert len(platform) == 9
    assert [g.get("data-id") for g in root.iter(f"{SVG}g")
            if g.get("class") == "node stream platform sink"] == [
        "stream:millstream.metrics", "stream:millstream.exceptions",
        "stream:millstream.checkpoints"]


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
    nodes = drawn_nodes(root)
    service = nodes["service:a_b-c"]
    assert service.get("data-name") == "a_b-c"
    tip = service.find(f"{SVG}title")
    assert tip is not None
    assert tip.text == 'a_b-c — Runs <script>alert("doc")</script> & more.'
    store = nodes["store:tables:<x>"]
    assert store.get("data-name") == "tables:<x>"
    assert [t.text for t in store.iter(f"{SVG}text")] == ["tables:<x>"]
    uses = next(g for g in root.iter(f"{SVG}g") if g.get("data-kind") == "uses")
    assert uses.get("data-id") == "service:a_b-c>store:tables:<x>"


def test_svg_of_an_app_without_services_is_still_a_document() -> None:
    root = parse(to_svg(App("empty")))
    assert not list(root.iter(f"{SVG}rect"))
    assert [t.text for t in root.iter(f"{SVG}text")] == ["empty"]
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
        assert list(drawn_nodes(root)) == [n.id for n in topology(video_app()).nodes]


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
