"""The documentation's links lead somewhere: every relative link and image of README.md,
docs/*.md and benchmarks/README.md names a file of the repository, and every #anchor a heading
of its page, by GitHub's rule for heading anchors."""
import collections
import functools
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = ([ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
         + [ROOT / "benchmarks" / "README.md"])
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def prose(path):
    """The lines of `path` outside fenced code blocks."""
    inside = False
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("```"):
            inside = not inside
        elif not inside:
            yield line


@functools.lru_cache(maxsize=None)  # a page is read once, however many links point into it
def anchors(path):
    """GitHub's anchors of the headings of `path`: lower case, punctuation dropped (word
    characters, spaces and hyphens stay), spaces made hyphens, repeats numbered -1, -2, ..."""
    seen, out = collections.Counter(), set()
    for line in prose(path):
        match = re.match(r"#{1,6} (.*)", line)
        if match:
            slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
            out.add(slug if not seen[slug] else "%s-%d" % (slug, seen[slug]))
            seen[slug] += 1
    return frozenset(out)


def test_anchor_rule_against_hand_made_slugs(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Mixed precision (`--use_fp16`)\n```\n# not a heading\n```\n"
                    "## Faithfulness, and where it differs\n## Tests\n## Tests\n")
    assert anchors(page) == {"mixed-precision---use_fp16", "faithfulness-and-where-it-differs",
                             "tests", "tests-1"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    broken = []
    for line in prose(page):
        for target in LINK.findall(line):
            if re.match(r"[a-z]+:", target):  # https:, mailto: ...: not ours to check here
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append("%s (no such file)" % target)
            elif anchor and file.suffix == ".md" and anchor not in anchors(file):
                broken.append("%s (no such heading)" % target)
    assert not broken, broken
