"""``sslbench report``: one self-contained HTML file with embedded PNGs; it renders in headless Chromium."""

import base64
import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from sslbench.layout import RunLayout
from sslbench.report import _seeds_caption, bar_ylim, build_report, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def run_dir(tmp_path, records):
    """A run directory with results, curves for both methods and a spectrum for vicreg only."""
    out = records.write(tmp_path / "run", records.sweep(records.base_scores, collapse_status={"simsiam": "dimensional"},
                                                        train_status={"simsiam": "collapsed"}))
    layout = RunLayout(out)
    for method, terms in (("vicreg", ("invariance", "variance", "covariance")), ("simsiam", ("negative_cosine",))):
        for seed in (0, 1):
            lines = []
            for epoch in (1, 2, 3):
                row = {"epoch": epoch, "step": 10 * epoch, "lr": 0.1, "loss": 3.0 / epoch, "std_l2": 0.05 + 0.01 * epoch,
                       "std_l2_ref": 0.088, "probe_rankme": 10.0 * epoch, "probe_std_l2": 0.04, "probe_status": "healthy",
                       "images_per_s": 1000.0, "data_share": 0.1, "epoch_s": 1.0}
                row.update({t: 1.0 / epoch + seed for t in terms})
                lines.append(json.dumps(row))
            layout.run(method, seed).metrics_log.write_text("\n".join(lines) + "\n")
    s = np.sort(np.random.default_rng(0).gamma(1.0, size=64))[::-1]
    np.savez(layout.run("vicreg", 0).artifacts("collapse"), spectrum_backbone=s, spectrum_projector=s[:32])
    return out


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_report_is_self_contained_with_every_section(run_dir):
    page = build_report([run_dir])
    images = _images(page)
    # 3 bar charts (one per main metric) + 2 spectrum charts (backbone, projector) + 2 training-curve charts
    assert len(images) == 7 and all(img.startswith(PNG_MAGIC) and len(img) > 5000 for img in images)
    assert page.count("<img") == len(images)  # every image is embedded
    assert not re.search(r"(src|href)=\"(?!data:)", page), "a resource outside the file"
    assert "http://" not in page and "https://" not in page and "<link" not in page and "<script" not in page
    for section in ("Collapse and training outcome", "Leaderboard", "Main metrics", "Spectrum", "Training curves"):
        assert f"<h2>{section}</h2>" in page
    assert "no spectrum recorded for: simsiam, raw_pixels, random_init" in page
    assert 'class="badge b1">dimensional' in page and 'class="badge b1">collapsed' in page
    assert 'class="badge b0">healthy' in page and "<table" in page


def test_the_main_metrics_come_first_and_the_charts_sit_in_a_grid(run_dir):
    page = build_report([run_dir])
    compact, full = page.index('<table class="compact">'), page.index('<table class="leaderboard">')
    assert compact < page.index("<details>") < full < page.index("</details>") < page.index("<h2>Main metrics</h2>")
    head = page[compact:page.index("</thead>", compact)]
    assert "knn<br>" in head and "top1" in head and "collapse.status" in head and "borda" not in head
    assert page.count('<div class="charts">') == 1 and page.count('<div class="charts wide-cells">') == 1
    assert "grid-template-columns:repeat(auto-fill" in page
    assert 'alt="covariance eigenvalues, backbone"' in page and "Eigenvalues of the covariance" in page
    assert "singular values" not in page and "Dotted red: 1e-05 of the largest" in page


@pytest.mark.parametrize("n_seeds, caption", [([1, 1, 1], "n = 1 seed per row: no interval"),
                                              ([3, 3], "whiskers: 95% CI over n = 3 seeds"),
                                              ([2, 1], "whiskers: 95% CI over seeds (n = 1-2; none where n = 1)")])
def test_a_chart_says_what_its_whiskers_are(n_seeds, caption):
    assert _seeds_caption(n_seeds) == caption


@pytest.mark.parametrize("values, ci, lo, hi", [
    ([0.7, 0.8], [0.0, 0.0], 0.0, 0.8 + 0.12 * 0.8),  # accuracies near 0.8: from 0, not from 0.68
    ([0.7, 0.8], [0.25, 0.05], 0.0, 0.95 + 0.12 * 0.95),  # room for the highest whisker (0.7 + 0.25)
    ([-3.0, -1.0], [0.0, 0.0], -3.0 - 0.36, 0.36),  # negative bars go down from 0
])
def test_bars_start_at_zero(values, ci, lo, hi):
    assert bar_ylim(np.array(values), np.array(ci)) == pytest.approx((lo, hi))


def test_cli_writes_the_report(run_dir, cli):
    res = cli("report", str(run_dir))
    assert res.rc == 0 and res.out.strip() == str(run_dir / "report.html")
    assert (run_dir / "report.html").read_text().startswith("<!DOCTYPE html>")
    res = cli("report", str(run_dir / "nope"))
    assert res.rc == 2 and "is not a directory" in res.err


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="headless Chromium not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(run_dir, tmp_path):
    from PIL import Image

    page = write_report([run_dir], tmp_path / "report.html")
    shot = tmp_path / "shot.png"
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
           "--hide-scrollbars", f"--screenshot={shot}", "--window-size=1400,3000", f"file://{page}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert shot.exists(), proc.stderr
    img = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert img.shape == (3000, 1400)
    # a rendered page, not a blank one: many non-white pixels, spread over the page
    dark = img < 200
    assert dark.mean() > 0.02, f"only {dark.mean():.3%} non-white pixels"
    rows_with_ink = dark.any(axis=1).mean()
    assert rows_with_ink > 0.3, f"ink on only {rows_with_ink:.0%} of the rows"
    # the charts fill the page's width (a grid): no long stretch of the page leaves its right third empty
    # (charts stacked in one 400-px column left 1216 px of it empty)
    inked = np.flatnonzero(dark.any(axis=1))
    right = dark[inked[0]:inked[-1] + 1, 2 * 1400 // 3:].any(axis=1)
    longest = max((len(run) for run in "".join("x" if v else "." for v in right).split("x")), default=0)
    assert longest < 600, f"{longest} px of the page have nothing in its right third"
