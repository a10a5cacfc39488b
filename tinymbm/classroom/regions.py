"""Exercise regions in the engine's source: find them, blank them, fill them back in.

A region is the code between two marker lines, indented like the code they
enclose::

    def reference_conv2d_forward(x, weight, bias, stride, padding):
        \"\"\"Docstring and hints stay above the region, so they survive blanking.\"\"\"
        # BEGIN EXERCISE conv_forward: implement y = conv2d(x, w) + b with one loop per index
        ...the solution...
        # END EXERCISE conv_forward

Blanking keeps both marker lines and replaces the lines between them with one
``raise NotImplementedError("exercise conv_forward: <description> (see the
docstring above)")`` at the BEGIN line's indentation, so the student copy
still imports and the failure names its exercise. An exercise may have
several regions (one per function it covers).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable
from pathlib import Path

BEGIN_PATTERN = re.compile(r"^(?P<indent>[ \t]*)# BEGIN EXERCISE (?P<id>[A-Za-z_][A-Za-z0-9_]*): (?P<description>\S.*?)\s*$")
END_PATTERN = re.compile(r"^[ \t]*# END EXERCISE (?P<id>[A-Za-z_][A-Za-z0-9_]*)\s*$")
_DEF_PATTERN = re.compile(r"^(?P<indent>[ \t]*)(?:async\s+)?def\s+(?P<name>\w+)")
_CLASS_PATTERN = re.compile(r"^(?P<indent>[ \t]*)class\s+(?P<name>\w+)")

# The classroom package names the markers in its own docstrings and patterns,
# so it is never scanned for regions.
_SKIPPED_PACKAGE = Path("tinymbm") / "classroom"


class RegionError(ValueError):
    """Markers that do not pair up: an END without a BEGIN, a nested or unclosed region."""


@dataclasses.dataclass(frozen=True)
class Region:
    """One BEGIN/END pair in one source file.

    ``begin`` and ``end`` are the 0-based line numbers of the two marker lines;
    ``body`` is the text between them, every line with its newline.
    """

    exercise: str
    description: str
    path: str
    begin: int
    end: int
    indent: str
    body: str
    function: str

    @property
    def location(self) -> str:
        """``path:line (function)``, with the 1-based line of the BEGIN marker."""
        return f"{self.path}:{self.begin + 1} ({self.function})"


def parse_regions(text: str, path: str) -> list[Region]:
    """Return the regions of one file's ``text`` in file order.

    Raises:
        RegionError: an END line without its BEGIN, a BEGIN inside an open
            region, or a region still open at the end of the file.
    """
    lines = text.splitlines(keepends=True)
    regions: list[Region] = []
    open_match: re.Match | None = None
    open_line = -1

    for number, line in enumerate(lines):
        begin = BEGIN_PATTERN.match(line)
        end = END_PATTERN.match(line)
        if begin:
            if open_match is not None:
                raise RegionError(
                    f"{path}:{number + 1}: BEGIN EXERCISE {begin['id']} inside the open region "
                    f"{open_match['id']} that starts at line {open_line + 1}; close it first"
                )
            open_match, open_line = begin, number
        elif end:
            if open_match is None or end["id"] != open_match["id"]:
                expected = "no region is open" if open_match is None else f"expected END EXERCISE {open_match['id']}"
                raise RegionError(f"{path}:{number + 1}: END EXERCISE {end['id']} does not match ({expected})")
            regions.append(
                Region(
                    exercise=open_match["id"],
                    description=open_match["description"],
                    path=path,
                    begin=open_line,
                    end=number,
                    indent=open_match["indent"],
                    body="".join(lines[open_line + 1:number]),
                    function=_enclosing_definition(lines, open_line),
                )
            )
            open_match = None

    if open_match is not None:
        raise RegionError(
            f"{path}:{open_line + 1}: BEGIN EXERCISE {open_match['id']} has no matching "
            f"END EXERCISE {open_match['id']} line"
        )
    return regions


def _enclosing_definition(lines: list[str], line_number: int) -> str:
    """Return the qualified name of the def (and class) that the line sits in, or "<module>"."""
    names = []
    width = len(lines[line_number]) - len(lines[line_number].lstrip())
    for line in reversed(lines[:line_number]):
        match = _DEF_PATTERN.match(line) or _CLASS_PATTERN.match(line)
        if match and len(match["indent"]) < width:
            names.append(match["name"])
            width = len(match["indent"])
    return ".".join(reversed(names)) or "<module>"


def source_files(root: Path) -> list[Path]:
    """Return the package's Python files under ``root`` (relative paths), classroom excluded."""
    package = root / "tinymbm"
    files = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(root)
        if "__pycache__" in relative.parts or relative.is_relative_to(_SKIPPED_PACKAGE):
            continue
        files.append(relative)
    return files


def find_regions(root: Path) -> list[Region]:
    """Return every region in the tinymbm package under ``root``, by file then line."""
    regions = []
    for relative in source_files(root):
        text = (root / relative).read_text(encoding="utf-8")
        if "EXERCISE" in text:
            regions.extend(parse_regions(text, relative.as_posix()))
    return regions


def placeholder(region: Region) -> str:
    """Return the line that replaces a blanked region's body."""
    message = f"exercise {region.exercise}: {region.description} (see the docstring above)"
    escaped = message.replace("\\", "\\\\").replace('"', '\\"')
    return f'{region.indent}raise NotImplementedError("{escaped}")\n'


def replace_bodies(text: str, path: str, bodies: dict[tuple[str, int], str]) -> str:
    """Return ``text`` with region bodies swapped.

    ``bodies`` maps (exercise id, index of that exercise's region within this
    file, counting from 0) to the new body text. Regions not in the mapping are
    kept. The marker lines are always kept.
    """
    lines = text.splitlines(keepends=True)
    seen: dict[str, int] = {}
    # Replace from the bottom up, so earlier line numbers stay valid.
    replacements = []
    for region in parse_regions(text, path):
        index = seen.get(region.exercise, 0)
        seen[region.exercise] = index + 1
        if (region.exercise, index) in bodies:
            replacements.append((region, bodies[(region.exercise, index)]))

    for region, body in reversed(replacements):
        if body and not body.endswith("\n"):
            body += "\n"
        lines[region.begin + 1:region.end] = body.splitlines(keepends=True)
    return "".join(lines)


def blank_text(text: str, path: str, exercises: Iterable[str]) -> tuple[str, list[Region]]:
    """Blank the regions of the given exercises in one file's text.

    Returns the new text and the regions that were blanked, their ``body``
    being the removed solution.
    """
    chosen = set(exercises)
    removed = []
    bodies = {}
    seen: dict[str, int] = {}
    for region in parse_regions(text, path):
        index = seen.get(region.exercise, 0)
        seen[region.exercise] = index + 1
        if region.exercise in chosen:
            removed.append(region)
            bodies[(region.exercise, index)] = placeholder(region)
    return replace_bodies(text, path, bodies), removed


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``.

    So a reader never opens a half-written file, even after a crash.
    """
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
