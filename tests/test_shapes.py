"""The arithmetic of cnn_jax.ops.shapes against Dumoulin & Visin (2016) and the ops."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from cnn_jax import ops
from cnn_jax.ops import shapes

# --- Dumoulin & Visin, "A guide to convolution arithmetic for deep learning" ---------


@pytest.mark.parametrize("i,k", [(5, 3), (4, 3), (7, 1), (6, 6), (9, 4)])
def test_relationship_1_no_padding_unit_stride(i, k):
    assert shapes.conv_output_size(i, k) == i - k + 1


@pytest.mark.parametrize("i,k,p", [(5, 4, 2), (5, 3, 1), (8, 5, 3)])
def test_relationship_2_zero_padding_unit_stride(i, k, p):
    assert shapes.conv_output_size(i, k, 1, p) == i - k + 2 * p + 1


@pytest.mark.parametrize("i,k", [(5, 3), (6, 5), (7, 7), (10, 1)])
def test_relationship_3_half_padding(i, k):
    assert shapes.conv_output_size(i, k, 1, k // 2) == i
    assert shapes.conv_output_size(i, k, 1, "SAME") == i


@pytest.mark.parametrize("i,k", [(5, 3), (6, 4), (2, 5)])
def test_relationship_4_full_padding(i, k):
    assert shapes.conv_output_size(i, k, 1, "FULL") == i + k - 1
    assert shapes.conv_output_size(i, k, 1, k - 1) == i + k - 1


@pytest.mark.parametrize(
    "i,k,s,p", list(itertools.product([5, 6, 7, 11], [1, 2, 3], [1, 2, 3], [0, 1, 2]))
)
def test_relationship_6_general(i, k, s, p):
    assert shapes.conv_output_size(i, k, s, p) == (i + 2 * p - k) // s + 1


@pytest.mark.parametrize(
    "i,k,s,p,d", list(itertools.product([7, 12], [2, 3], [1, 2], [0, 1], [1, 2, 3]))
)
def test_relationship_15_dilation(i, k, s, p, d):
    expected = (i + 2 * p - k - (k - 1) * (d - 1)) // s + 1
    assert shapes.conv_output_size(i, k, s, p, d) == expected


@pytest.mark.parametrize(
    "i,k,s,p",
    [
        c
        for c in itertools.product([2, 3, 5], [1, 3, 4], [1, 2, 3], [0, 1])
        if c[2] * (c[0] - 1) + c[1] - 2 * c[3] >= 1  # the padding fits in the output
    ],
)
def test_transposed_relationships_8_to_14(i, k, s, p):
    # R8/R9 (unit stride) and R12/R13 (strided) are the a = 0 cases of R14.
    for a in range(s):
        o = shapes.conv_transpose_output_size(i, k, s, p, output_padding=a)
        assert o == s * (i - 1) + a + k - 2 * p
        # the forward conv maps o back to i: the transposed conv inverts the shape.
        assert shapes.conv_output_size(o, k, s, p) == i


def test_transposed_special_paddings():
    # R10: half padding keeps the size; R11: full padding shrinks it by k - 1.
    assert shapes.conv_transpose_output_size(5, 3, 1, 1) == 5
    assert shapes.conv_transpose_output_size(5, 3, 1, "FULL") == 5 - 2
    assert shapes.conv_transpose_output_size(7, 3, 2, "SAME") == 14
    assert shapes.conv_transpose_output_size((4, 5), 3, (2, 3), "SAME") == (8, 15)
    assert shapes.conv_transpose_output_size(5, 3, 1, "CAUSAL") == 5


def test_lecture_worked_examples():
    assert shapes.conv_output_size(5, 3, 2, 1) == 3
    assert shapes.conv_output_size(227, 11, 4, 0) == 55  # AlexNet conv1
    assert shapes.pool_output_size(55, 3, 2) == 27  # AlexNet overlapping pool
    assert shapes.conv_output_size(224, 7, 2, 3) == 112  # ResNet stem
    assert shapes.conv_output_size((32, 28), 5) == (28, 24)


# --- padding amounts -------------------------------------------------------------------


@pytest.mark.parametrize(
    "i,k,s,d", list(itertools.product([1, 4, 5, 8, 9], [1, 2, 3, 4], [1, 2, 3], [1, 2]))
)
def test_same_padding_equals_lax(i, k, s, d):
    eff = d * (k - 1) + 1
    expected = lax.padtype_to_pads((i,), (eff,), (s,), "SAME")
    assert shapes.padding_amounts("SAME", i, k, s, d) == tuple(tuple(p) for p in expected)
    assert shapes.conv_output_size(i + 2 * eff, k, s, "SAME", d) == -(-(i + 2 * eff) // s)


@pytest.mark.parametrize("k,d", list(itertools.product([1, 2, 3, 5], [1, 2, 4])))
def test_full_and_causal_use_the_effective_kernel(k, d):
    e = d * (k - 1)
    assert shapes.padding_amounts("full", 10, k, 1, d) == ((e, e),)
    assert shapes.padding_amounts("CAUSAL", 10, k, 1, d) == ((e, 0),)
    assert shapes.padding_amounts("valid", 10, k, 1, d) == ((0, 0),)


def test_padding_amounts_explicit_forms():
    assert shapes.padding_amounts(2, (5, 5), 3) == ((2, 2), (2, 2))
    assert shapes.padding_amounts((1, 2), (5, 5), 3) == ((1, 1), (2, 2))
    assert shapes.padding_amounts([(0, 1), (2, 3)], (5, 5), 3) == ((0, 1), (2, 3))
    assert shapes.padding_amounts([(0, 1)], 5, 3) == ((0, 1),)


@pytest.mark.parametrize(
    "args,exc,match",
    [
        (("MIRROR", 5, 3), ValueError, "`padding` \\(='MIRROR'\\)"),
        ((-1, 5, 3), ValueError, "non-negative"),
        (((1, 2, 3), (5, 5), 3), ValueError, "one entry per spatial dimension"),
        (([(1, 2), 3], (5, 5), 3), TypeError, "not a mix"),
        ((1.5, 5, 3), TypeError, "`padding` must be"),
        (("SAME", 5, 0), ValueError, "`kernel` \\(=0\\) must be positive"),
        (("SAME", 5, 3, -2), ValueError, "`stride` \\(=-2\\) must be positive"),
        (("SAME", 5, 3, 1, 0), ValueError, "`dilation` \\(=0\\) must be positive"),
        (("SAME", 5, 3.0), TypeError, "`kernel` must be an int"),
    ],
)
def test_padding_amounts_errors(args, exc, match):
    with pytest.raises(exc, match=match):
        shapes.padding_amounts(*args)


def test_size_errors():
    with pytest.raises(ValueError, match="larger than the padded input"):
        shapes.conv_output_size(4, 5)
    with pytest.raises(ValueError, match="dilated to 7"):
        shapes.conv_output_size(6, 3, dilation=3)
    with pytest.raises(ValueError, match="`output_padding`"):
        shapes.conv_transpose_output_size(4, 3, 2, 0, output_padding=2)
    with pytest.raises(ValueError, match="must be 0 with 'SAME'"):
        shapes.conv_transpose_output_size(4, 3, 2, "SAME", output_padding=1)
    with pytest.raises(ValueError, match="padding is larger than the output"):
        shapes.conv_transpose_output_size(1, 1, 1, 2)


# --- pooling, with PyTorch's ceil mode ---------------------------------------------------


def _torch_pool_size(i, k, s, p, d, ceil):
    """PyTorch's pooling_output_shape (aten/src/ATen/native/Pool.h), transcribed."""
    num = i + 2 * p - d * (k - 1) - 1 + ((s - 1) if ceil else 0)
    o = num // s + 1
    if ceil and (o - 1) * s >= i + p:
        o -= 1
    return o


