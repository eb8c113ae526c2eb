"""Compare the static table with the installed Captum's exports (imports Captum).

A Captum release that adds an attribution class is never silently ignored:
:func:`check_coverage` runs when the first Captum method is loaded and warns
(once per process) about classes that are neither registered nor listed as
unsupported; the plugin's tests fail on them.
"""

from __future__ import annotations

import dataclasses
import inspect
import warnings

from attribkit_captum.table import SUPPORTED, UNSUPPORTED, VERIFIED_WITH

_checked = False


class CaptumCoverageWarning(UserWarning):
    """The installed Captum exports attribution classes this plugin does not know."""


@dataclasses.dataclass(frozen=True)
class Coverage:
    captum_version: str
    registered: tuple[str, ...]
    unsupported: dict[str, str]
    unknown: tuple[str, ...]
    missing: tuple[str, ...]


def captum_attribution_classes() -> set[str]:
    """Names in ``captum.attr.__all__`` that are classes subclassing ``captum.attr.Attribution``."""
    import captum.attr as attr

    names = set()
    for name in getattr(attr, "__all__", dir(attr)):
        obj = getattr(attr, name, None)
        if inspect.isclass(obj) and issubclass(obj, attr.Attribution):
            names.add(name)
    return names


def coverage() -> Coverage:
    """Registered, unsupported, unknown (new in Captum) and missing (gone from Captum) classes."""
    import captum

    exported = captum_attribution_classes()
    known = {e.cls for e in SUPPORTED} | set(UNSUPPORTED)
    return Coverage(
        captum_version=getattr(captum, "__version__", "unknown"),
        registered=tuple(sorted(e.cls for e in SUPPORTED if e.cls in exported)),
        unsupported={k: v for k, v in sorted(UNSUPPORTED.items()) if k in exported},
        unknown=tuple(sorted(exported - known)),
        missing=tuple(sorted(e.cls for e in SUPPORTED if e.cls not in exported)),
    )


def check_coverage() -> Coverage | None:
    """Warn once per process if Captum exports classes the table does not cover."""
    global _checked
    if _checked:
        return None
    _checked = True
    report = coverage()
    if report.unknown:
        warnings.warn(
            f"captum {report.captum_version} exports attribution classes that attribkit-captum "
            f"(table verified with captum {VERIFIED_WITH}) neither registers nor lists as "
            f"unsupported: {', '.join(report.unknown)}. They are not available through "
            "ak.explain; please report it (attribkit_captum.coverage() shows the full picture).",
            CaptumCoverageWarning,
            stacklevel=3,
        )
    return report
