"""ImageNet-1k class names (index order of the released models; resources/imagenet_classes.txt)."""

from __future__ import annotations

import difflib
import functools
import importlib.resources


@functools.cache
def class_names() -> tuple[str, ...]:
    text = (
        importlib.resources.files("biggan").joinpath("resources/imagenet_classes.txt").read_text()
    )
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def class_index(name_or_index: str | int, num_classes: int = 1000) -> int:
    """An ImageNet class index from an index or a class name (case-insensitive); unknown names get
    the closest matches in the error."""
    text = str(name_or_index).strip()
    if text.lstrip("-").isdigit():
        index = int(text)
        if not 0 <= index < num_classes:
            raise ValueError(
                f"class index {index} is outside [0, {num_classes}); valid: 0..{num_classes - 1}"
            )
        return index
    if num_classes != 1000:
        raise ValueError(
            f"class name {text!r} given, but class names exist only for ImageNet-1k models "
            f"(this model has {num_classes} classes): pass an index in 0..{num_classes - 1}"
        )
    lowered = [n.lower() for n in class_names()]
    if text.lower() in lowered:
        return lowered.index(text.lower())
    close = difflib.get_close_matches(text.lower(), lowered, n=5, cutoff=0.5)
    close += [n for n in lowered if text.lower() in n and n not in close][: 5 - len(close)]
    hint = ", ".join(f"{class_names()[lowered.index(c)]!r} ({lowered.index(c)})" for c in close)
    raise ValueError(
        f"unknown ImageNet class name {text!r}" + (f"; closest: {hint}" if hint else "")
    )
