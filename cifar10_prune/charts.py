"""Small SVG charts for the results report, written by hand so the report needs no plotting
package: a line chart, a scatter chart and a grouped bar chart of the channels kept.

Every chart has a white background (so it reads in a dark viewer too), axes with ticks and
labels, and a legend under its x axis. Text is laid out from estimated widths (`text_width`,
DejaVu Sans' glyph widths rounded up: the widest of the usual sans-serif fonts, and what
`sans-serif` renders with on most Linux machines), so titles, tick labels, legends and point
labels stay inside the picture and clear of each other with any of those fonts.
"""
import math
from xml.sax.saxutils import escape

COLORS = ["#08519c", "#e6550d", "#31a354", "#756bb1", "#636363", "#9ecae1"]
DENSE_COLOR = "#bdbdbd"  # the dense widths in the bar chart
MIXED_COLOR = "#333333"  # a label naming points of several series
FONT_SIZE = 11
_FONT = 'font-family="sans-serif" font-size="%d"' % FONT_SIZE
# How far glyphs reach above and below the baseline, in em (ascenders, descenders).
ASCENT, DESCENT = 0.8, 0.24

# Advance widths in em of DejaVu Sans, rounded up per class; anything else ASCII is at most
# 0.64 em (lower case, digits), anything else at most 1 em.
_EM = {}
for _chars, _em in (("'ijlIJ", 0.29), (" ,./:;\\|f", 0.35), ("-()[]t!r", 0.41),
                    ('"*_`sz?', 0.53), ("KAVXZBRC", 0.70), ("UNHDGOQ&", 0.79),
                    ("w#+<=>^~M", 0.86), ("%mW@", 1.0)):
    _EM.update(dict.fromkeys(_chars, _em))


def text_width(text, size=FONT_SIZE, bold=False):
    """The width in pixels `text` takes at most in `size`-pixel sans-serif (bold: wider)."""
    em = sum(_EM.get(c, 0.64 if c < "\x7f" else 1.0) for c in text)
    if bold:
        em = em * 1.1 + 0.03 * len(text)  # DejaVu Sans Bold, rounded up likewise
    return em * size


def text_box(x, y, text, anchor="start", size=FONT_SIZE, bold=False):
    """(left, top, right, bottom) of `text` drawn with its baseline at (x, y) and `anchor`
    ("start", "middle" or "end")."""
    width = text_width(text, size, bold)
    left = x - {"start": 0.0, "middle": width / 2, "end": width}[anchor]
    return left, y - ASCENT * size, left + width, y + DESCENT * size


def _text(x, y, text, anchor="start", color=None, bold=False, rotate=None):
    attrs = ['x="%.1f" y="%.1f"' % (x, y)]
    if anchor != "start":
        attrs.append('text-anchor="%s"' % anchor)
    if color:
        attrs.append('fill="%s"' % color)
    if bold:
        attrs.append('font-weight="bold"')
    if rotate is not None:
        attrs.append('transform="rotate(%d %.1f %.1f)"' % (rotate, x, y))
    return "<text %s>%s</text>" % (" ".join(attrs), escape(text))


def _wrap(text, width, bold=False):
    """`text` in lines of at most `width` pixels, broken at spaces."""
    lines = []
    for word in text.split(" "):
        if lines and text_width(lines[-1] + " " + word, bold=bold) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def _ticks(lo, hi, n=5):
    """About `n` round tick values (1, 2, 2.5 or 5 times a power of ten apart) covering [lo, hi]."""
    if hi <= lo:  # one value: a small window around it
        pad = abs(lo) * 0.05 or 0.05
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / n
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.floor(lo / step + 1e-9)
    last = math.ceil(hi / step - 1e-9)
    return [round(k * step, 10) for k in range(first, last + 1)]


def _label(value):
    if abs(value) >= 1000:
        return "%gk" % (value / 1000.0)
    return "%g" % value


