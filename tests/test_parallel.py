"""cnn_jax.train.parallel: placing trees for pmap and taking one copy back."""

import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax.train.parallel import Parallel


def test_unreplicate_takes_the_first_copy_on_one_device():
    par = Parallel("pmap")
    n = par.local
    tree = {"w": np.arange(6.0).reshape(2, 3), "step": np.int32(7)}
    replicated = par.replicate(tree)  # on one device, leading axis n
    assert replicated["w"].shape == (n, 2, 3)
    spread = jax.pmap(lambda t: jax.tree.map(lambda x: x + 1, t))(replicated)  # one per device
    assert len(spread["w"].sharding.device_set) == n
    first = jax.local_devices()[0]
    for t, offset in ((replicated, 0), (spread, 1)):
        one = par.unreplicate(t)
        for got, want in zip(jax.tree.leaves(one), jax.tree.leaves(tree), strict=True):
            assert got.shape == np.shape(want)
            assert got.devices() == {first}  # not a program over all devices
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want) + offset)


def test_unreplicate_in_jit_mode_is_the_identity():
    par = Parallel("jit")
    tree = {"w": jnp.ones((2, 3))}
    assert par.unreplicate(tree) is tree