@pytest.mark.parametrize(
    "i,k,s,p,d,ceil",
    [
        c
        for c in itertools.product([5, 6, 7, 10], [2, 3], [1, 2, 3], [0, 1], [1, 2], [False, True])
        if c[3] <= c[1] // 2
    ],
)
def test_pool_output_size_matches_torch_rule(i, k, s, p, d, ceil):
    assert shapes.pool_output_size(i, k, s, p, d, ceil) == _torch_pool_size(i, k, s, p, d, ceil)


def test_pool_output_size_defaults_stride_to_window():
    assert shapes.pool_output_size(8, 2) == 4
    assert shapes.pool_output_size(7, 2, ceil_mode=True) == 4
    assert shapes.pool_output_size((7, 9), (2, 3), ceil_mode=True) == (4, 3)


# --- the ops produce the shapes the arithmetic predicts ----------------------------------


_GRID = [
    c
    for c in itertools.product(
        [5, 8], [1, 2, 3], [1, 2, 3], [1, 2], ["SAME", "VALID", "FULL", "CAUSAL", 1, (0, 2)]
    )
]


@pytest.mark.parametrize("i,k,s,d,padding", _GRID[::3])
def test_conv_and_transpose_shapes_agree_with_arithmetic(i, k, s, d, padding):
    pad = [padding] if isinstance(padding, tuple) else padding
    try:
        o = shapes.conv_output_size(i, k, s, pad, d)
    except ValueError:
        pytest.skip("kernel larger than the padded input")
    x = jnp.zeros((1, i, 2))
    kern = jnp.zeros((k, 2, 3))
    y = ops.conv(x, kern, strides=s, padding=pad, dilation=d)
    assert y.shape == (1, o, 3)
    if padding == "SAME":
        back = ops.conv_transpose(y, kern, strides=s, padding=pad, dilation=d, output_shape=(i,))
        assert back.shape == (1, i, 2)
    else:
        a = (i + sum(shapes.padding_amounts(pad, i, k, s, d)[0]) - (d * (k - 1) + 1)) % s
        back = ops.conv_transpose(y, kern, strides=s, padding=pad, dilation=d, output_padding=a)
        assert back.shape == (1, shapes.conv_transpose_output_size(o, k, s, pad, a, d), 2)
        assert back.shape[1] == i


