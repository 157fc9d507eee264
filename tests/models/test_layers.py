import pytest
import torch

from lit_effnet.models.layers import ConvBNAct, LayerOptions


@pytest.mark.parametrize("activation", ["silu", "relu", "gelu"])
def test_activation_after_bn_is_in_place_and_gives_the_out_of_place_gradients(activation):
    torch.manual_seed(0)
    layer = ConvBNAct(4, 6, 3, LayerOptions(activation=activation))
    assert getattr(layer.act, "inplace", False) == (activation != "gelu")  # GELU has no in-place form

    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    out = layer(x)
    out.square().sum().backward()
    grads = [x.grad.clone()] + [p.grad.clone() for p in layer.parameters()]

    reference = type(layer.act)()  # the out-of-place activation
    x.grad = None
    layer.zero_grad()
    expected = reference(layer.bn(layer.conv(x)))
    expected.square().sum().backward()
    torch.testing.assert_close(out, expected)
    for got, want in zip(grads, [x.grad] + [p.grad for p in layer.parameters()], strict=True):
        torch.testing.assert_close(got, want)
