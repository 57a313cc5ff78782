"""The data order of a sweep: the sort-free permutation and the per-epoch batches."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlr._sweep.data import batch_indices as _batch_indices
from jaxlr._sweep.data import permutation


@pytest.mark.parametrize("n", [1, 2, 3, 5, 16, 17, 100, 1797, 4096, 4097])
def test_permutation_is_a_bijection(n):
    for seed in range(3):
        p = np.asarray(permutation(jax.random.key(seed), n))
        assert p.dtype == np.int32 and p.shape == (n,)
        np.testing.assert_array_equal(np.sort(p), np.arange(n))


def test_permutation_is_uniform_and_keyed():
    """Each position's value is uniform over 0..n-1: a chi-square test per position (df = n-1 =
    5; the 99.99% quantile is 25.7), over 12,000 keys."""
    n, k = 6, 12_000
    perms = np.asarray(jax.jit(jax.vmap(lambda key: permutation(key, n)))(
        jax.random.split(jax.random.key(7), k)))
    counts = np.stack([np.bincount(perms[:, i], minlength=n) for i in range(n)])
    chi2 = ((counts - k / n) ** 2 / (k / n)).sum(axis=1)
    assert (chi2 < 25.7).all(), chi2
    # all 720 orderings occur (a 6-round Feistel network does not get stuck in a subgroup)
    assert len({tuple(p) for p in perms}) == 720
    # same key, same permutation; another key, another one
    a, b = jax.random.key(1), jax.random.key(2)
    np.testing.assert_array_equal(permutation(a, 50), permutation(a, 50))
    assert not np.array_equal(permutation(a, 50), permutation(b, 50))


def test_batch_indices_walk_through_epochs():
    """An epoch is one permutation of the n examples; its first n // bs full batches are used,
    so every example appears at most once per epoch; chunks read the same stream."""
    n, bs, k = 50, 8, 13  # 6 batches per epoch, the last 2 examples of each epoch are dropped
    seeds = jnp.array([0, 3], jnp.int32)
    whole = np.asarray(_batch_indices(seeds, jnp.int32(0), 3 * k, n, bs))  # [S, 39, bs]
    for s in range(2):
        for epoch in range(39 // 6):
            block = whole[s, 6 * epoch: 6 * epoch + 6].ravel()
            assert len(set(block.tolist())) == 48
            key = jax.random.fold_in(jax.random.fold_in(jax.random.key(int(seeds[s])), 1), epoch)
            np.testing.assert_array_equal(block, np.asarray(permutation(key, n))[:48])
    chunks = [np.asarray(_batch_indices(seeds, jnp.int32(c * k), k, n, bs)) for c in range(3)]
    np.testing.assert_array_equal(np.concatenate(chunks, axis=1), whole)
    assert not np.array_equal(whole[0], whole[1])  # seeds see different orders
