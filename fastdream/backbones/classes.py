"""Class names of a classifier, looked up by index or by name (case-insensitive, synonyms too).

The ImageNet-1k names ship as ``fastdream/data/imagenet_classes.txt``: one line per class in index
order, comma-separated WordNet synonyms, the first being the display name (``tabby, tabby cat``).
"""
from __future__ import annotations

import functools
import importlib.resources
from typing import Iterable, Sequence

from fastdream.errors import FastdreamError, suggest


def _norm(name: str) -> str:
    return " ".join(str(name).replace("_", " ").split()).casefold()


class ClassNames:
    """Index <-> name for ``len(self)`` classes; each class has a display name and optional synonyms.

    >>> names = imagenet_classes()
    >>> names.index("tabby cat"), names.index("Egyptian cat"), names.index(285)
    (281, 285, 285)
    >>> names[281]
    'tabby'
    """

    def __init__(self, synonyms: Sequence[Sequence[str]]):
        self.synonyms: list[list[str]] = [[str(s).strip() for s in group if str(s).strip()] for group in synonyms]
        for i, group in enumerate(self.synonyms):
            if not group:
                self.synonyms[i] = [f"class {i}"]
        self.names: list[str] = [group[0] for group in self.synonyms]

    @classmethod
    def from_names(cls, names: Iterable[str]) -> "ClassNames":
        """One display name per class; a name with commas is read as a list of synonyms."""
        return cls([str(n).split(",") for n in names])

    @classmethod
    def numbered(cls, n: int) -> "ClassNames":
        return cls([[f"class {i}"] for i in range(n)])

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> str:
        return self.names[i]

    def lines(self) -> list[str]:
        """Each class as ``"name, synonym, ..."`` (the form saved in checkpoints)."""
        return [", ".join(group) for group in self.synonyms]

    @functools.cached_property
    def _lookup(self) -> tuple[dict, dict, dict]:
        exact, primary, synonym = {}, {}, {}
        for i, group in enumerate(self.synonyms):
            exact.setdefault(group[0], []).append(i)
            primary.setdefault(_norm(group[0]), []).append(i)
            for s in group:
                synonym.setdefault(_norm(s), [])
                if i not in synonym[_norm(s)]:
                    synonym[_norm(s)].append(i)
        return exact, primary, synonym

    def index(self, name_or_index) -> int:
        """Class index for an index (int or digit string) or a name.

        Names match case-insensitively (``_`` as space), display names before synonyms; a name two
        classes share (ImageNet's two "crane"s) must be given as an index.
        """
        n = len(self.names)
        if isinstance(name_or_index, bool):
            raise FastdreamError(f"class must be a name or an index, got {name_or_index!r}")
        if isinstance(name_or_index, int) or (isinstance(name_or_index, str) and name_or_index.strip().isdigit()):
            i = int(name_or_index)
            if not 0 <= i < n:
                raise FastdreamError(f"class index {i} is out of range: this backbone has {n} classes (0..{n - 1})")
            return i
        if not isinstance(name_or_index, str):
            raise FastdreamError(f"class must be a name or an index, got {type(name_or_index).__name__}")
        exact, primary, synonym = self._lookup
        key = _norm(name_or_index)
        for table, k in ((exact, name_or_index.strip()), (primary, key), (synonym, key)):
            hits = table.get(k)
            if hits and len(hits) == 1:
                return hits[0]
            if hits:
                listed = " or ".join(f"{i} ({self.names[i]})" for i in hits)
                raise FastdreamError(f"class name {name_or_index!r} is ambiguous: {listed}; give the index")
        everything = [s for group in self.synonyms for s in group]
        raise FastdreamError(suggest(name_or_index, dict.fromkeys(everything), "class"))


@functools.lru_cache(maxsize=1)
def imagenet_classes() -> ClassNames:
    """The 1000 ImageNet-1k classes in index order (``[281] == 'tabby'``)."""
    text = importlib.resources.files("fastdream").joinpath("data/imagenet_classes.txt").read_text("utf-8")
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) != 1000:  # pragma: no cover - a broken install
        raise RuntimeError(f"fastdream/data/imagenet_classes.txt has {len(lines)} lines, expected 1000")
    return ClassNames([line.split(",") for line in lines])


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet display names in index order."""
    return list(imagenet_classes().names)
