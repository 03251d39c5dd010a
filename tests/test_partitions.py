import numpy as np
import pytest

from leaveout import ConfigError, LeaveOutPartition

from .helpers import CIFAR10_CLASSES


def test_seed_3_reproduces_the_published_cifar10_pairs():
    part = LeaveOutPartition(10, k=5, seed=3)
    named = [{CIFAR10_CLASSES[c] for c in g} for g in part.groups]
    assert named == [
        {"dog", "deer"},
        {"automobile", "bird"},
        {"truck", "frog"},
        {"horse", "airplane"},
        {"cat", "ship"},
    ]


@pytest.mark.parametrize(("n", "k"), [(10, 5), (10, 3), (100, 5), (7, 2), (8, 4)])
def test_every_class_is_left_out_by_exactly_one_member(n, k):
    part = LeaveOutPartition(n, k=k, seed=0)
    counts = np.zeros(n, dtype=int)
    for i in range(k):
        counts[list(part.left_out(i))] += 1
        assert set(part.kept(i)) | set(part.left_out(i)) == set(range(n))
        assert part.member_num_classes(i) == n - len(part.left_out(i))
    assert (counts == 1).all()
    sizes = sorted(len(g) for g in part.groups)
    assert sizes[-1] - sizes[0] <= 1


def test_label_mapping_both_ways():
    part = LeaveOutPartition(10, k=5, seed=3)
    labels = np.arange(10).repeat(3)
    for i in range(5):
        member = part.to_member_labels(i, labels)
        out = np.isin(labels, part.left_out(i))
        assert (member[out] == -1).all()
        kept = member[~out]
        assert kept.min() == 0 and kept.max() == part.member_num_classes(i) - 1
        np.testing.assert_array_equal(part.to_dataset_labels(i, kept), labels[~out])


def test_explicit_groups_and_json_roundtrip(tmp_path):
    part = LeaveOutPartition(6, groups=[[0, 5], [1, 2, 3], [4]])
    assert part.k == 3 and part.kept(1) == (0, 4, 5)
    part.save(tmp_path / "p.json")
    again = LeaveOutPartition.load(tmp_path / "p.json")
    assert again == part
    seeded = LeaveOutPartition(10, k=5, seed=3)
    seeded.save(tmp_path / "s.json")
    assert LeaveOutPartition.load(tmp_path / "s.json") == seeded


@pytest.mark.parametrize(
    "groups", [[[0, 1], [1, 2]], [[0, 1], [2]], [[0, 1, 2, 3]], [[0, 1], [], [2, 3]]]
)
def test_bad_groups_are_refused(groups):
    with pytest.raises(ConfigError, match="groups"):
        LeaveOutPartition(4, groups=groups)


def test_bad_k_is_refused():
    with pytest.raises(ConfigError, match="k must be"):
        LeaveOutPartition(10, k=11)
