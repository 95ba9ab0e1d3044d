"""``EncoderBlock`` and ``self_attention`` are PyTorch's layers, computed another way."""

import pytest
import torch
from torch import nn

from models.layers import EncoderBlock, self_attention


@pytest.mark.parametrize("batch,tokens", [(1, 1), (3, 16), (64, 26)])
def test_encoder_block_is_the_pre_norm_transformer_layer(batch, tokens):
    torch.manual_seed(0)
    reference = nn.TransformerEncoderLayer(32, 4, dim_feedforward=64, dropout=0.1, batch_first=True,
                                           norm_first=True).eval()
    block = EncoderBlock(32, 4, dim_feedforward=64, dropout=0.1).eval()
    block.load_state_dict(reference.state_dict())  # strict: the parameter names are the same
    x = torch.randn(batch, tokens, 32, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    block(x).square().sum().backward()
    reference(x_ref).square().sum().backward()
    assert torch.allclose(block(x), reference(x_ref), atol=1e-5)
    assert torch.allclose(x.grad, x_ref.grad, atol=1e-4)  # the reasons are these gradients
    with torch.no_grad():  # PyTorch's fused inference path, too
        assert torch.allclose(block(x), reference(x), atol=1e-5)


def test_same_seed_same_initial_parameters():
    torch.manual_seed(1)
    reference = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, dropout=0.0, batch_first=True,
                                           norm_first=True)
    torch.manual_seed(1)
    block = EncoderBlock(16, 2, dim_feedforward=32, dropout=0.0)
    for (name, a), (other, b) in zip(reference.state_dict().items(), block.state_dict().items(), strict=True):
        assert name == other and torch.equal(a, b)


def test_self_attention_is_multihead_attention():
    torch.manual_seed(2)
    attention = nn.MultiheadAttention(32, 4, dropout=0.1, batch_first=True).eval()
    x = torch.randn(5, 3, 32)
    assert torch.allclose(self_attention(attention, x), attention(x, x, x)[0], atol=1e-5)


def test_dropout_only_while_training():
    torch.manual_seed(3)
    block = EncoderBlock(16, 2, dim_feedforward=32, dropout=0.5)
    x = torch.randn(4, 6, 16)
    assert not torch.allclose(block.train()(x), block(x))  # two different dropout masks
    assert torch.equal(block.eval()(x), block(x))
