"""Semi-supervised and transfer fitting: unlabelled rows in every data form, the batch stream,
the posterior draws, the trainer's semi-supervised run and starting from another flow."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

import flowaug
from flowaug import FlowTrainer, Glow, TrainConfig
from flowaug.data import as_flow_data, load_image_folder, load_sklearn
from flowaug.training.batches import stream_indices
from flowaug.training.semi_supervised import align_to_prior, draw_labels, estimate_prior
from flowaug.training.transfer import transfer_model

TINY = dict(depth=1, hidden=8, levels=17)


@pytest.fixture(scope="module")
def digits():
    return load_sklearn("digits")


def _config(**overrides) -> TrainConfig:
    settings = dict(batch_size=16, max_steps=12, eval_every=4, warmup_steps=2, progress=False)
    settings.update(overrides)
    return TrainConfig(**settings)


# --- unlabelled rows in every form ------------------------------------------------------------


def test_minus_one_is_refused_by_default_with_the_way_to_use_it():
    x, y = torch.randint(0, 17, (4, 1, 8, 8)), torch.tensor([0, 1, -1, 1])
    with pytest.raises(ValueError, match="-1 marks an unlabelled row"):
        as_flow_data((x, y), levels=17)
    with pytest.raises(ValueError, match="negative class -2"):
        as_flow_data((x, torch.tensor([0, 1, -2, 1])), levels=17, allow_unlabelled=True)


@pytest.mark.parametrize("form", ["tensor", "numpy", "list"])
def test_minus_one_marks_unlabelled_rows(form):
    x, labels = torch.randint(0, 17, (5, 1, 8, 8)), [0, -1, 2, -1, 1]
    y = {"tensor": torch.tensor(labels), "numpy": np.array(labels), "list": labels}[form]
    data = as_flow_data((x, y), levels=17, allow_unlabelled=True)
    assert data.unlabelled_mask.tolist() == [False, True, False, True, False]
    assert data.num_classes == 3
    assert data.labelled().y.tolist() == [0, 2, 1]
    assert torch.equal(data.unlabelled().x, x[[1, 3]]) and data.unlabelled().y is None


def test_image_none_pairs_and_all_unlabelled_sets():
    class Pairs(torch.utils.data.Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return torch.full((1, 8, 8), i, dtype=torch.long), (None if i else 4)

    data = as_flow_data(Pairs(), levels=17, allow_unlabelled=True)
    assert data.y.tolist() == [4, -1, -1]
    nothing = as_flow_data((torch.zeros(3, 1, 8, 8, dtype=torch.long), [-1] * 3), levels=17,
                           allow_unlabelled=True)
    assert nothing.y is None and nothing.num_classes == 0


def test_datasets_label_column_with_minus_one():
    features = datasets.Features({
        "image": datasets.Array3D((1, 8, 8), "int64"),
        "label": datasets.ClassLabel(names=["a", "b"]),
    })
    ds = datasets.Dataset.from_dict(
        {"image": np.zeros((3, 1, 8, 8), np.int64), "label": [1, -1, 0]}, features=features
    )
    data = as_flow_data(ds, levels=17, allow_unlabelled=True)
    assert data.y.tolist() == [1, -1, 0] and data.class_names == ["a", "b"]


def test_a_folder_without_class_folders_is_unlabelled(tmp_path):
    for i in range(3):
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8), mode="L").save(tmp_path / f"{i}.png")
    data = load_image_folder(tmp_path)
    assert data.y is None and data.x.shape == (3, 1, 8, 8) and data.levels == 256


# --- the pieces -------------------------------------------------------------------------------


@pytest.mark.parametrize("n,start,count", [(7, 0, 7), (7, 5, 4), (5, 3, 12), (10, 20, 10)])
def test_stream_indices_walk_seeded_permutations(n, start, count):
    index = stream_indices(n, start, count, seed=3, key="lab")
    assert index.shape == (count,) and torch.equal(index, stream_indices(n, start, count, 3, "lab"))
    whole = stream_indices(n, 0, start + count, seed=3, key="lab")
    assert torch.equal(whole[start:], index)  # a slice of one endless stream
    for epoch in range((start + count) // n):  # every full epoch is a permutation
        assert sorted(whole[epoch * n : (epoch + 1) * n].tolist()) == list(range(n))
    other_seed = stream_indices(n, 0, 3 * n, 4, "lab")
    assert not torch.equal(other_seed, stream_indices(n, 0, 3 * n, 3, "lab"))


def test_draw_labels_pseudo_keeps_only_confident_rows():
    probs = torch.tensor([[0.95, 0.05], [0.6, 0.4], [0.02, 0.98]])
    labels, weights = draw_labels(probs.log(), "pseudo", 0.9, torch.Generator().manual_seed(0))
    assert labels.tolist() == [0, 0, 1] and weights.tolist() == [1.0, 0.0, 1.0]


def test_draw_labels_marginal_follows_the_posterior():
    probs = torch.tensor([[0.8, 0.2]]).expand(20_000, 2)
    labels, weights = draw_labels(probs.log(), "marginal", 0.9, torch.Generator().manual_seed(0))
    assert weights.eq(1).all()
    assert abs(labels.float().mean().item() - 0.2) < 0.01


def test_estimate_prior_counts_labels_and_posteriors():
    prior = estimate_prior(torch.tensor([0, 0, 1]), torch.tensor([[0.0, 1.0, 0.0]]).log(), 3)
    assert torch.allclose(prior.sum(), torch.tensor(1.0))
    assert prior[0] == pytest.approx(0.5, abs=1e-3) and prior[1] == pytest.approx(0.5, abs=1e-3)
    assert prior[2] > 0  # never ruled out


def test_align_to_prior_matches_the_pool_mean_and_keeps_rows_normalized():
    torch.manual_seed(0)
    skewed = (torch.randn(500, 4) + torch.tensor([2.0, 0.0, 0.0, -1.0])).log_softmax(1)
    prior = torch.tensor([0.1, 0.2, 0.3, 0.4])
    aligned = align_to_prior(skewed, prior, iterations=50)
    assert torch.allclose(aligned.exp().sum(1), torch.ones(500), atol=1e-5)
    assert torch.allclose(aligned.exp().mean(0), prior, atol=1e-3)
    assert not torch.allclose(skewed.exp().mean(0), prior, atol=0.05)
    # the ranking of classes within a row can change, but a row's own odds between two classes
    # move by the same factor for every row
    ratio = (aligned[:, 0] - aligned[:, 1]) - (skewed[:, 0] - skewed[:, 1])
    assert torch.allclose(ratio, ratio[0].expand_as(ratio), atol=1e-4)


def test_the_default_prior_is_uniform_whatever_the_labels_shares():
    from flowaug.training.batches import SemiSupervisedBatches

    y = torch.tensor([0] * 50 + [1] * 5 + [2] * 5)  # labels collected unevenly
    x, pool = torch.zeros(60, 2), torch.zeros(30, 2)

    def prior(**kw):
        return SemiSupervisedBatches(x, y, pool, 3, TrainConfig(**kw), None).prior

    assert torch.allclose(prior(), torch.full((3,), 1 / 3))
    assert prior(class_prior="learn")[0] > 0.8  # EM starts from the labels' shares
    assert torch.allclose(prior(class_prior=[2, 1, 1]), torch.tensor([0.5, 0.25, 0.25]))


# --- the trainer ------------------------------------------------------------------------------


def test_a_semi_supervised_run_records_accuracy_and_prior(digits):
    torch.manual_seed(0)
    model = Glow((1, 8, 8), 10, **TINY)
    train, val = digits.subset(range(40)), digits.subset(range(1000, 1040))
    history = FlowTrainer(model, _config()).fit(train, val, unlabelled=digits.x[200:400])
    record = history.records[-1]
    assert 0.0 <= record["val_accuracy"] <= 1.0
    assert len(record["class_prior"]) == 10 and sum(record["class_prior"]) == pytest.approx(1)


def test_unlabelled_rows_change_the_fit_and_mode_matters(digits):
    train = digits.subset(range(40))

    def weights(**kw):
        torch.manual_seed(0)
        model = Glow((1, 8, 8), 10, **TINY)
        FlowTrainer(model, _config(**kw.pop("cfg", {}))).fit(train, **kw)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    alone = weights()
    marginal = weights(unlabelled=digits.x[200:400])
    pseudo = weights(unlabelled=digits.x[200:400], cfg={"semi_supervised": "pseudo"})
    learned = weights(unlabelled=digits.x[200:400], cfg={"class_prior": "learn"})
    assert not torch.equal(alone, marginal) and not torch.equal(marginal, pseudo)
    assert not torch.equal(marginal, learned)
    # unlabelled data given as (x, labels): the labels are never read
    assert torch.equal(marginal, weights(unlabelled=(digits.x[200:400], digits.y[200:400] * 0)))


def test_semi_supervised_fitting_learns_from_unlabelled_images(digits):
    """The mission in one test: 5 labels per class and 400 unlabelled digits; the flow's own
    Bayes classifier on other digits is far better when the unlabelled ones join (seeds 0-3 of
    this draw: 72-79% labelled-only, 84-91% semi-supervised)."""
    perm = torch.randperm(len(digits.y), generator=torch.Generator().manual_seed(0))
    labelled = torch.cat([perm[digits.y[perm] == c][:5] for c in range(10)])
    rest = perm[~torch.isin(perm, labelled)]
    pool, test = rest[:400], rest[400:800]
    cfg = dict(batch_size=32, max_steps=300, eval_every=50, warmup_steps=20, lr=3e-3,
               unlabelled_start=60, refresh_every=30, patience=None, progress=False)

    def accuracy(**kw):
        torch.manual_seed(0)
        model = Glow((1, 8, 8), 10, depth=2, hidden=16, levels=17)
        FlowTrainer(model, TrainConfig(**cfg)).fit(digits.subset(labelled), **kw)
        x01 = model.prepare_batch(digits.x[test], generator=torch.Generator().manual_seed(0))
        return (model.classify(x01).argmax(1) == digits.y[test]).float().mean().item()

    alone, semi = accuracy(), accuracy(unlabelled=digits.x[pool])
    assert semi > alone + 0.05, (alone, semi)


def test_an_unconditional_model_trains_on_every_row(digits):
    model = Glow((1, 8, 8), None, **TINY)
    history = FlowTrainer(model, _config(max_steps=2, eval_every=2)).fit(
        digits.subset(range(20)), unlabelled=digits.x[20:60]
    )
    assert history.steps == 2 and "val_accuracy" not in history.records[-1]


def test_semi_supervised_errors_name_the_fix(digits):
    model = Glow((1, 8, 8), 10, **TINY)
    with pytest.raises(ValueError, match="class_prior has 2 entries"):
        FlowTrainer(model, _config(class_prior=[1, 1])).fit(
            digits.subset(range(20)), unlabelled=digits.x[20:40]
        )
    with pytest.raises(ValueError, match="train has no labels"):
        FlowTrainer(model, _config()).fit((digits.x[:20], [-1] * 20), unlabelled=digits.x[20:40])
    with pytest.raises(ValueError, match="semi_supervised must be one of"):
        TrainConfig(semi_supervised="soft")
    with pytest.raises(ValueError, match="class_prior must hold one positive"):
        TrainConfig(class_prior=[0.5, 0.0])
    with pytest.raises(ValueError, match="class_prior must be None, 'learn'"):
        TrainConfig(class_prior="uniform")


def test_fit_takes_minus_one_rows_and_unlabelled(digits):
    y = digits.y[:120].clone()
    y[30:] = -1
    cfg = _config(max_steps=4)
    model = flowaug.fit((digits.x[:120], y), config=cfg, val_fraction=0.2, **TINY)
    assert model.num_classes == 10 and model.class_names is None
    model = flowaug.fit(digits.subset(range(40)), unlabelled=digits.x[40:80], config=cfg, **TINY)
    assert model.class_names[:2] == ["0", "1"] and not model.training


# --- transfer ---------------------------------------------------------------------------------


def _random_glow(num_classes, seed=0):
    from conftest import perturb_zero_init

    torch.manual_seed(seed)
    return perturb_zero_init(Glow((1, 8, 8), num_classes, **TINY)).eval()


def test_transfer_from_an_unconditional_flow_starts_at_its_density():
    source = _random_glow(None)
    model = transfer_model(source, num_classes=4).eval()
    x = torch.rand(6, 1, 8, 8)
    for c in range(4):
        y = torch.full((6,), c)
        assert torch.allclose(model.log_prob(x, y), source.log_prob(x), atol=1e-5)
    assert model.num_classes == 4 and source.num_classes == 0


def test_transfer_from_other_classes_keeps_known_ones_and_shares_layers():
    source = _random_glow(3)
    source.class_names = ["a", "b", "c"]
    model = transfer_model(source, num_classes=2, class_names=["c", "new"]).eval()
    assert torch.equal(model.embedding.weight[0], source.embedding.weight[2])
    assert torch.allclose(model.embedding.weight[1], source.embedding.weight.mean(0))
    x = torch.rand(5, 1, 8, 8)
    same = model.log_prob(x, torch.zeros(5, dtype=torch.long))
    assert torch.allclose(same, source.log_prob(x, torch.full((5,), 2)), atol=1e-5)
    assert model.class_names == ["c", "new"]


def test_fit_with_init_from_a_saved_folder_fine_tunes(tmp_path, digits):
    source = _random_glow(None)
    source.save_pretrained(tmp_path / "source")
    before = {k: v.clone() for k, v in source.state_dict().items()}
    model = flowaug.fit(digits.subset(range(40)), init=tmp_path / "source", config=_config())
    assert model.num_classes == 10 and model.class_names[:2] == ["0", "1"]
    assert model.scales[0][0].layers[2].net.cond is not None  # conditioning added
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in before.items())  # untouched
    shared = [k for k in before if k in model.state_dict() and before[k].is_floating_point()]
    assert any(not torch.equal(model.state_dict()[k], before[k]) for k in shared)  # fine-tuned
    with pytest.raises(ValueError, match="architecture is fixed"):
        flowaug.fit(digits.subset(range(40)), init=source, depth=3)
    with pytest.raises(TypeError, match="init must be a flowaug model"):
        flowaug.fit(digits.subset(range(40)), init=object())
