"""The coupling networks' convolutions (flowaug.flows.conv) are torch's convolutions: same
values, same gradients, same state dict, on both of their paths (matrix products and oneDNN)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from flowaug.flows.conv import NarrowConv, PointwiseConv, channel_mix


def _values_and_grads(fn, x, params):
    x = x.clone().requires_grad_()
    out = fn(x)
    grad = torch.randn_like(out)
    grads = torch.autograd.grad(out, [x, *params], grad)
    return out, grads


@pytest.mark.parametrize(
    "shape,out_channels,bias",
    [((3, 4, 5, 5), 4, False), ((16, 64, 14, 14), 64, True), ((2, 8, 1, 1), 3, True),
     ((300, 8, 4, 4), 8, True),
     ((300, 8, 2, 3), 5, False), ((16, 64, 2, 2), 64, True)],  # these two: oneDNN's path
)  # fmt: skip
def test_channel_mix_is_a_1x1_convolution(shape, out_channels, bias):
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=torch.float64)
    weight = torch.randn(out_channels, shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.randn(out_channels, dtype=torch.float64, requires_grad=True) if bias else None
    params = [weight] + ([b] if bias else [])
    torch.manual_seed(1)
    ours, our_grads = _values_and_grads(lambda v: channel_mix(v, weight, b), x, params)
    torch.manual_seed(1)
    ref, ref_grads = _values_and_grads(
        lambda v: F.conv2d(v, weight[:, :, None, None], b), x, params
    )
    torch.testing.assert_close(ours, ref)
    for mine, theirs in zip(our_grads, ref_grads, strict=True):
        torch.testing.assert_close(mine, theirs)


def test_channel_mix_takes_non_contiguous_inputs():
    x = torch.randn(4, 6, 9, 9)[:, ::2]  # a channel slice, as a coupling's half
    weight = torch.randn(5, 3)
    torch.testing.assert_close(channel_mix(x, weight), F.conv2d(x, weight[:, :, None, None]))


@pytest.mark.parametrize(
    "batch,in_channels,out_channels,size,kernel,products",
    [(4, 16, 4, 14, 3, True), (3, 8, 8, 12, 3, True), (2, 6, 2, 13, 5, True),
     (2, 5, 3, 16, 1, True),
     (4, 16, 4, 8, 3, False), (2, 8, 12, 14, 3, False)],  # too small, too many channels
)  # fmt: skip
def test_narrow_conv_is_the_same_padded_convolution(batch, in_channels, out_channels, size,
                                                      kernel, products):  # fmt: skip
    torch.manual_seed(0)
    layer = NarrowConv(in_channels, out_channels, kernel).double()
    reference = nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2).double()
    reference.load_state_dict(layer.state_dict())
    x = torch.randn(batch, in_channels, size, size + 1, dtype=torch.float64)
    assert layer._as_products(x.clone().requires_grad_()) is products
    torch.manual_seed(1)
    ours, our_grads = _values_and_grads(layer, x, list(layer.parameters()))
    torch.manual_seed(1)
    ref, ref_grads = _values_and_grads(reference, x, list(reference.parameters()))
    torch.testing.assert_close(ours, ref)
    for mine, theirs in zip(our_grads, ref_grads, strict=True):
        torch.testing.assert_close(mine, theirs)


def test_narrow_conv_products_path_passes_gradcheck():
    torch.manual_seed(0)
    layer = NarrowConv(3, 2, 3).double()
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64, requires_grad=True)
    assert layer._as_products(x)
    assert torch.autograd.gradcheck(layer, (x,))
    assert torch.autograd.gradgradcheck(layer, (x,))


def test_narrow_conv_without_gradient_is_onednn_and_agrees():
    torch.manual_seed(0)
    layer = NarrowConv(16, 4, 3)
    x = torch.randn(4, 16, 14, 14)
    with torch.no_grad():
        assert not layer._as_products(x)
        plain = layer(x)
    torch.testing.assert_close(layer(x.requires_grad_()), plain, atol=1e-5, rtol=1e-4)


def test_narrow_conv_keeps_the_state_dict_of_a_conv2d():
    layer = NarrowConv(8, 4, 3)
    assert set(layer.state_dict()) == {"weight", "bias"}
    assert layer.weight.shape == (4, 8, 3, 3) and layer.padding == (1, 1)
    assert set(PointwiseConv(8, 4).state_dict()) == {"weight", "bias"}


def test_narrow_conv_rejects_an_even_kernel():
    with pytest.raises(ValueError, match="odd kernel_size"):
        NarrowConv(8, 4, 2)


def test_narrow_conv_under_cpu_autocast_stays_close():
    torch.manual_seed(0)
    layer = NarrowConv(16, 4, 3)
    x = torch.randn(4, 16, 14, 14, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
    ref = F.conv2d(x, layer.weight, layer.bias, padding=1)
    assert out.shape == ref.shape
    torch.testing.assert_close(out.float(), ref, atol=0.1, rtol=0.05)