class _Frame:
    """Axes of a chart: maps data coordinates to pixels and draws the background grid, the
    axes with their ticks and labels, the title and the legend.

    `legend` is [(name, colour)], drawn in rows under the x axis label. With `categories` (a
    bar chart) the x axis holds those names instead of numbers: category i spans [i, i + 1].
    The margins follow the text: the left one the widest y tick label, the right one half the
    last x tick label (centred on the axis end), the top one the title, wrapped to the width.
    """

    PLOT_HEIGHT = 194

    def __init__(self, title, xlabel, ylabel, xs, ys, legend=(), width=460, categories=None):
        self.width = width
        self.categories = list(categories) if categories is not None else None
        self.yticks = _ticks(min(ys), max(ys))
        self.y0, self.y1 = min(self.yticks[0], min(ys)), max(self.yticks[-1], max(ys))
        if self.categories is not None:
            self.xticks = []
            self.x0, self.x1 = 0.0, float(len(self.categories))
            self.right = 12
        else:
            self.xticks = _ticks(min(xs), max(xs))
            self.x0, self.x1 = min(self.xticks[0], min(xs)), max(self.xticks[-1], max(xs))
            self.right = max(12, math.ceil(text_width(_label(self.xticks[-1])) / 2) + 4)
        # The rotated y label takes x 3..15; the y tick labels end 4 px left of the axis.
        self.left = max(56, math.ceil(max(text_width(_label(t)) for t in self.yticks)) + 26)
        title_x = self.left
        lines = [title]
        if text_width(title, bold=True) > width - self.left - 6:
            title_x = 6
            lines = _wrap(title, width - 12, bold=True)
        self.top = 28 + 14 * (len(lines) - 1)
        self.plot_bottom = self.top + self.PLOT_HEIGHT
        rows = self._legend_rows(legend)
        self.height = self.plot_bottom + (44 + 16 * len(rows) - 2 if rows else 42)

        self.parts = [_text(title_x, 16 + 14 * i, line, bold=True) for i, line in enumerate(lines)]
        right_edge = width - self.right
        for t in self.xticks:
            x = self.px(t)
            self.parts.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>'
                              % (x, self.top, x, self.plot_bottom))
            self.parts.append(_text(x, self.plot_bottom + 14, _label(t), "middle"))
        for i, name in enumerate(self.categories or ()):
            self.parts.append(_text(self.px(i + 0.5), self.plot_bottom + 14, name, "middle"))
        for t in self.yticks:
            y = self.py(t)
            self.parts.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>'
                              % (self.left, y, right_edge, y))
            self.parts.append(_text(self.left - 4, y + 4, _label(t), "end"))
        self.parts.append('<path d="M%d,%d V%d H%d" fill="none" stroke="#666"/>'
                          % (self.left, self.top, self.plot_bottom, right_edge))
        self.parts.append(_text((self.left + right_edge) / 2, self.plot_bottom + 34, xlabel,
                                "middle"))
        middle = (self.top + self.plot_bottom) / 2
        self.parts.append(_text(12, middle, ylabel, "middle", rotate=-90))
        for r, row in enumerate(rows):
            y = self.plot_bottom + 44 + 16 * r
            for x, name, color in row:
                self.parts.append('<rect x="%.1f" y="%d" width="10" height="10" fill="%s"/>'
                                  % (x, y, color))
                self.parts.append(_text(x + 14, y + 9, name))

    def _legend_rows(self, legend):
        """[[(x, name, colour), ...] per row]: items left to right from the axis, wrapped."""
        rows, x = [], None
        for name, color in legend:
            item = 14 + text_width(name)
            if x is None or x + item > self.width - 6:
                x = self.left if self.left + item <= self.width - 6 else 6
                rows.append([])
            rows[-1].append((x, name, color))
            x += item + 12
        return rows

    def px(self, x):
        span = (self.x1 - self.x0) or 1.0
        return self.left + (x - self.x0) / span * (self.width - self.left - self.right)

    def py(self, y):
        span = (self.y1 - self.y0) or 1.0
        return self.plot_bottom - (y - self.y0) / span * self.PLOT_HEIGHT

    def svg(self, dx=0, dy=0):
        return '<g transform="translate(%d,%d)">%s</g>' % (dx, dy, "\n".join(self.parts))


