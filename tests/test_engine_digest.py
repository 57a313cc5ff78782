"""The engine's results are pinned bit for bit: a fixed set of sweeps (``engine_digest.py``)
against the arrays recorded before the engine moved into its folders.

On the CPU the reference was recorded on, every array must be bit-identical (its SHA-256
digest equal). XLA:CPU compiles for the host's vector units, so on another kind of CPU float
results may differ in the last bits: there the arrays are compared to float tolerance instead
(a real comparison, not a skip), and the test says which comparison it made.
"""

import json

import numpy as np
import pytest

import engine_digest


@pytest.fixture(scope="module")
def reference():
    with np.load(engine_digest.REFERENCE) as z:
        meta = json.loads(str(z["__meta__"]))
        arrays: dict[str, dict[str, np.ndarray]] = {}
        for key in z.files:
            if key != "__meta__":
                case, name = key.split("/", 1)
                arrays.setdefault(case, {})[name] = z[key]
    return meta, arrays


@pytest.fixture(scope="module")
def computed():
    return {**engine_digest.cases(), **engine_digest.devices4_cases()}


def test_every_case_is_recorded(reference, computed):
    meta, arrays = reference
    assert sorted(computed) == sorted(arrays) == sorted(meta["digests"])
    for case in computed:
        assert sorted(computed[case]) == sorted(arrays[case]), case


@pytest.mark.parametrize("case", sorted(json.loads(str(np.load(
    engine_digest.REFERENCE)["__meta__"]))["digests"]))
def test_results_are_unchanged(case, reference, computed):
    meta, arrays = reference
    got, want = computed[case], arrays[case]
    if meta["machine"] == engine_digest.machine():
        for name in sorted(want):  # name the first array that differs, then the digest
            np.testing.assert_array_equal(got[name], want[name], err_msg=f"{case}/{name}")
        assert engine_digest.digest(got) == meta["digests"][case]
    else:
        for name in sorted(want):
            np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-7,
                                       err_msg=f"{case}/{name} (another CPU than the "
                                       f"reference's {meta['machine']}: float tolerance)")