# --- receptive fields ----------------------------------------------------------------------


def _brute_force_field(layers, size):
    """Receptive field from the Jacobian of a stack of all-ones convolutions (1-D)."""

    def net(x):
        h = x[None, :, None]
        for layer in layers:
            k = layer["kernel"]
            h = ops.conv(
                h,
                jnp.ones((k, 1, 1)),
                strides=layer.get("stride", 1),
                padding=layer.get("padding", 0),
                dilation=layer.get("dilation", 1),
            )
        return h[0, :, 0]

    jac = np.asarray(jax.jacfwd(net)(jnp.zeros(size)))
    rows = [np.nonzero(jac[j])[0] for j in range(2)]
    first, second = rows
    return first, second


@pytest.mark.parametrize(
    "layers",
    [
        [dict(kernel=3), dict(kernel=3), dict(kernel=3)],  # VGG: three 3x3 see 7x7
        [dict(kernel=11, stride=4), dict(kernel=3, stride=2), dict(kernel=5, padding=2)],
        [dict(kernel=3, padding=1), dict(kernel=2, stride=2), dict(kernel=3, padding=1)],
        [dict(kernel=2, dilation=1), dict(kernel=2, dilation=2), dict(kernel=2, dilation=4)],
        [dict(kernel=4, stride=2, padding=1), dict(kernel=3, stride=3, padding=2)],
    ],
)
def test_receptive_field_against_jacobian(layers):
    rf = shapes.receptive_field(layers, in_size=64)
    first, second = _brute_force_field(layers, 64)
    # Where the field lies fully inside the input the Jacobian shows its extent.
    lo = rf.start[0] - (rf.size[0] - 1) / 2
    assert rf.size[0] >= len(first) and rf.size[0] >= first[-1] - first[0] + 1
    assert np.isclose(max(lo, 0), first[0])
    assert second[0] - first[0] == rf.jump[0] or lo < 0
    # A unit well inside: exact extent.
    rf_out = rf.out_size[0]
    assert rf_out == _stack_output(layers, 64)


def _stack_output(layers, size):
    for layer in layers:
        size = shapes.conv_output_size(
            size,
            layer["kernel"],
            layer.get("stride", 1),
            layer.get("padding", 0),
            layer.get("dilation", 1),
        )
    return size


def test_receptive_field_known_values():
    vgg = shapes.receptive_field([dict(kernel=3, padding=1)] * 3)
    assert vgg.size == (7,) and vgg.jump == (1,) and vgg.start == (0.0,)
    alex = shapes.receptive_field([dict(kernel=11, stride=4), dict(window=3, stride=2)])
    assert alex.size == (19,) and alex.jump == (8,) and alex.start == (9.0,)
    two_d = shapes.receptive_field([dict(kernel=(3, 5), stride=(1, 2))], in_size=(10, 10))
    assert two_d.size == (3, 5) and two_d.jump == (1, 2) and two_d.out_size == (8, 3)
    wavenet = shapes.receptive_field(
        [dict(kernel=2, dilation=2**j, padding="CAUSAL") for j in range(10)], in_size=100
    )
    assert wavenet.size == (1024,)


def test_receptive_field_errors():
    with pytest.raises(ValueError, match="pass `in_size`"):
        shapes.receptive_field([dict(kernel=3, padding="SAME")])
    with pytest.raises(ValueError, match="unknown keys"):
        shapes.receptive_field([dict(kernel=3, pad=1)])
    with pytest.raises(ValueError, match="needs a `kernel`"):
        shapes.receptive_field([dict(stride=2)])
    with pytest.raises(ValueError, match="at least one layer"):
        shapes.receptive_field([])
    for layer in (dict(kernel=3, stride=2, strides=3), dict(kernel=3, window=3)):
        with pytest.raises(ValueError, match="gives both"):
            shapes.receptive_field([layer], in_size=9)
