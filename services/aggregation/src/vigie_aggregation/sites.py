"""Which site each camera belongs to.

Figures are published per camera and per site (the sum over its cameras), so the release of a window needs
the site's cameras. For now the membership comes from the settings (``cameras: [{id, site}]``); the
registry will publish it in the policy bucket, and a ``SiteDirectory`` watching that bucket will replace
:class:`ConfigSiteDirectory` without touching the rest of the service.

Membership is read when a window is released and frozen into what is published: moving a camera to another
site changes the windows released after the move, never those already published.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from vigie_aggregation.settings import CameraSiteConfig

__all__ = ["ConfigSiteDirectory", "SiteDirectory"]


class SiteDirectory(Protocol):
    """The current camera-to-site membership."""

    def site_of(self, camera_id: str) -> str | None:
        """The camera's site, or None for a camera no site lists (its reports are kept, not published)."""
        ...

    def cameras_of(self, site_id: str) -> frozenset[str]:
        """The cameras of a site (empty for an unknown site)."""
        ...

    def sites(self) -> Mapping[str, frozenset[str]]:
        """Every site with its cameras."""
        ...


class ConfigSiteDirectory:
    """Membership from the settings, fixed for the life of the process."""

    def __init__(self, cameras: Iterable[CameraSiteConfig]) -> None:
        self._site_of = {camera.id: camera.site for camera in cameras}
        sites: dict[str, set[str]] = {}
        for camera, site in self._site_of.items():
            sites.setdefault(site, set()).add(camera)
        self._sites = {site: frozenset(members) for site, members in sorted(sites.items())}

    def site_of(self, camera_id: str) -> str | None:
        return self._site_of.get(camera_id)

    def cameras_of(self, site_id: str) -> frozenset[str]:
        return self._sites.get(site_id, frozenset())

    def sites(self) -> Mapping[str, frozenset[str]]:
        return self._sites
