import numpy as np
import pytest
import torch

from leaveout.losses import entropy, margin_entropy_loss


def reference_loss(id_logits, labels, ood_logits, beta, margin):
    """float64 numpy: CE + beta * max(0, m + mean H(ID) - mean H(OOD))."""

    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def ent(z):
        p = softmax(z)
        return -(p * np.log(p)).sum(axis=1)

    p = softmax(id_logits)
    ce = -np.log(p[np.arange(len(labels)), labels]).mean()
    return ce + beta * max(0.0, margin + ent(id_logits).mean() - ent(ood_logits).mean())


def test_entropy_hand_worked():
    # p = (1/2, 1/4, 1/4): H = 1.5 log 2
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25], [1.0, 1.0, 1.0]], dtype=torch.float64))
    np.testing.assert_allclose(entropy(logits).numpy(), [1.5 * np.log(2), np.log(3)], rtol=1e-12)


def test_entropy_is_stable_for_large_logits():
    logits = torch.tensor([[1e4, 0.0, -1e4], [5e3, 5e3, 0.0]])
    h = entropy(logits)
    assert torch.isfinite(h).all()
    np.testing.assert_allclose(h.numpy(), [0.0, np.log(2)], atol=1e-6)


@pytest.mark.parametrize("hinge", ["active", "inactive"])
def test_loss_against_float64_reference(hinge):
    rng = np.random.default_rng(0)
    id_logits = rng.normal(0, 3.0, (6, 5))
    labels = rng.integers(0, 5, 6)
    # confident left-out logits give a small OOD entropy (hinge active); flat ones a large one
    scale = 8.0 if hinge == "active" else 0.01
    ood_logits = rng.normal(0, scale, (4, 5))
    expected = reference_loss(id_logits, labels, ood_logits, beta=0.2, margin=0.4)
    got = margin_entropy_loss(
        torch.tensor(id_logits), torch.tensor(labels), torch.tensor(ood_logits), 0.2, 0.4
    )
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.item(), expected, rtol=1e-12)
    ce_only = reference_loss(id_logits, labels, ood_logits, beta=0.0, margin=0.4)
    assert (expected > ce_only + 1e-9) == (hinge == "active")


def test_gradcheck():
    torch.manual_seed(0)
    id_logits = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    ood_logits = (4 * torch.randn(3, 3, dtype=torch.float64)).requires_grad_()
    labels = torch.tensor([0, 2, 1, 1])
    assert torch.autograd.gradcheck(
        lambda a, b: margin_entropy_loss(a, labels, b, 0.5, 0.4), (id_logits, ood_logits)
    )


def test_works_under_autocast_and_compiles_without_graph_breaks():
    torch.manual_seed(0)
    a, b, y = torch.randn(4, 3), torch.randn(5, 3), torch.tensor([0, 1, 2, 0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = margin_entropy_loss(a.bfloat16(), y, b.bfloat16(), 0.2, 0.4)
    assert loss.dtype == torch.float32
    compiled = torch.compile(margin_entropy_loss, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(a, y, b, 0.2, 0.4), margin_entropy_loss(a, y, b, 0.2, 0.4))


def test_label_smoothing_against_float64_reference():
    rng = np.random.default_rng(1)
    id_logits, ood_logits = rng.normal(0, 3.0, (6, 5)), rng.normal(0, 0.5, (4, 5))
    labels, s = rng.integers(0, 5, 6), 0.2
    log_p = id_logits - id_logits.max(1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(1, keepdims=True))
    target = np.full((6, 5), s / 5)
    target[np.arange(6), labels] += 1 - s
    smoothed_ce = -(target * log_p).sum(1).mean()
    hinge = reference_loss(id_logits, labels, ood_logits, 0.2, 0.4) - reference_loss(
        id_logits, labels, ood_logits, 0.0, 0.4
    )
    got = margin_entropy_loss(
        torch.tensor(id_logits), torch.tensor(labels), torch.tensor(ood_logits), 0.2, 0.4, s
    )
    np.testing.assert_allclose(got.item(), smoothed_ce + hinge, rtol=1e-12)
