"""The recipe: model factory (head with dropout, weights handling), transforms, and that training learns."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edge.errors import ConfigError
from edge.manifest import InputSpec
from edge.preprocess import load_image, preprocess
from trainer.data import ImageDataset, load_dataset
from trainer.args import get_args_parser
from trainer.presets import apply_recipe
from trainer.recipe import (BN_MOMENTUM, OPTIMIZERS, ClassificationPresetEval, ClassificationPresetTrain, create_model,
                            create_optimizer)
from trainer.train import train_one_epoch


def test_head_has_dropout_before_the_final_layer():
    model = create_model("resnet18", 5, weights="none")
    assert isinstance(model.fc, nn.Sequential)
    assert isinstance(model.fc[0], nn.Dropout) and model.fc[0].p == 0.5
    assert model.fc[1].out_features == 5
    mobile = create_model("mobilenet_v3_small", 3, weights="none", dropout=0.5)
    head = list(mobile.classifier)
    assert isinstance(head[-2], nn.Dropout) and head[-2].p == 0.5 and head[-1].out_features == 3
    assert mobile(torch.randn(2, 3, 64, 64)).shape == (2, 3)


def test_batch_norm_statistics_follow_a_short_run():
    # MobileNetV3 ships BatchNorm momentum 0.01 (its running statistics trail the weights by ~100 steps);
    # the trainer raises it to 0.1, and leaves the ResNets' own 0.1 alone.
    mobile = create_model("mobilenet_v3_small", 3, weights="none")
    norms = [m for m in mobile.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and {m.momentum for m in norms} == {BN_MOMENTUM}
    assert {m.eps for m in norms} == {0.001}  # only the momentum changes
    resnet = create_model("resnet18", 3, weights="none")
    assert {m.momentum for m in resnet.modules() if isinstance(m, nn.BatchNorm2d)} == {0.1}
    # One step in training mode moves the running mean a tenth of the way to the batch's mean.
    norm = norms[0]
    norm.train()
    x = torch.randn(8, norm.num_features, 4, 4) + 5.0
    before = norm.running_mean.clone()
    norm(x)
    expected = 0.9 * before + 0.1 * x.mean(dim=(0, 2, 3))
    assert torch.allclose(norm.running_mean, expected, atol=1e-5)


def test_unknown_arch_and_missing_imagenet_weights_stop(tmp_path):
    with pytest.raises(ConfigError, match="resnet51"):
        create_model("resnet51", 3)
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        with pytest.raises(ConfigError) as err:
            create_model("resnet18", 3, weights="imagenet")
    finally:
        torch.hub.set_dir(old)
    expected = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert str(expected) in str(err.value)


def test_local_weights_load_and_a_bad_file_stops(tmp_path):
    torch.manual_seed(1)
    donor = create_model("resnet18", 4, weights="none")
    torch.save(donor.state_dict(), tmp_path / "donor.pth")
    model = create_model("resnet18", 3, weights=str(tmp_path / "donor.pth"))
    assert torch.equal(model.conv1.weight, donor.conv1.weight)
    assert model.fc[1].out_features == 3  # the head of another class count is not loaded
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(ConfigError, match="junk.pth"):
        create_model("resnet18", 3, weights=str(tmp_path / "junk.pth"))
    with pytest.raises(ConfigError, match="missing.pth"):
        create_model("resnet18", 3, weights=str(tmp_path / "missing.pth"))


def test_eval_transform_is_edge_preprocess_and_train_transform_matches_its_normalisation(tiny_data):
    spec = InputSpec(size=(32, 32))
    image = load_image(next((tiny_data / "val" / "ring").glob("*.jpg")))
    assert np.array_equal(ClassificationPresetEval(spec=spec)(image), preprocess(image, spec))
    # With every augmentation off, the training transform is the device's preprocessing too.
    plain = ClassificationPresetTrain(spec=spec, hflip_prob=0.0, brightness=0.0, contrast=0.0, pad_fraction=0.0)
    assert np.allclose(plain(image), preprocess(image, spec), atol=1e-6)
    torch.manual_seed(0)
    aug = ClassificationPresetTrain(spec=spec)
    outs = [aug(image) for _ in range(4)]
    assert all(o.shape == (3, 32, 32) and o.dtype == np.float32 for o in outs)
    assert not np.allclose(outs[0], outs[1])


def test_loss_decreases_on_a_tiny_set(tiny_data):
    torch.manual_seed(0)
    split = load_dataset(tiny_data)
    spec = InputSpec(size=(32, 32))
    # One full batch of fixed images per epoch: the loss curve reflects learning, not sampling noise.
    loader = torch.utils.data.DataLoader(ImageDataset(split.train, ClassificationPresetEval(spec=spec)),
                                         batch_size=len(split.train))
    model = create_model("resnet18", len(split.classes), weights="none")
    optimizer = create_optimizer(model.parameters(), "sgd", lr=0.01, momentum=0.9, weight_decay=1e-4)
    criterion = nn.CrossEntropyLoss()
    losses = [train_one_epoch(model, criterion, optimizer, loader, torch.device("cpu"), e)["loss"] for e in range(20)]
    assert np.mean(losses[-3:]) < 0.5 * losses[0], losses


def test_every_opt_choice_builds_its_optimizer():
    opt_action = next(a for a in get_args_parser()._actions if a.dest == "opt")
    assert tuple(opt_action.choices) == OPTIMIZERS
    kinds = {"sgd": torch.optim.SGD, "adamw": torch.optim.AdamW}
    for name in OPTIMIZERS:
        args = apply_recipe(get_args_parser().parse_args(["--opt", name]))  # the preset fills lr, momentum ...
        optimizer = create_optimizer([nn.Parameter(torch.zeros(2))], args.opt, lr=args.lr, momentum=args.momentum,
                                     weight_decay=args.weight_decay)
        assert type(optimizer) is kinds[name]
        assert optimizer.defaults["lr"] == args.lr and optimizer.defaults["weight_decay"] == args.weight_decay


def test_unknown_optimizer_stops_naming_the_option():
    with pytest.raises(ConfigError, match="--opt lamb"):
        create_optimizer([nn.Parameter(torch.zeros(2))], "lamb", lr=0.1, momentum=0.9, weight_decay=0.0)
