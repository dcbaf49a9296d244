"""The report's SVG charts are readable: a white background, every text inside the picture and
clear of every other text (by the charts' own width estimate, an upper bound of DejaVu Sans'),
axes with tick labels, and one label per drawn point."""
import math
import re
import xml.etree.ElementTree as ET

import pytest

from cifar10_prune import charts

SVG = "{http://www.w3.org/2000/svg}"

# The quick start's first run (docs/quick_start.md) and the 10%-scale reproduction (docs/reproduction.md):
# the data the charts of docs/ are drawn from.
RESNET20 = {u: w for g, w in (("g1", 16), ("g2", 32), ("g3", 64)) for u in
            ("%sb0c0" % g, "%sb1c0" % g, "%sb2c0" % g)}
QUICK_KEPT = dict(zip(RESNET20, (15, 14, 10, 32, 30, 27, 54, 37, 26)))
PRECISION = {
    "quick": {"pruned run": [(281304, 0.6374), (190796, 0.7443), (190796, 0.7628)],
              "dense baseline": [(281304, 0.6214), (281304, 0.7645), (281304, 0.7788)]},
    "reproduction": {"pruned run": [(281304, 0.7168), (227812, 0.6267), (227812, 0.8290)],
                     "dense baseline": [(281304, 0.7319), (281304, 0.8216), (281304, 0.8321)]},
    # Both stage-0 points drawn at the same place, the baseline's later ones nearly so.
    "coinciding": {"pruned run": [(281304, 0.6374), (190796, 0.7443), (190796, 0.7628)],
                   "dense baseline": [(281304, 0.6374), (281304, 0.7645), (281304, 0.7650)]},
}


def params_precision(name):
    series = {run: [(p, q, "stage %d" % i) for i, (p, q) in enumerate(points)]
              for run, points in PRECISION[name].items()}
    # As report.params_precision_svg draws it.
    return charts.document([charts.scatter_frame(
        "precision @ 1 against parameters, after each stage", "total params", "precision @ 1",
        series)], columns=1)


def widths(dense, kept):
    return charts.widths_svg(dense, [("stage %d" % i, w) for i, w in enumerate(kept)])


def curves():
    sparsity = [(s, min(0.2, max(0.0, (s - 4000) / 20000))) for s in range(0, 13000, 100)]
    lasso = [(s, 345 - s / 40 if s < 3000 else 30 + 200 * math.exp(-(s - 3000) / 500))
             for s in range(0, 13000, 100)]
    frames = [charts.line_frame("%s (stages start at the dashed lines)" % title,
                                "step from the start of stage 0", title,
                                {"pruned run": points, "dense baseline": [(s, 0.0) for s, _ in points]},
                                marks=[3000, 8000])
              for title, points in (("fake sparsity", sparsity), ("group lasso", lasso))]
    return charts.document(frames)


def spread():
    """spread.spread_svg on three seeds and their baselines (the 10%-scale recipe's spread)."""
    from cifar10_prune import spread as spread_module  # imports TensorFlow: only when drawn

    def runs(points):
        return [("runs/s10_seed%d" % (i + 1), [{"total_params": p, "precision_at_1": q}])
                for i, (p, q) in enumerate(points)]
    return spread_module.spread_svg({
        "pruned runs": runs([(227648, 0.8261), (226100, 0.8290), (229300, 0.8240)]),
        "dense baselines": runs([(281304, 0.8335), (281304, 0.8310), (281304, 0.8322)])})


CHARTS = {
    "widths resnet20": lambda: widths(RESNET20, [RESNET20, QUICK_KEPT, QUICK_KEPT]),
    "widths cnn4": lambda: widths({"conv1": 96, "conv2": 192, "conv3": 192, "fc1": 384},
                                  [{"conv1": 90, "conv2": 101, "conv3": 60, "fc1": 384}] * 2),
    "widths one stage": lambda: widths(RESNET20, [QUICK_KEPT]),
    "params_precision quick": lambda: params_precision("quick"),
    "params_precision reproduction": lambda: params_precision("reproduction"),
    "params_precision coinciding": lambda: params_precision("coinciding"),
    "curves": curves,
    "spread": spread,
}


def _translate(element):
    match = re.match(r"translate\(([-\d.]+),([-\d.]+)\)", element.get("transform", ""))
    return (float(match.group(1)), float(match.group(2))) if match else (0.0, 0.0)


