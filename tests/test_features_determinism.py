"""The same transfers give bit-identical features on every run (a forced re-run must not drift)."""

from __future__ import annotations

from mulegraph.features import compute_features
from mulegraph.synth import generate


def test_features_are_bit_identical_across_runs():
    data = generate(1500, 20, seed=3)
    first = compute_features(data.transfers)
    for _ in range(3):
        again = compute_features(data.transfers)
        assert again.columns == first.columns
        for col in first.columns:
            assert again[col].equals(first[col], null_equal=True), col
