import numpy as np
import pytest
import torch

from leaveout import ConfigError
from leaveout.models import count_parameters, create_model, fold_batchnorm, list_models


def densenet_bc_parameters(depth: int, growth: int, classes: int) -> int:
    """Counted by hand from the DenseNet-BC definition (Huang et al. 2017)."""
    layers, channels = (depth - 4) // 6, 2 * growth
    total = 3 * channels * 9
    for block in range(3):
        for _ in range(layers):
            total += 2 * channels + channels * 4 * growth + 2 * 4 * growth + 4 * growth * growth * 9
            channels += growth
        if block < 2:
            total += 2 * channels + channels * (channels // 2)
            channels //= 2
    return total + 2 * channels + channels * classes + classes


def wide_resnet_parameters(depth: int, widen: int, classes: int) -> int:
    n, widths = (depth - 4) // 6, [16, 16 * widen, 32 * widen, 64 * widen]
    total = 3 * 16 * 9
    for g in range(3):
        for i in range(n):
            cin, cout = (widths[g] if i == 0 else widths[g + 1]), widths[g + 1]
            total += 2 * cin + cin * cout * 9 + 2 * cout + cout * cout * 9
            total += cin * cout if cin != cout else 0
    return total + 2 * widths[3] + widths[3] * classes + classes


def cifar_resnet_parameters(depth: int, classes: int, width: int = 16) -> int:
    n, total, cin = (depth - 2) // 6, 3 * width * 9 + 2 * width, width
    for cout in (width, 2 * width, 4 * width):
        for _ in range(n):
            total += cin * cout * 9 + 2 * cout + cout * cout * 9 + 2 * cout
            cin = cout
    return total + cin * classes + classes


@pytest.mark.parametrize("classes", [10, 8, 100])
def test_densenet_bc_100_parameter_count(classes):
    model = create_model("densenet_bc_100", classes)
    assert count_parameters(model) == densenet_bc_parameters(100, 12, classes)
    if classes == 10:
        assert count_parameters(model) == 769_162  # the published "0.8M"


def test_wrn_28_10_parameter_count():
    model = create_model("wrn_28_10", 10)
    assert count_parameters(model) == wide_resnet_parameters(28, 10, 10) == 36_479_194


def test_small_network_parameter_counts():
    assert (
        count_parameters(create_model("resnet20", 10)) == cifar_resnet_parameters(20, 10) == 269_722
    )
    assert count_parameters(create_model("resnet8", 10)) == cifar_resnet_parameters(8, 10)
    assert count_parameters(create_model("resnet14_w32", 10)) == cifar_resnet_parameters(14, 10, 32)
    # conv(3,6,5) + conv(6,16,5) + fc(400,120) + fc(120,84) + fc(84,10)
    tutorial = (3 * 6 * 25 + 6) + (6 * 16 * 25 + 16) + (400 * 120 + 120) + (120 * 84 + 84) + 850
    assert count_parameters(create_model("tutorial_cnn", 10)) == tutorial


@pytest.mark.parametrize(
    "name", ["resnet8", "resnet20", "tutorial_cnn", "densenet_bc_100", "digits_cnn"]
)
def test_shapes_channels_last_and_autocast(name):
    torch.manual_seed(0)
    model = create_model(name, 7).to(memory_format=torch.channels_last).eval()
    x = torch.randn(3, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    assert model(x).shape == (3, 7)
    assert model.forward_features(x).shape[0] == 3
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.shape == (3, 7) and torch.isfinite(out.float()).all()


def test_digits_cnn_takes_small_images_and_other_channel_counts():
    model = create_model("digits_cnn", 4, in_channels=1)
    assert model(torch.randn(2, 1, 16, 16)).shape == (2, 4)


def test_wrn_dropout_is_off_in_eval_and_on_in_train():
    torch.manual_seed(0)
    model = create_model("wrn_28_10", 10)
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
        model.train()
        assert not torch.equal(model(x), model(x))
    assert (
        create_model("wrn_28_10", 10, dropout=0.0).state_dict().keys() == model.state_dict().keys()
    )


@pytest.mark.parametrize("name", ["resnet8", "digits_cnn", "tutorial_cnn"])
def test_gradients_reach_the_input(name):
    model = create_model(name, 5).eval()
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    (grad,) = torch.autograd.grad(model(x).logsumexp(1).sum(), x)
    assert grad.abs().sum() > 0


def test_unknown_model_lists_known_ones():
    with pytest.raises(ConfigError, match="resnet20"):
        create_model("vgg_nonexistent", 10)
    assert {"densenet_bc_100", "wrn_28_10", "resnet20", "tutorial_cnn", "digits_cnn"} <= set(
        list_models()
    )


def test_settings_a_network_does_not_take_are_refused_by_name():
    from leaveout.models import check_model

    check_model("wrn_28_10", dropout=0.3)
    with pytest.raises(ConfigError, match="'resnet8' has no setting 'dropout'"):
        create_model("resnet8", 10, dropout=0.3)


def airnet_parameters(classes: int, widths=(64, 128, 128), in_channels: int = 3) -> int:
    """The whitening layer (2 * 4C filters of 2x2xC, with biases), two 3x3 convolutions and two
    BatchNorms per group, and a bias-free linear layer."""
    whiten = 2 * 4 * in_channels
    total, cin = whiten * in_channels * 4 + whiten, whiten
    for w in widths:
        total += cin * w * 9 + w * w * 9 + 2 * 2 * w
        cin = w
    return total + cin * classes


def test_airnet_parameter_counts():
    assert count_parameters(create_model("airnet", 10)) == airnet_parameters(10)
    assert count_parameters(create_model("airnet_small", 8)) == airnet_parameters(8, (32, 64, 64))


def test_airnet_whitening_makes_patches_uncorrelated_with_unit_variance():
    torch.manual_seed(0)
    mix = torch.tensor([[1.0, 0.5, 0.2], [0.0, 2.0, 0.3], [0.0, 0.0, 0.7]])
    x = torch.einsum("bchw,cd->bdhw", torch.randn(64, 3, 16, 16), mix)  # correlated channels
    x = x + 0.8 * torch.roll(x, 1, dims=3)  # and correlated neighbours
    model = create_model("airnet", 5)
    model.init_from_data(x)
    weight = model.whiten.weight.double()
    assert torch.equal(weight[:12], -weight[12:])  # the filters and their negatives
    # independent check in numpy: every 2x2 patch, filtered, has identity covariance
    xs = x.double().numpy()
    patches = np.stack(
        [xs[:, :, i : i + 15, j : j + 15] for i in (0, 1) for j in (0, 1)], axis=2
    )  # (B, C, 4, 15, 15) with the 2x2 offsets in (row, column) order
    flat = patches.transpose(0, 3, 4, 1, 2).reshape(-1, 12)  # C-major, like conv weights
    filtered = flat @ weight[:12].reshape(12, 12).numpy().T
    np.testing.assert_allclose(np.cov(filtered.T), np.eye(12), atol=2e-3)
    assert not model.whiten.weight.requires_grad


def test_airnet_learned_stem_keeps_its_random_first_convolution_and_trains_it():
    torch.manual_seed(0)
    model = create_model("airnet_learned_stem", 5)
    before = model.whiten.weight.clone()
    model.init_from_data(torch.randn(64, 3, 16, 16))
    assert torch.equal(model.whiten.weight, before)  # no whitening from the data
    assert model.whiten.weight.requires_grad
    assert count_parameters(model) == airnet_parameters(5)
    with pytest.raises(ConfigError, match="no whitening to freeze"):
        model.train_whitening_bias(False)


def test_airnet_takes_other_sizes_and_exposes_features():
    model = create_model("airnet_small", 4).eval()
    x = torch.randn(2, 3, 64, 64)
    assert model(x).shape == (2, 4)
    assert model.forward_features(x).shape == (2, 64)
    torch.testing.assert_close(model.classifier(model.forward_features(x)), model(x))


def test_gelu_on_channels_last_memory_equals_gelu_and_keeps_the_layout():
    from leaveout.models import GELU

    torch.manual_seed(0)
    base = torch.randn(4, 8, 5, 6, dtype=torch.float64)
    for x in (base.to(memory_format=torch.channels_last), base):
        x = x.float().requires_grad_(True)
        y = GELU()(x)
        assert y.is_contiguous(memory_format=torch.channels_last) == (x.stride(1) == 1)
        # independent float64 reference: x Phi(x), derivative Phi(x) + x phi(x)
        x64 = x.detach().double()
        phi = torch.exp(-(x64**2) / 2) / np.sqrt(2 * np.pi)
        cdf = 0.5 * (1 + torch.erf(x64 / np.sqrt(2)))
        torch.testing.assert_close(y.double(), x64 * cdf, rtol=1e-6, atol=1e-6)
        (grad,) = torch.autograd.grad(y.sum(), x)
        torch.testing.assert_close(grad.double(), cdf + x64 * phi, rtol=1e-5, atol=1e-6)


def randomize_batchnorm(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Running statistics and affine parameters far from their initial values."""
    with torch.no_grad():
        for bn in [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]:
            c = bn.num_features
            bn.running_mean.copy_(torch.randn(c, generator=generator))
            bn.running_var.copy_(torch.rand(c, generator=generator) * 3 + 0.1)
            bn.weight.copy_(torch.rand(c, generator=generator) + 0.5)
            bn.bias.copy_(torch.randn(c, generator=generator))


def outputs_and_input_gradient(model, x):
    x = x.clone().requires_grad_(True)
    out = model(x)
    (grad,) = torch.autograd.grad(out.square().sum(), x)
    return out.detach(), grad


@pytest.mark.parametrize("name", ["airnet_small", "digits_cnn"])
def test_folded_batchnorm_computes_the_same_function(name):
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = create_model(name, 5).double()
    randomize_batchnorm(model, g)
    model.eval()
    folded = fold_batchnorm(model)
    x = torch.randn(4, 3, 32, 32, generator=g, dtype=torch.float64)
    out, grad = outputs_and_input_gradient(model, x)
    folded_out, folded_grad = outputs_and_input_gradient(folded, x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    torch.testing.assert_close(folded_out, out, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(folded_grad, grad, rtol=1e-9, atol=1e-12)
    # the model itself is untouched
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) > 0
    torch.testing.assert_close(model(x), out)


def test_batchnorm_after_max_pooling_with_a_negative_scale_is_not_folded():
    g = torch.Generator().manual_seed(1)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.MaxPool2d(2), torch.nn.BatchNorm2d(4)
    ).double()
    randomize_batchnorm(net, g)
    with torch.no_grad():
        net[2].weight[1] = -0.7  # max(-a) = -min(a): the pooling does not commute
    net.eval()
    folded = fold_batchnorm(net)
    assert isinstance(folded[2], torch.nn.BatchNorm2d)
    x = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64)
    torch.testing.assert_close(folded(x), net(x), rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        net[2].weight[1] = 0.7
    folded = fold_batchnorm(net)
    assert isinstance(folded[2], torch.nn.Identity) and folded[0].bias is not None
    torch.testing.assert_close(folded(x), net(x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", ["densenet_bc_100", "tutorial_cnn"])
def test_a_model_with_nothing_to_fold_is_not_copied(name):
    model = create_model(name, 4).eval()  # BatchNorm before its convolutions, or none at all
    assert fold_batchnorm(model) is model
