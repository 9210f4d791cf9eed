"""What `pip install` puts on a pod: the tests run against the installed wheel."""

from __future__ import annotations

import importlib.metadata as md
import re
from pathlib import Path

import vision_node


def test_the_installed_package_carries_its_stubs_and_type_information() -> None:
    where = Path(vision_node.__file__).parent
    assert "site-packages" in where.parts, f"the tests must import the installed wheel, not {where}"
    assert (where / "py.typed").is_file()
    for name in ("admission_pb2.py", "admission_pb2.pyi"):
        assert (where / "_proto" / "vision" / "v1" / name).is_file(), name


def test_grpcio_and_protobuf_are_the_only_required_dependencies() -> None:
    requires = md.requires("vision-node-client") or []
    names = sorted(re.split(r"[ <>=!~;\[]", r, maxsplit=1)[0] for r in requires if "extra ==" not in r)
    assert names == ["grpcio", "protobuf"]
    extras = [r for r in requires if "extra ==" in r]
    assert len(extras) == 1 and extras[0].startswith("tritonclient[grpc]"), extras
    assert md.version("vision-node-client") == vision_node.__version__
