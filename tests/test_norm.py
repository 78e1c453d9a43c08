"""Masked BatchNorm: statistics over valid positions only, equal to BatchNorm of the
valid positions gathered together."""

import torch

from espnet_iml.norm import MaskedBatchNorm


def test_statistics_ignore_padding_1d_and_2d():
    torch.manual_seed(0)
    lengths = [20, 12, 7]
    for channel_dim, shape in [(-1, (3, 20, 8)), (1, (3, 8, 20, 5))]:
        bn = MaskedBatchNorm(8, channel_dim=channel_dim).double()
        x = torch.randn(*shape, dtype=torch.float64) * 2 + 1
        time_dim = 1 if channel_dim == -1 else 2
        mshape = [3, 1, 1] if channel_dim == -1 else [3, 1, 20, 1]
        if channel_dim == -1:
            mshape = [3, 20, 1]
        mask = torch.zeros(*mshape, dtype=torch.bool)
        for i, n in enumerate(lengths):
            mask[i].narrow(time_dim - 1, 0, n).fill_(True)
        x_pad = x.masked_fill(~mask, 1e3)  # garbage in padding must not matter
        y = bn(x_pad, mask)
        valid = [x[i].narrow(time_dim - 1, 0, n) for i, n in enumerate(lengths)]
        flat = torch.cat([v.movedim(channel_dim if channel_dim == -1 else 0, -1).reshape(-1, 8)
                          for v in valid])
        ref_bn = torch.nn.BatchNorm1d(8).double()
        ref = ref_bn(flat)
        got = torch.cat([y[i].narrow(time_dim - 1, 0, n)
                         .movedim(channel_dim if channel_dim == -1 else 0, -1).reshape(-1, 8)
                         for i, n in enumerate(lengths)])
        torch.testing.assert_close(got, ref)
        torch.testing.assert_close(bn.running_mean, ref_bn.running_mean)
        torch.testing.assert_close(bn.running_var, ref_bn.running_var)


def test_eval_mode_is_the_folded_affine_map():
    bn = MaskedBatchNorm(4)
    bn.train()
    bn(torch.randn(2, 10, 4) * 3 + 2)
    bn.eval()
    x = torch.randn(2, 5, 4)
    a, c = bn.eval_affine()
    torch.testing.assert_close(bn(x), x * a + c)
