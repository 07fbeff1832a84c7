"""The audit HTML report: builds from the sample dataset, stays small and offline, renders every figure in a real
browser without a console message, escapes hostile class and file names everywhere, shows findings with the
offending box highlighted, and is written by `doctor audit` to --html FILE or the default doctor_reports/ path."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from dataset_doctor.audit import run_audit
from dataset_doctor.cli import app
from dataset_doctor.dataset.index import build_index
from dataset_doctor.findings import CHECKS, ERROR
from reports import audit_figures
from reports.audit_gallery import ImageLookup, finding_pictures
from reports.audit_link import default_audit_candidates, find_audit_report
from reports.audit_report import (
    EXAMPLES_PER_CHECK,
    build_audit_report,
    default_audit_report_path,
    write_audit_report,
)
from reports.thumbnails import HIGHLIGHT
from tests.reports.browser import open_in_chromium, requires_chromium, screenshot

HOSTILE_CLASS = "<b id=x>pwn</b>"
HOSTILE_FILE = "a&<>\"'.jpg"
HOSTILE_FOLDER = "set <i>&x"  # the dataset folder names the report
MAX_BYTES = 15 * 1024 * 1024
runner = CliRunner()


@pytest.fixture(scope="module")
def sample_audit(sample_yaml):
    index = build_index(sample_yaml, progress=False)
    return index, run_audit(index)


@pytest.fixture(scope="module")
def sample_report(sample_audit, tmp_path_factory) -> Path:
    index, result = sample_audit
    return write_audit_report(result, index, tmp_path_factory.mktemp("report") / "sample-audit.html")


@pytest.fixture
def hostile_yaml(make_dataset) -> Path:
    """Two classes, one named like markup; a file name with every HTML-special character, copied into val (a
    split-leak) and holding a zero-size box (a line finding): the names reach tables, figures, captions."""
    box = "0 0.3 0.4 0.2 0.3\n1 0.7 0.6 0.25 0.2\n"
    train = {f"t{k}.jpg": box for k in range(6)}
    train[HOSTILE_FILE] = box + "1 0.5 0.5 0 0.1\n"
    val = {f"v{k}.jpg": box for k in range(3)}
    val["leak.jpg"] = box
    data_yaml = make_dataset({"train": train, "val": val}, names=["cat", HOSTILE_CLASS], size=(160, 120),
                             root_name=HOSTILE_FOLDER)
    root = data_yaml.parent
    shutil.copyfile(root / "images" / "train" / HOSTILE_FILE, root / "images" / "val" / "leak.jpg")
    return data_yaml


def report_for(data_yaml: Path, path: Path) -> tuple[Path, str]:
    index = build_index(data_yaml, progress=False)
    written = write_audit_report(run_audit(index), index, path)
    return written, written.read_text(encoding="utf-8")


def section(html: str, anchor: str) -> str:
    start = html.index(f'<section id="{anchor}">')
    return html[start:html.index("</section>", start)]


def test_sample_report_is_one_small_offline_file(sample_report):
    html = sample_report.read_text(encoding="utf-8")
    assert sample_report.stat().st_size < MAX_BYTES
    assert html.count("plotly.js v") == 1  # the library embedded once, however many figures
    assert not re.search(r"<script[^>]*src=", html) and not re.search(r"<link[^>]*href=", html)
    assert "https://" not in html.split("<main>")[1]  # no CDN, font or image fetched from elsewhere
    for anchor in ("verdict", "classes", "geometry", "findings", "comparison", "settings"):
        assert f'<section id="{anchor}">' in html
    assert html.index('id="verdict"') < html.index('id="classes"') < html.index('id="findings"')


def test_verdict_counts_names_real_checks_and_says_what_to_do(sample_audit, sample_report):
    _, result = sample_audit
    verdict = section(sample_report.read_text(encoding="utf-8"), "verdict")
    summary = result.summary
    assert f"{summary['error']} errors, {summary['warning']} warnings, {summary['info']} info" in verdict
    problems = re.findall(r'<li data-checks="([^"]+)">', verdict)
    assert len(problems) == 3
    named = [check for item in problems for check in item.split()]
    found = set(result.findings["check"])
    assert named and all(check in CHECKS and check in found for check in named)
    assert CHECKS[named[0]] == ERROR  # the sample has errors: they come first
    linked = re.findall(r'href="#check-([a-z-]+)"', verdict)
    assert set(linked) == set(named)
    assert f"doctor fix {result.dataset} --out" in verdict
    target = int(re.search(r"doctor rebalance \S+ --target (\d+) --method paste --out", verdict).group(1))
    train = np.asarray(result.instances("train"))
    assert result.options.min_instances <= target <= train.max()
    rarest = result.classes[int(np.argmin(train))]
    assert re.search(rf"Collect and label more images of [^<]*&#x27;{rarest}&#x27;", verdict)


def test_every_check_with_located_findings_has_pictures(sample_audit, sample_report):
    _, result = sample_audit
    html = sample_report.read_text(encoding="utf-8")
    gallery = html[html.index('<div class="findings-gallery">'):html.index('<section id="comparison">')]
    chunks = dict(re.findall(r'<h3 class="check" id="check-([a-z-]+)">(.*?)(?=<h3 class="check"|$)', gallery, re.S))
    assert set(chunks) == set(result.findings["check"])
    located = result.findings[result.findings["image"].notna() | result.findings["label"].notna()]
    for check, count in located.groupby("check").size().items():
        images = chunks[check].count("<img ")
        if check in ("duplicate-image", "split-leak"):
            assert images == 0 and 'href="#comparison"' in chunks[check]
        else:
            assert images == min(count, EXAMPLES_PER_CHECK), check
    comparison = section(html, "comparison")
    assert comparison.count('<div class="pair"') == len(result.duplicate_pairs)
    assert comparison.count("<img ") == 2 * len(result.duplicate_pairs)


def test_offending_box_is_drawn_in_red_where_the_line_puts_it(make_dataset):
    labels = "0 0.25 0.5 0.2 0.4\n0 0.75 0.5 0.2 0.4\n"
    data_yaml = make_dataset({"train": {"a.jpg": labels + "7 0.75 0.5 0.3 0.6\n"}, "val": {"b.jpg": labels}},
                             size=(200, 100))
    cv2.imwrite(str(data_yaml.parent / "images" / "train" / "a.jpg"), np.full((100, 200, 3), 128, np.uint8))
    index = build_index(data_yaml, progress=False)
    pictures = finding_pictures(run_audit(index), ImageLookup(index), 4)
    [picture] = pictures["class-out-of-range"]
    assert "labels/train/a.txt:3" in picture.caption
    image = cv2.imdecode(np.frombuffer(picture.jpeg, np.uint8), cv2.IMREAD_COLOR).astype(int)
    blue, green, red = image[..., 0], image[..., 1], image[..., 2]
    is_red = (red > 180) & (green < 90) & (blue < 90)
    height, width = is_red.shape
    columns = np.flatnonzero(is_red.any(axis=0))
    rows = np.flatnonzero(is_red.any(axis=1))
    # line 3 is the box cx 0.75 w 0.3 (x 0.6..0.9), cy 0.5 h 0.6 (y 0.2..0.8): red there and nowhere left of it
    assert columns.min() >= 0.55 * width and abs(columns.max() - 0.9 * width) <= 0.03 * width
    assert abs(rows.min() - 0.2 * height) <= 0.16 * height and rows.max() >= 0.78 * height
    is_green = (green > 130) & (red < 110)
    assert is_green[:, : width // 2].any()  # the other boxes, drawn in green
    assert HIGHLIGHT == (0, 0, 255)


def test_hostile_names_are_escaped_in_the_markup(hostile_yaml, tmp_path):
    _, html = report_for(hostile_yaml, tmp_path / "hostile.html")
    body = html.split("</style>", 1)[1]
    assert HOSTILE_CLASS not in body and "<b id=x>" not in body
    assert "&lt;b id=x&gt;pwn&lt;/b&gt;" in body  # in tables, headings, captions, the verdict
    assert "a&amp;&lt;&gt;&quot;&#x27;.jpg" in body  # the file name, in the findings table and the captions
    assert "<i>" not in html and "Dataset audit: set &lt;i&gt;&amp;x</title>" in html
    assert any("a&amp;&lt;&gt;&quot;&#x27;.jpg" in alt for alt in re.findall(r'alt="([^"]*)"', body))
    # inside figures (JSON strings), names are HTML-escaped before plotly sees them
    assert "\\u003cb id=x\\u003e" not in body and "&lt;b id=x&gt;pwn&lt;\\u002fb&gt;" in body


@requires_chromium
def test_sample_report_renders_every_figure_without_console_messages(sample_report, tmp_path):
    source = sample_report.read_text(encoding="utf-8")
    figures = re.findall(r'<div id="(plot-\d+)" class="plotly-graph-div"', source)
    assert len(figures) >= 8
    rendered = open_in_chromium(sample_report, tmp_path / "profile")
    assert rendered.console == []
    starts = [(match.start(), match.group(1)) for match in re.finditer(r'<div id="(plot-\d+)"', rendered.dom)]
    assert [name for _, name in starts] == figures
    ends = [start for start, _ in starts[1:]] + [len(rendered.dom)]
    for (start, name), end in zip(starts, ends):
        assert 'class="main-svg"' in rendered.dom[start:end], f"{name} did not render"
    top = screenshot(sample_report, "audit-report-top", tmp_path / "profile-shot", size=(1280, 1400))
    picture = cv2.imread(str(top))
    assert picture is not None and picture.shape[:2] == (1400, 1280) and picture.std() > 10


@requires_chromium
def test_hostile_names_create_no_element_in_the_browser(hostile_yaml, tmp_path):
    path, source = report_for(hostile_yaml, tmp_path / "hostile.html")
    rendered = open_in_chromium(path, tmp_path / "profile")
    assert rendered.console == []
    assert 'id="x"' not in rendered.dom and "<b id=" not in rendered.dom
    assert rendered.dom.count("pwn") >= source.count("pwn")  # shown as text (plotly adds labels, never fewer)
    figures = re.findall(r'<div id="plot-\d+" class="plotly-graph-div"', source)
    assert rendered.dom.count('class="main-svg"') >= len(figures)


def test_box_scatter_subsamples_big_splits_and_says_so(sample_audit):
    _, result = sample_audit
    figure = audit_figures.box_scatter(result, max_points=100)
    assert all(len(trace.x) <= 100 for trace in figure.figure.data)
    assert "Subsampled at random: 100 of" in figure.caption
    full = audit_figures.box_scatter(result, max_points=10**6)
    assert sum(len(trace.x) for trace in full.figure.data) == len(result.box_geometry)
    assert "Subsampled" not in full.caption


def test_class_distribution_toggles_measure_and_log_scale(sample_audit):
    _, result = sample_audit
    layout = audit_figures.class_distribution(result).figure.layout
    scale_buttons = [button for menu in layout.updatemenus for button in menu.buttons
                     if "yaxis.type" in button.args[0]]
    assert {button.args[0]["yaxis.type"] for button in scale_buttons} == {"linear", "log"}


def test_scale_shift_classes_are_shaded_in_the_size_figure(sample_audit):
    _, result = sample_audit
    flagged = result.scale_shift.loc[result.scale_shift["flagged"], "class_id"].tolist()
    assert flagged  # the sample draws one class smaller in val
    figure = audit_figures.box_distribution(result, "side")
    bands = [(shape.x0, shape.x1) for shape in figure.figure.layout.shapes]
    assert bands == [(k - 0.5, k + 0.5) for k in flagged]
    assert all(result.classes[k] in figure.caption for k in flagged)


def test_default_path_is_named_after_the_dataset_folder(tmp_path, monkeypatch):
    base = Path("out")
    assert default_audit_report_path("/data/digits/data.yaml", base) == base / "digits-audit.html"
    assert default_audit_report_path("/data/digits", base) == base / "digits-audit.html"
    assert default_audit_report_path("/data/coco/coco128.yaml", base) == base / "coco-coco128-audit.html"
    assert default_audit_report_path("/data/coco128/coco128.yaml", base) == base / "coco128-audit.html"
    assert default_audit_report_path("/data/my set (v2)/data.yaml", base) == base / "my set (v2)-audit.html"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "birds").mkdir()
    assert default_audit_report_path("birds/data.yaml", base) == default_audit_report_path(
        tmp_path / "birds" / "data.yaml", base) == base / "birds-audit.html"
    monkeypatch.setenv("DOCTOR_REPORTS_DIR", str(tmp_path / "elsewhere"))
    assert default_audit_report_path("birds/data.yaml") == tmp_path / "elsewhere" / "birds-audit.html"
    monkeypatch.delenv("DOCTOR_REPORTS_DIR")
    assert default_audit_report_path("birds/data.yaml") == Path("doctor_reports") / "birds-audit.html"


def test_the_training_reports_lookup_finds_the_default_report(hostile_yaml, isolated_reports):
    """DOCTOR_REPORTS_DIR (set for every test) moves the default folder; the lookup looks there first."""
    assert runner.invoke(app, ["audit", str(hostile_yaml)]).exit_code == 1
    written = isolated_reports / f"{HOSTILE_FOLDER}-audit.html"
    assert written.is_file() and default_audit_report_path(hostile_yaml) == written
    assert find_audit_report(default_audit_candidates([hostile_yaml.resolve()], [])) == written


def test_cli_writes_the_report_to_html_file(hostile_yaml, tmp_path):
    target = tmp_path / "report.html"
    result = runner.invoke(app, ["audit", str(hostile_yaml), "--html", str(target)])
    assert result.exit_code == 1, result.output  # the zero-size box is an error
    assert target.is_file() and "HTML report written to" in result.output
    assert '<section id="verdict">' in target.read_text(encoding="utf-8")
    assert not list(tmp_path.glob(".report.html*"))  # no temporary file left


def test_cli_default_report_goes_to_doctor_reports_in_the_working_directory(hostile_yaml, tmp_path, monkeypatch):
    monkeypatch.delenv("DOCTOR_REPORTS_DIR")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    result = runner.invoke(app, ["audit", str(hostile_yaml)])
    assert result.exit_code == 1, result.output
    expected = work / "doctor_reports" / f"{HOSTILE_FOLDER}-audit.html"
    assert expected.is_file() and work / default_audit_report_path(hostile_yaml) == expected
    assert find_audit_report(default_audit_candidates([hostile_yaml], [work])) == expected  # the training report
    assert runner.invoke(app, ["audit", str(hostile_yaml), "--no-html"]).exit_code == 1
    expected.unlink()
    assert runner.invoke(app, ["audit", str(hostile_yaml), "--no-html"]).exit_code == 1
    assert not expected.exists()


def test_cli_refuses_an_unwritable_report_path_before_scanning(hostile_yaml, tmp_path):
    result = runner.invoke(app, ["audit", str(hostile_yaml), "--html", str(tmp_path / "missing" / "r.html")])
    assert result.exit_code == 2 and "r.html" in result.output and "Traceback" not in result.output
    assert "findings" not in result.output  # refused before the audit ran
    both = runner.invoke(app, ["audit", str(hostile_yaml), "--html", str(tmp_path / "r.html"), "--no-html"])
    assert both.exit_code == 2


def test_clean_dataset_report_says_ready_to_train(make_dataset, tmp_path):
    grid = "".join(f"{k % 2} {0.1 + 0.2 * (k % 5):.2f} {0.1 + 0.2 * (k // 5):.2f} 0.1 0.1\n" for k in range(25))
    splits = {"train": {f"t{k}.jpg": grid for k in range(12)}, "val": {f"v{k}.jpg": grid for k in range(4)}}
    data_yaml = make_dataset(splits)
    index = build_index(data_yaml, progress=False)
    result = run_audit(index)
    assert result.summary["error"] == result.summary["warning"] == 0
    html = build_audit_report(result, index).render()
    verdict = section(html, "verdict")
    assert "ready to train" in verdict and f"doctor train {result.dataset}" in verdict
    assert "No image appears twice" in section(html, "comparison")


def test_report_of_a_dataset_without_any_box_or_names(make_dataset):
    """Nothing to plot and nothing to name: the report still builds and says so."""
    splits = {"train": {"a.jpg": "", "b.jpg": None, "c.jpg": "0 0.5 0.5 0.2 0.2\n"}, "val": {"d.jpg": ""}}
    data_yaml = make_dataset(splits, names=None)
    index = build_index(data_yaml, progress=False)
    result = run_audit(index)
    html = build_audit_report(result, index).render()
    assert "No usable box: nothing to measure." in section(html, "geometry")
    verdict = section(html, "verdict")
    assert "names-mismatch" in verdict and "no class names in data.yaml" in verdict


# --- names, links and huge images (issue 16 items 3, 5, 9) ---------------------------------------------------------

def test_a_file_name_that_is_not_utf8_is_drawn_and_shown_escaped(tmp_path):
    from reports.audit_report import write_audit_report
    from tests.odd_files import BAD_SHOWN, dataset_with_bad_name

    index = build_index(dataset_with_bad_name(tmp_path / "data", b"7 0.5 0.5 0.2 0.2\n"), progress=False)
    result = run_audit(index)
    [picture] = finding_pictures(result, ImageLookup(index), 4)["class-out-of-range"]
    drawn = cv2.imdecode(np.frombuffer(picture.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert drawn.std() > 20 and f"labels/train/{BAD_SHOWN}.txt:1" in picture.caption  # the picture, no placeholder
    text = write_audit_report(result, index, tmp_path / "audit.html").read_bytes().decode("utf-8")  # strict UTF-8
    assert f"images/train/{BAD_SHOWN}.jpg" in text


def test_a_huge_png_gets_a_placeholder_not_a_decode(tmp_path, monkeypatch):
    import reports.audit_gallery as gallery
    from tests.odd_files import dataset_with_huge_png

    index = build_index(dataset_with_huge_png(tmp_path / "data", side=8000), progress=False)
    result = run_audit(index)
    decoded = []
    real = gallery.load_thumbnail
    monkeypatch.setattr(gallery, "load_thumbnail", lambda path, side: decoded.append(real(path, side)) or decoded[-1])
    [picture] = finding_pictures(result, ImageLookup(index), 4)["huge-image"]
    assert decoded == [None] and "8000x8000 pixels" in picture.caption