def texts(svg):
    """[(text, (left, top, right, bottom), element)] of every <text> of `svg`, in the
    document's coordinates (translations of groups and rotations applied)."""
    out = []

    def walk(element, dx, dy):
        for child in element:
            if child.tag == SVG + "g":
                tx, ty = _translate(child)
                walk(child, dx + tx, dy + ty)
            elif child.tag == SVG + "text":
                x, y = float(child.get("x")), float(child.get("y"))
                box = charts.text_box(x, y, child.text, child.get("text-anchor", "start"),
                                      bold=child.get("font-weight") == "bold")
                rotation = re.match(r"rotate\(([-\d.]+) ([-\d.]+) ([-\d.]+)\)",
                                    child.get("transform", ""))
                if rotation:
                    a, cx, cy = (float(v) for v in rotation.groups())
                    c, s = math.cos(math.radians(a)), math.sin(math.radians(a))
                    corners = [(cx + (px - cx) * c - (py - cy) * s,
                                cy + (px - cx) * s + (py - cy) * c)
                               for px in (box[0], box[2]) for py in (box[1], box[3])]
                    box = (min(p[0] for p in corners), min(p[1] for p in corners),
                           max(p[0] for p in corners), max(p[1] for p in corners))
                out.append((child.text, (box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy),
                            child))
    walk(ET.fromstring(svg), 0.0, 0.0)
    return out


@pytest.mark.parametrize("name", list(CHARTS))
def test_chart_is_readable(name):
    svg = CHARTS[name]()
    root = ET.fromstring(svg)
    width, height = float(root.get("width")), float(root.get("height"))
    assert root.get("viewBox") == "0 0 %d %d" % (width, height)
    background = root[0]  # drawn first, under everything
    assert background.tag == SVG + "rect" and background.get("fill") == "white"
    assert (background.get("width"), background.get("height")) == ("100%", "100%")
    boxes = texts(svg)
    for text, (left, top, right, bottom), _ in boxes:
        assert 0 <= left and right <= width and 0 <= top and bottom <= height, (text, width)
    for i, (a, box_a, _) in enumerate(boxes):
        for b, box_b, _ in boxes[i + 1:]:
            overlap = (min(box_a[2], box_b[2]) > max(box_a[0], box_b[0])
                       and min(box_a[3], box_b[3]) > max(box_a[1], box_b[1]))
            assert not overlap, (a, box_a, b, box_b)


@pytest.mark.parametrize("name", ["widths resnet20", "widths cnn4"])
def test_widths_chart_has_a_y_axis_and_a_legend(name):
    svg = CHARTS[name]()
    labels = [t for t, _, _ in texts(svg)]
    y_ticks = [float(t) for t, _, e in texts(svg) if e.get("text-anchor") == "end"]
    top = 64 if name == "widths resnet20" else 384
    assert y_ticks[0] == 0 and y_ticks[-1] >= top and len(y_ticks) >= 3
    assert [t for t, _, e in texts(svg) if "rotate(-90" in e.get("transform", "")] == ["channels"]
    assert "path" in svg and 'stroke="#666"' in svg  # the axis lines
    stages, units = (2, 4) if name == "widths cnn4" else (3, 9)
    legend = ["dense"] + ["after stage %d" % i for i in range(stages)]
    assert all(entry in labels for entry in legend)
    # The background, a bar per unit for dense and each stage, a swatch per legend entry.
    assert svg.count("<rect") == 1 + (stages + 1) * units + len(legend)


def test_every_point_has_one_label_and_coinciding_points_share_it():
    boxes = texts(params_precision("reproduction"))
    assert sorted(t for t, _, _ in boxes if t.startswith("stage")) == ["stage 0"] * 2 + [
        "stage 1"] * 2 + ["stage 2"] * 2
    svg = params_precision("coinciding")
    assert svg.count("<circle") == 6
    labels = [t for t, _, _ in texts(svg) if t.startswith("stage")]
    assert sorted(labels) == ["stage 0 (both)", "stage 1", "stage 1, stage 2", "stage 2"]
    assert "400k" in [t for t, _, _ in texts(svg)]  # the last x tick, inside the picture


# Advance widths in em of DejaVu Sans and DejaVu Sans Bold, measured with fontTools.
DEJAVU = {"stage 0 (both)": (7.101, 8.041), "g3b2c0": (3.728, 4.112), "384/384": (4.154, 4.540),
          "0.8321": (3.499, 3.859), "400k": (2.488, 2.752), "precision @ 1": (6.805, 7.552),
          "fake sparsity (stages start at the dashed lines)": (23.377, 26.591)}


@pytest.mark.parametrize("text", list(DEJAVU))
def test_text_width_is_a_close_upper_bound(text):
    for em, bold in zip(DEJAVU[text], (False, True)):
        assert em * 11 <= charts.text_width(text, 11, bold) <= em * 11 * 1.1
