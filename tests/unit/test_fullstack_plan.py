"""`make fullstack` runs each compose service as the local program that stands in for its image;
an image it has no program for is an error naming the service and the image, never a guess."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from forestops.fullstack import local
from forestops.fullstack.backing import Backing
from forestops.fullstack.compose import load_compose
from forestops.fullstack.plan import UnknownImage, build


def load_balancer(image: str | None = None) -> dict[str, Any]:
    """The compose file's `lb` service alone, with its own image or `image`."""
    service = dict(load_compose()["services"]["lb"])
    if image is not None:
        service["image"] = image
    return {"services": {"lb": service}}


def test_the_load_balancers_image_runs_as_this_machines_nginx(tmp_path: Path) -> None:
    (process,) = build(load_balancer(), Backing(run_id="plan"), tmp_path).processes
    assert process.argv[0] == local.NGINX


def test_an_image_without_a_local_program_is_an_error_naming_service_and_image(
    tmp_path: Path,
) -> None:
    with pytest.raises(UnknownImage, match=r"service 'lb' runs image 'traefik',"):
        build(load_balancer("traefik:v3.1"), Backing(run_id="plan"), tmp_path)
