"""Small SVG charts for the results report, written by hand so the report needs no plotting
package: a line chart, a scatter chart and a grouped bar chart of the channels kept."""
import math
from xml.sax.saxutils import escape

COLORS = ["#08519c", "#e6550d", "#31a354", "#756bb1", "#636363", "#9ecae1"]
_FONT = 'font-family="sans-serif" font-size="11"'


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
    """Axes of a chart: maps data coordinates to pixels and draws the ticks and titles."""

    def __init__(self, title, xlabel, ylabel, xs, ys, width=460, height=280):
        self.width, self.height = width, height
        self.left, self.right, self.top, self.bottom = 56, 12, 28, 58
        self.xticks, self.yticks = _ticks(min(xs), max(xs)), _ticks(min(ys), max(ys))
        self.x0, self.x1 = min(self.xticks[0], min(xs)), max(self.xticks[-1], max(xs))
        self.y0, self.y1 = min(self.yticks[0], min(ys)), max(self.yticks[-1], max(ys))
        self.parts = ['<text x="%d" y="16" font-weight="bold">%s</text>' % (self.left, escape(title))]
        for t in self.xticks:
            x = self.px(t)
            self.parts.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>'
                              % (x, self.top, x, height - self.bottom))
            self.parts.append('<text x="%.1f" y="%d" text-anchor="middle">%s</text>'
                              % (x, height - self.bottom + 14, _label(t)))
        for t in self.yticks:
            y = self.py(t)
            self.parts.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>'
                              % (self.left, y, width - self.right, y))
            self.parts.append('<text x="%d" y="%.1f" text-anchor="end">%s</text>'
                              % (self.left - 4, y + 4, _label(t)))
        self.parts.append('<text x="%d" y="%d" text-anchor="middle">%s</text>'
                          % ((self.left + width - self.right) / 2, height - 24, escape(xlabel)))
        self.parts.append('<text x="12" y="%d" text-anchor="middle" transform="rotate(-90 12 %d)">'
                          '%s</text>' % ((self.top + height - self.bottom) / 2,
                                         (self.top + height - self.bottom) / 2, escape(ylabel)))

    def px(self, x):
        span = (self.x1 - self.x0) or 1.0
        return self.left + (x - self.x0) / span * (self.width - self.left - self.right)

    def py(self, y):
        span = (self.y1 - self.y0) or 1.0
        return self.height - self.bottom - (y - self.y0) / span * (self.height - self.top - self.bottom)

    def legend(self, names):
        """One row under the axis, where it covers no data."""
        x, y = self.left, self.height - 14
        for i, name in enumerate(names):
            self.parts.append('<rect x="%d" y="%d" width="10" height="10" fill="%s"/>'
                              % (x, y, COLORS[i % len(COLORS)]))
            self.parts.append('<text x="%d" y="%d">%s</text>' % (x + 14, y + 9, escape(name)))
            x += 24 + 7 * len(name)

    def svg(self, dx=0, dy=0):
        return '<g transform="translate(%d,%d)">%s</g>' % (dx, dy, "\n".join(self.parts))


def document(frames, columns=2):
    """One SVG document holding `frames` (from `line_frame` / `scatter_frame`) in a grid."""
    width = max(f.width for f in frames)
    height = max(f.height for f in frames)
    rows = (len(frames) + columns - 1) // columns
    cols = min(columns, len(frames))
    body = [f.svg((i % columns) * width, (i // columns) * height) for i, f in enumerate(frames)]
    return ('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" %s>\n'
            '<rect width="100%%" height="100%%" fill="white"/>\n%s\n</svg>\n'
            % (cols * width, rows * height, _FONT, "\n".join(body)))


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


def line_frame(title, xlabel, ylabel, series, marks=()):
    """A line chart; `series` is {name: [(x, y) or None (a break), ...]}, `marks` x positions
    of dashed rules."""
    xs = [p[0] for points in series.values() for p in points if p] or [0, 1]
    ys = [p[1] for points in series.values() for p in points if p] or [0, 1]
    frame = _Frame(title, xlabel, ylabel, xs, ys + [0.0])
    for x in marks:
        frame.parts.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#999" '
                           'stroke-dasharray="4 3"/>' % (frame.px(x), frame.top, frame.px(x),
                                                         frame.height - frame.bottom))
    for i, points in enumerate(series.values()):
        for segment in _segments(points):
            path = " ".join("%.1f,%.1f" % (frame.px(x), frame.py(y)) for x, y in segment)
            frame.parts.append('<polyline points="%s" fill="none" stroke="%s" '
                               'stroke-width="1.5"/>' % (path, COLORS[i % len(COLORS)]))
    frame.legend(list(series))
    return frame


def scatter_frame(title, xlabel, ylabel, series):
    """A scatter chart; `series` is {name: [(x, y, label), ...]}, points joined in order."""
    xs = [p[0] for points in series.values() for p in points] or [1]
    ys = [p[1] for points in series.values() for p in points] or [0, 1]
    # Sizes compared from zero; room on the right for the labels.
    frame = _Frame(title, xlabel, ylabel, xs + [0, max(xs) * 1.2], ys)
    for i, points in enumerate(series.values()):
        color = COLORS[i % len(COLORS)]
        path = " ".join("%.1f,%.1f" % (frame.px(x), frame.py(y)) for x, y, _ in points)
        frame.parts.append('<polyline points="%s" fill="none" stroke="%s" stroke-dasharray="3 2"/>'
                           % (path, color))
        for x, y, label in points:
            frame.parts.append('<circle cx="%.1f" cy="%.1f" r="4" fill="%s"><title>%s</title>'
                               '</circle>' % (frame.px(x), frame.py(y), color, escape(label)))
            frame.parts.append('<text x="%.1f" y="%.1f" fill="%s">%s</text>'
                               % (frame.px(x) + 6, frame.py(y) - 5, color, escape(label)))
    frame.legend(list(series))
    return frame


def widths_svg(dense_widths, kept):
    """A bar chart: per prunable layer, the dense width and the width kept after each stage.

    `kept` is [(stage label, {unit: width})]."""
    units = list(dense_widths)
    bar, gap, height, margin = 8, 14, 160, 32
    group = bar * (len(kept) + 1) + gap
    width = 60 + group * len(units)
    top = max(dense_widths.values())
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" %s>'
           % (width, height + margin + 70, _FONT)]
    out.append('<text x="5" y="12">labels: kept/dense; channels kept per prunable layer (grey: '
               'dense; colours: after %s)</text>' % escape(", ".join(label for label, _ in kept)))
    for i, unit in enumerate(units):
        x = 50 + i * group
        series = [dense_widths[unit]] + [w[unit] for _, w in kept]
        for j, value in enumerate(series):
            h = height * value / top
            color = "#bdbdbd" if j == 0 else COLORS[(j - 1) % len(COLORS)]
            out.append('<rect x="%d" y="%.1f" width="%d" height="%.1f" fill="%s"><title>%s: %d'
                       '</title></rect>' % (x + j * bar, margin + height - h, bar - 1, h, color,
                                            unit, value))
        out.append('<text x="%d" y="%.1f">%d/%d</text>'
                   % (x, margin - 3 + height - height * max(series) / top, series[-1], series[0]))
        out.append('<text x="%d" y="%d" transform="rotate(45 %d %d)">%s</text>'
                   % (x, height + margin + 12, x, height + margin + 12, unit))
    out.append("</svg>")
    return "\n".join(out) + "\n"
