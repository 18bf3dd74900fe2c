"""The dense tensor products give e3nn's results, in its layout, and train the same."""

from __future__ import annotations

import pytest
import torch
from e3nn import o3

from ase_gnnp.nn.interaction import ChannelProduct, Interaction, hidden_irreps
from ase_gnnp.nn.tensor_product import ChannelTensorProduct, EdgeTensorProduct

CASES = [  # (irreps in, irreps out, lmax of the harmonics, correlation, product lmax)
    ("8x0e", hidden_irreps(8, 2), 2, 3, None),
    (hidden_irreps(8, 2), "8x0e", 2, 3, 1),
    (hidden_irreps(6, 1), hidden_irreps(6, 1), 1, 1, None),
    ("4x0e+4x1o", hidden_irreps(4, 1), 1, 2, None),
    (hidden_irreps(4, 3), hidden_irreps(4, 3), 3, 1, None),
]


def _e3nn_twin(tp, mode: str) -> o3.TensorProduct:
    if mode == "uvu":
        return o3.TensorProduct(
            tp.irreps_in1,
            tp.irreps_in2,
            tp.irreps_out,
            tp.instructions,
            shared_weights=False,
            internal_weights=False,
        )
    return o3.TensorProduct(tp.irreps_in1, tp.irreps_in2, tp.irreps_out, tp.instructions)


@pytest.mark.parametrize("case", CASES)
def test_edge_and_channel_products_match_e3nn(case):
    irreps_in, irreps_out, lmax, correlation, product_lmax = case
    torch.manual_seed(0)
    layer = Interaction(
        o3.Irreps(irreps_in),
        o3.Irreps(irreps_out),
        o3.Irreps.spherical_harmonics(lmax),
        4,
        correlation=correlation,
        product_lmax=product_lmax,
    ).double()
    tp = layer.tp
    assert isinstance(tp, EdgeTensorProduct)
    ref = _e3nn_twin(tp, "uvu").double()
    assert tp.weight_numel == ref.weight_numel
    x = torch.randn(30, tp.irreps_in1.dim, dtype=torch.float64)
    sh = torch.randn(30, tp.irreps_in2.dim, dtype=torch.float64)
    w = torch.randn(30, tp.weight_numel, dtype=torch.float64)
    # e3nn keeps its Clebsch-Gordan tables in the default dtype (float32)
    torch.testing.assert_close(tp(x, sh, w), ref(x, sh, w), rtol=0, atol=1e-6)
    for product in getattr(layer, "products", []):
        assert isinstance(product, ChannelProduct)
        assert isinstance(product.tp, ChannelTensorProduct)
        ref = _e3nn_twin(product.tp, "uuu").double()
        a, b = (torch.randn(30, product.tp.irreps_in1.dim, dtype=torch.float64) for _ in "ab")
        torch.testing.assert_close(product.tp(a, b), ref(a, b), rtol=0, atol=1e-6)


def _wigner_d(irreps: o3.Irreps, rot: torch.Tensor) -> torch.Tensor:
    """Block-diagonal D(rot) of ``irreps`` (proper rotation) from a least-squares fit of the
    float64 spherical harmonics, ``Y(R v) = D Y(v)``: exact to round-off, where e3nn's
    ``D_from_matrix`` carries float32 generators (~1e-7)."""
    v = torch.randn(64, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    blocks = []
    for mul, ir in irreps:
        y = o3.spherical_harmonics(ir.l, v, normalize=True)
        y_rot = o3.spherical_harmonics(ir.l, v @ rot.T, normalize=True)
        d = torch.linalg.lstsq(y, y_rot).solution.T
        blocks += [d] * mul
    return torch.block_diag(*blocks)


def test_edge_and_channel_products_are_equivariant_in_float64():
    """With float64 tables the products commute with rotations to round-off (e3nn's own
    tables are rounded to float32)."""
    irreps = hidden_irreps(3, 2)
    sh_irreps = o3.Irreps.spherical_harmonics(2)
    layer = Interaction(irreps, irreps, sh_irreps, 4, correlation=3).double()
    tp = layer.tp
    torch.manual_seed(1)
    x = torch.randn(5, irreps.dim, dtype=torch.float64)
    sh = torch.randn(5, sh_irreps.dim, dtype=torch.float64)
    w = torch.randn(5, tp.weight_numel, dtype=torch.float64)
    rot = o3.rand_matrix(dtype=torch.float64)
    d_in, d_sh, d_out = (_wigner_d(i, rot) for i in (irreps, sh_irreps, tp.irreps_out))
    torch.testing.assert_close(
        tp(x @ d_in.T, sh @ d_sh.T, w), tp(x, sh, w) @ d_out.T, rtol=0, atol=1e-12
    )
    product = layer.products[1].tp
    d_basis, d_prod = _wigner_d(product.irreps_in1, rot), _wigner_d(product.irreps_out, rot)
    a, b = (torch.randn(5, product.irreps_in1.dim, dtype=torch.float64) for _ in "ab")
    torch.testing.assert_close(
        product(a @ d_basis.T, b @ d_basis.T), product(a, b) @ d_prod.T, rtol=0, atol=1e-12
    )


def test_products_refuse_what_they_do_not_implement():
    with pytest.raises(ValueError, match="one multiplicity"):
        EdgeTensorProduct("4x0e+2x1o", "1x0e", "4x0e", [(0, 0, 0, "uvu", True)])
    with pytest.raises(ValueError, match="multiplicity 1"):
        EdgeTensorProduct("4x0e", "2x0e", "4x0e", [(0, 0, 0, "uvu", True)])
    with pytest.raises(ValueError, match="'uvu'"):
        EdgeTensorProduct("4x0e", "1x0e", "4x0e", [(0, 0, 0, "uvw", True)])
    with pytest.raises(ValueError, match="'uuu'"):
        ChannelTensorProduct("4x0e", "4x0e", [(0, 0, 0, "uuu", True)])


def test_checkpoints_written_with_e3nn_products_load():
    """The state of a layer built on e3nn's TensorProduct (empty weight, output mask,
    Clebsch-Gordan buffers) loads strictly into the dense layer."""
    torch.manual_seed(0)
    layer = Interaction(
        o3.Irreps("4x0e"), hidden_irreps(4, 2), o3.Irreps.spherical_harmonics(2), 4, correlation=3
    )
    state = layer.state_dict()
    legacy = dict(state)
    legacy["tp.weight"] = torch.zeros(0)
    legacy["tp.output_mask"] = torch.ones(layer.tp.irreps_out.dim)
    legacy["products.0.tp._compiled_main_left_right._w3j_1_1_2"] = torch.zeros(3, 3, 5)
    fresh = Interaction(
        o3.Irreps("4x0e"), hidden_irreps(4, 2), o3.Irreps.spherical_harmonics(2), 4, correlation=3
    )
    fresh.load_state_dict(legacy)
    for key, value in state.items():
        torch.testing.assert_close(fresh.state_dict()[key], value)
