"Checks of vae_notebooks.toy: shapes, determinism, independent uniform factors, an injective renderer, clear errors."
import numpy as np
import pytest
import torch
from scipy import stats

from vae_notebooks.toy import FACTOR_NAMES, FACTOR_SIZES, FactorDataset, factor_dataset, render_sprites


def test_shapes_and_items():
    ds = factor_dataset(100, seed=0, noise=0.1)
    assert isinstance(ds, FactorDataset) and len(ds) == 100
    assert ds.x.shape == (100, 1, 16, 16) and ds.x.dtype == torch.float32
    assert ds.factors.shape == (100, len(FACTOR_NAMES)) and ds.factors.dtype == torch.long
    x, y = ds[7]
    assert torch.equal(x, y) and torch.equal(x, ds.x[7])
    for k, n in enumerate(FACTOR_SIZES):
        assert 0 <= ds.factors[:, k].min() and ds.factors[:, k].max() < n
    assert factor_dataset(3, size=20).x.shape == (3, 1, 20, 20)


def test_determinism_and_noise():
    a, b = factor_dataset(50, seed=5, noise=0.2), factor_dataset(50, seed=5, noise=0.2)
    assert torch.equal(a.x, b.x) and torch.equal(a.factors, b.factors)
    assert not torch.equal(factor_dataset(50, seed=6).factors, a.factors)
    clean = factor_dataset(50, seed=5)
    assert torch.equal(clean.factors, a.factors)
    assert torch.equal(clean.x, render_sprites(clean.factors))
    assert abs(float((a.x - clean.x).std()) - 0.2) < 0.01


def test_factors_independent_and_uniform():
    f = factor_dataset(6000, seed=11).factors.numpy()
    for i in range(4):
        assert stats.chisquare(np.bincount(f[:, i], minlength=FACTOR_SIZES[i]))[1] > 1e-3
        for j in range(i + 1, 4):
            table = np.zeros((FACTOR_SIZES[i], FACTOR_SIZES[j]))
            np.add.at(table, (f[:, i], f[:, j]), 1)
            assert stats.chi2_contingency(table)[1] > 1e-3, (FACTOR_NAMES[i], FACTOR_NAMES[j])


def test_renderer_injective_and_factor_effects():
    allf = torch.cartesian_prod(*[torch.arange(n) for n in FACTOR_SIZES])
    imgs = render_sprites(allf).flatten(1)
    assert len(torch.unique(imgs.round(decimals=4), dim=0)) == len(allf) == 576
    assert 0 <= imgs.min() and imgs.max() <= 1
    # the centre of mass sits at column 4 + pos_x (up to the sigmoid tails cut by the border)
    a, b = render_sprites(torch.tensor([[1, 1, 2, 3]]))[0, 0], render_sprites(torch.tensor([[1, 1, 3, 3]]))[0, 0]
    cols = torch.arange(16.)
    com = lambda im: float((im.sum(0)*cols).sum()/im.sum())
    assert abs(com(a) - 6) < 2e-3 and abs(com(b) - 7) < 2e-3
    # larger scale, larger area; square > disc > diamond at equal scale
    area = lambda f: float(render_sprites(torch.tensor([f])).sum())
    assert area([0, 2, 4, 4]) > area([0, 1, 4, 4]) > area([0, 0, 4, 4])
    assert area([0, 1, 4, 4]) > area([1, 1, 4, 4]) > area([2, 1, 4, 4])


@pytest.mark.parametrize("factors,msg", [(torch.zeros(2, 3, dtype=torch.long), "[N, 4]"),
                                         (torch.tensor([[0, 3, 0, 0]]), "'scale'"),
                                         (torch.tensor([[0, 0, 0, -1]]), "'pos_y'")])
def test_render_errors(factors, msg):
    with pytest.raises(ValueError, match=msg.replace("[", r"\[").replace("]", r"\]")):
        render_sprites(factors)


def test_dataset_errors():
    with pytest.raises(ValueError, match="n must be"): factor_dataset(0)
    with pytest.raises(ValueError, match="noise"): factor_dataset(5, noise=-1)
    with pytest.raises(ValueError, match="size"): factor_dataset(5, size=8)
    with pytest.raises(ValueError, match="items"): FactorDataset(torch.zeros(3, 1, 16, 16), torch.zeros(2, 4, dtype=torch.long))
