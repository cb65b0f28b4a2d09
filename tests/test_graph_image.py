"""`manacore graph` pictures: the dependency graph and the port map drawn by Graphviz from the
resolved estate, checked by reading the SVG back (every service a labelled node, hard and lazy
arrows told apart, every published port in its table) and by opening the PNG."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from PIL import Image

from catalog.resolve import ResolvedEstate
from exports import reports
from exports.graph_image import write_images
from tests.cli_run import invoke

NS = {"svg": "http://www.w3.org/2000/svg"}
STACKS = ("macmini", "k3s")


@pytest.fixture(scope="module")
def drawn(tmp_path_factory, stack_estate) -> dict[str, dict[str, ET.Element]]:
    """Both pictures of both stacks as parsed SVG (a parse error fails the test)."""
    out: dict[str, dict[str, ET.Element]] = {}
    for stack in STACKS:
        folder = tmp_path_factory.mktemp(stack)
        paths = write_images(stack_estate(stack), folder, "svg")
        assert [p.name for p in paths] == ["dependencies.svg", "ports.svg"]
        out[stack] = {p.stem: ET.parse(p).getroot() for p in paths}
    return out


def nodes(root: ET.Element) -> dict[str, list[str]]:
    """Node id → the lines of its label."""
    return {g.findtext("svg:title", namespaces=NS): [t.text or "" for t in
                                                      g.findall("svg:text", NS)]
            for g in root.iterfind(".//svg:g[@class='node']", NS)}


def edges(root: ET.Element) -> dict[tuple[str, str], bool]:
    """(from, to) → drawn dashed."""
    found = {}
    for g in root.iterfind(".//svg:g[@class='edge']", NS):
        tail, head = g.findtext("svg:title", namespaces=NS).split("->")
        found[(tail, head)] = "stroke-dasharray" in g.find("svg:path", NS).attrib
    return found


@pytest.mark.parametrize("stack", STACKS)
def test_every_service_is_a_node_labelled_with_its_id(drawn, stack_estate, stack):
    estate: ResolvedEstate = stack_estate(stack)
    found = nodes(drawn[stack]["dependencies"])
    assert set(found) == {s.id for s in estate.services}
    for svc in estate.services:
        label = found[svc.id]
        assert label[0] == svc.id
        assert f"{svc.category} · tier {svc.tier}" in label[1]
    title = " ".join(t.text or "" for t in drawn[stack]["dependencies"].iterfind(
        "svg:g/svg:text", NS))
    assert f"stack {stack} ({estate.target})" in title
    assert "solid arrow: hard" in title and "dashed arrow: lazy" in title


@pytest.mark.parametrize("stack", STACKS)
def test_hard_arrows_are_solid_and_lazy_ones_dashed(drawn, stack_estate, stack):
    estate: ResolvedEstate = stack_estate(stack)
    expected = {(s.id, d): False for s in estate.services for d in s.hard}
    expected |= {(s.id, d): True for s in estate.services for d in s.lazy}
    found = edges(drawn[stack]["dependencies"])
    assert found == expected
    assert found[("gateway", "auth")] is False and found[("gateway", "search")] is True


@pytest.mark.parametrize("stack", STACKS)
def test_the_port_map_shows_every_published_port_in_its_range(drawn, stack_estate, stack):
    texts = [(t.text or "").strip() for t in drawn[stack]["ports"].iterfind(".//svg:text", NS)]
    blocks = [b for b in reports.port_map(stack_estate(stack)) if b.rows]
    assert blocks
    for block in blocks:
        assert f"{block.first}-{block.last}" in texts and block.label in texts
        for row in block.rows:
            cells = [str(row.port), row.service, row.name, row.legacy]
            assert any(texts[at:at + 4] == cells for at in range(len(texts))), cells
    assert "(reserved)" in texts  # 4011, kept free after the bot consolidation


def test_png_is_a_picture_a_person_can_read(tmp_path, macmini_estate):
    for path in write_images(macmini_estate, tmp_path, "png"):
        with Image.open(path) as picture:
            picture.verify()
        with Image.open(path) as picture:
            assert picture.format == "PNG"
            assert min(picture.size) >= 900  # 12 pt labels at 96 dpi, not a thumbnail


def test_graph_command_writes_the_pictures_beside_the_mermaid(tmp_path):
    result = invoke("graph", "--stack", "k3s", "--out", str(tmp_path / "graph.mmd"))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".manacore-graph", "dependencies.svg", "graph.mmd", "ports.svg"]  # + what it owns
    assert (tmp_path / "graph.mmd").read_text().startswith("flowchart LR")


def test_graph_command_keeps_stdout_mermaid_when_writing_pngs(tmp_path):
    result = invoke("graph", "--images", str(tmp_path), "--format", "png")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("flowchart LR") and "wrote" not in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".manacore-graph-pictures", "dependencies.png", "ports.png"]


def test_graph_command_explains_a_bad_format_and_a_missing_graphviz(tmp_path, monkeypatch):
    bad = invoke("graph", "--images", str(tmp_path), "--format", "gif")
    assert bad.exit_code == 2 and "use one of svg, png" in bad.output
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` anywhere
    missing = invoke("graph", "--images", str(tmp_path / "pics"))
    assert missing.exit_code == 2
    assert "Graphviz's dot is not installed: run bash scripts/setup.sh" in missing.output
    assert "Traceback" not in missing.output