def document(frames, columns=2):
    """One SVG document holding `frames` (from `line_frame` / `scatter_frame` /
    `widths_frame`) in a grid, on a white background."""
    width = max(f.width for f in frames)
    height = max(f.height for f in frames)
    rows = (len(frames) + columns - 1) // columns
    cols = min(columns, len(frames))
    body = [f.svg((i % columns) * width, (i // columns) * height) for i, f in enumerate(frames)]
    return ('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
            '%s>\n<rect width="100%%" height="100%%" fill="white"/>\n%s\n</svg>\n'
            % (cols * width, rows * height, cols * width, rows * height, _FONT,
               "\n".join(body)))


def _segments(points):
    """`points` split at None entries (a break in the line)."""
    segment = []
    for point in list(points) + [None]:
        if point is None:
            if segment:
                yield segment
            segment = []
        else:
            segment.append(point)


def _legend(names):
    return [(name, COLORS[i % len(COLORS)]) for i, name in enumerate(names)]


def _circle(frame, x, y, color, radius, title=None):
    """A marker at data point (x, y) of `frame`; `title` shows when the pointer rests on it."""
    tip = "<title>%s</title>" % escape(title) if title else ""
    return '<circle cx="%.1f" cy="%.1f" r="%g" fill="%s">%s</circle>' % (
        frame.px(x), frame.py(y), radius, color, tip)


def line_frame(title, xlabel, ylabel, series, marks=(), dots=()):
    """A line chart; `series` is {name: [(x, y) or None (a break), ...]}, `marks` x positions
    of dashed rules, `dots` names of series drawn as markers instead of a line (a few logged
    points, which as a line would be too short to see beside a run of 100,000 steps)."""
    xs = [p[0] for points in series.values() for p in points if p] or [0, 1]
    ys = [p[1] for points in series.values() for p in points if p] or [0, 1]
    frame = _Frame(title, xlabel, ylabel, xs, ys + [0.0], legend=_legend(series))
    for x in marks:
        frame.parts.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#999" '
                           'stroke-dasharray="4 3"/>' % (frame.px(x), frame.top, frame.px(x),
                                                         frame.plot_bottom))
    for i, (name, points) in enumerate(series.items()):
        if name in dots:
            frame.parts.extend(_circle(frame, x, y, COLORS[i % len(COLORS)], 3.5)
                               for x, y in (p for p in points if p))
            continue
        for segment in _segments(points):
            path = " ".join("%.1f,%.1f" % (frame.px(x), frame.py(y)) for x, y in segment)
            frame.parts.append('<polyline points="%s" fill="none" stroke="%s" '
                               'stroke-width="1.5"/>' % (path, COLORS[i % len(COLORS)]))
    return frame


def _overlap(a, b):
    return (max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
            * max(0.0, min(a[3], b[3]) - max(a[1], b[1])))


def _merged(points, series_count, radius=3.0):
    """`points` [(px, py, label, colour)] with those closer than `radius` pixels (points
    drawn over each other) merged into one label: "stage 0 (both)" when the label is the same
    in each series, the labels joined by commas otherwise."""
    groups = []
    for point in points:
        for group in groups:
            if math.hypot(group[0][0] - point[0], group[0][1] - point[1]) < radius:
                group.append(point)
                break
        else:
            groups.append([point])
    out = []
    for group in groups:
        labels = list(dict.fromkeys(p[2] for p in group))
        colors = set(p[3] for p in group)
        if len(group) == 1:
            text = labels[0]
        elif len(labels) == 1 and len(colors) == len(group):
            text = "%s (%s)" % (labels[0], "both" if series_count == 2 else "all")
        else:
            text = ", ".join(labels)
        out.append((group[0][0], group[0][1], text, colors.pop() if len(colors) == 1
                    else MIXED_COLOR))
    return out


def _place_labels(frame, points, radius=4):
    """SVG parts labelling `points` [(px, py, label, colour)] beside their markers: each label
    goes to the first of a few positions around its point (right, above right, below right,
    then the same on the left, then further up or down with a leader line) that stays inside
    the plot (or in the margin above it) and clear of the markers and of the labels placed
    before it."""
    size = FONT_SIZE
    markers = [(x - radius - 1, y - radius - 1, x + radius + 1, y + radius + 1)
               for x, y, _, _ in points]
    # Inside the plot, or above it up to the title (whose descenders end 9 px above it).
    bounds = (frame.left + 1, frame.top - 8, frame.width - 2, frame.plot_bottom)
    mid = (ASCENT - DESCENT) * size / 2  # baseline offset that centres a label on its point
    near = [(7, mid, "start"), (6, -6, "start"), (6, 13, "start"),
            (-7, mid, "end"), (-6, -6, "end"), (-6, 13, "end")]
    far = [(10 * side, mid + 12 * k * sign, "start" if side > 0 else "end")
           for k in range(1, 6) for side in (1, -1) for sign in (-1, 1)]
    placed, parts = [], []
    for x, y, label, color in points:
        best = None
        for n, (dx, dy, anchor) in enumerate(near + far):
            box = text_box(x + dx, y + dy, label, anchor)
            outside = (box[0] < bounds[0] or box[1] < bounds[1] or box[2] > bounds[2]
                       or box[3] > bounds[3])
            cost = (1e9 if outside else 0.0) + sum(_overlap(box, other)
                                                   for other in markers + placed)
            if best is None or cost < best[0]:
                best = (cost, n, dx, dy, anchor, box)
            if cost == 0:
                break
        _, n, dx, dy, anchor, box = best
        placed.append(box)
        if n >= len(near):  # away from its point: a leader line to it
            end_x = box[0] - 1 if anchor == "start" else box[2] + 1
            parts.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" '
                         'stroke-width="0.8"/>' % (x, y, end_x, y + dy - mid, color))
        parts.append(_text(x + dx, y + dy, label, anchor, color))
    return parts


def scatter_frame(title, xlabel, ylabel, series, joined=True):
    """A scatter chart; `series` is {name: [(x, y, label), ...]}, points labelled (points drawn
    over each other get one label, e.g. "stage 0 (both)") and, if `joined`, joined in order."""
    xs = [p[0] for points in series.values() for p in points] or [1]
    ys = [p[1] for points in series.values() for p in points] or [0, 1]
    # Sizes compared from zero; room on the right for the labels.
    frame = _Frame(title, xlabel, ylabel, xs + [0, max(xs) * 1.2], ys, legend=_legend(series))
    labels = []
    for i, points in enumerate(series.values()):
        color = COLORS[i % len(COLORS)]
        if joined:
            path = " ".join("%.1f,%.1f" % (frame.px(x), frame.py(y)) for x, y, _ in points)
            frame.parts.append('<polyline points="%s" fill="none" stroke="%s" '
                               'stroke-dasharray="3 2"/>' % (path, color))
        for x, y, label in points:
            frame.parts.append(_circle(frame, x, y, color, 4, label))
            labels.append((frame.px(x), frame.py(y), label, color))
    frame.parts += _place_labels(frame, _merged(labels, len(series)))
    return frame


def widths_frame(dense_widths, kept):
    """A bar chart: per prunable layer, the dense width (grey) and the width kept after each
    stage, labelled kept/dense (of the last stage). `kept` is [(stage label, {unit: width})]."""
    units = list(dense_widths)
    legend = [("dense", DENSE_COLOR)] + [("after %s" % label, COLORS[j % len(COLORS)])
                                         for j, (label, _) in enumerate(kept)]
    values = {unit: [dense_widths[unit]] + [w[unit] for _, w in kept] for unit in units}
    ratios = {unit: "%d/%d" % (v[-1], v[0]) for unit, v in values.items()}
    bars = len(kept) + 1
    group = max([6 * bars + 14] + [text_width(t) + 8 for t in list(ratios.values()) + units])
    top = max(dense_widths.values())
    # Where the frame's margins come to with the y ticks of 0..top (and headroom for labels).
    probe = _Frame("", "", "", [0, 1], [0, top * 1.08], categories=units)
    width = max(460, int(math.ceil(probe.left + probe.right + group * len(units))))
    frame = _Frame("channels kept per prunable layer (labels: kept/dense, last stage)",
                   "prunable layer", "channels", [0, 1], [0, top * 1.08], legend=legend,
                   width=width, categories=units)
    span = frame.px(1) - frame.px(0)
    bar = max(4.0, min(12.0, (span - 14) / bars))
    for i, unit in enumerate(units):
        start = frame.px(i + 0.5) - bar * bars / 2
        for j, value in enumerate(values[unit]):
            y = frame.py(value)
            frame.parts.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s">'
                               '<title>%s: %d</title></rect>'
                               % (start + j * bar, y, bar - 1, frame.plot_bottom - y,
                                  legend[j][1], unit, value))
        frame.parts.append(_text(frame.px(i + 0.5), frame.py(max(values[unit])) - 3,
                                 ratios[unit], "middle"))
    return frame


def widths_svg(dense_widths, kept):
    """`widths_frame` as an SVG document."""
    return document([widths_frame(dense_widths, kept)], columns=1)
