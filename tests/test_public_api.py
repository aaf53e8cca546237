"""Everything in ``mulegraph.__all__`` resolves, and importing the package stays light."""

from __future__ import annotations

import subprocess
import sys

import pytest

import mulegraph


@pytest.mark.parametrize("name", mulegraph.__all__)
def test_public_names_resolve(name):
    assert getattr(mulegraph, name) is not None


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError):
        mulegraph.no_such_thing  # noqa: B018


def test_import_does_not_pull_in_the_heavy_stack():
    code = "import sys, mulegraph; print(any(m.startswith(('sklearn', 'matplotlib', 'networkx')) for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
