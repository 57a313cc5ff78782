"""The engine's results are pinned bit for bit: a fixed set of sweeps (``engine_digest.py``)
against the arrays recorded before the engine moved into its folders.

XLA:CPU compiles for the host's vector units, so float results are bit-identical only on the
same kind of CPU: there is one reference per kind of CPU recorded (``tests/data/
engine_digest*.npz``, each recorded with the code from before the move). On a recorded kind,
every array must be bit-identical (its SHA-256 digest equal). On another kind, a case is
compared to float tolerance when the recorded kinds agree on it to that tolerance (it is
well-conditioned across CPUs); a case they disagree on (training amplifies the last bits,
e.g. Adam with BatchNorm and dropout) is skipped there with that reason.
"""

import json

import engine_digest
import numpy as np
import pytest


def _load(path):
    with np.load(path) as z:
        meta = json.loads(str(z["__meta__"]))
        arrays: dict[str, dict[str, np.ndarray]] = {}
        for key in z.files:
            if key != "__meta__":
                case, name = key.split("/", 1)
                arrays.setdefault(case, {})[name] = z[key]
    return meta, arrays


REFERENCES = [_load(p) for p in engine_digest.references()]
CASES = sorted(REFERENCES[0][0]["digests"])


def _close(a, b):
    return all(np.allclose(a[n], b[n], rtol=1e-5, atol=1e-7, equal_nan=True) for n in a)


@pytest.fixture(scope="module")
def reference():
    """This machine's reference, or None on a kind of CPU none was recorded on."""
    return next((r for r in REFERENCES if r[0]["machine"] == engine_digest.machine()), None)


def test_the_references_are_of_the_same_cases():
    for meta, arrays in REFERENCES:
        assert sorted(meta["digests"]) == sorted(arrays) == CASES, meta["machine"]


@pytest.fixture(scope="module")
def computed():
    return {**engine_digest.cases(), **engine_digest.devices4_cases()}


def test_every_case_is_recorded(computed):
    meta, arrays = REFERENCES[0]
    assert sorted(computed) == CASES
    for case in computed:
        assert sorted(computed[case]) == sorted(arrays[case]), case


@pytest.mark.parametrize("case", CASES)
def test_results_are_unchanged(case, reference, computed):
    got = computed[case]
    if reference is not None:
        meta, arrays = reference
        want = arrays[case]
        for name in sorted(want):  # name the first array that differs, then the digest
            np.testing.assert_array_equal(got[name], want[name], err_msg=f"{case}/{name}")
        assert engine_digest.digest(got) == meta["digests"][case]
        return
    recorded = [arrays[case] for _, arrays in REFERENCES]
    if not all(_close(recorded[0], other) for other in recorded[1:]):
        pytest.skip(f"{case} is not reproducible to float tolerance across the recorded kinds "
                    f"of CPU ({[m['machine'] for m, _ in REFERENCES]}), and this one "
                    f"({engine_digest.machine()}) has no reference of its own")
    want = recorded[0]
    for name in sorted(want):
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-7,
                                   err_msg=f"{case}/{name} (another CPU than the recorded "
                                   "ones: float tolerance)")
